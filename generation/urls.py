from django.urls import path

from generation import views

urlpatterns = [
    path("batches/", views.batch_list, name="batch-list"),
    path("batches/new/", views.batch_create, name="batch-create"),
    path("batches/new/animation/", views.animation_batch_create, name="animation-batch-create"),
    path("prompt-sets/", views.prompt_set_list, name="prompt-set-list"),
    path("prompt-sets/<id:pk>/enhancer/", views.prompt_set_enhancer, name="prompt-set-enhancer"),
    path("prompt-enhancers/", views.prompt_enhancer_list, name="prompt-enhancer-list"),
    path("batches/<id:pk>/", views.batch_detail, name="batch-detail"),
    path("batches/<id:pk>/live/", views.batch_live, name="batch-live"),
    path("candidates/", views.candidate_gallery, name="candidate-gallery"),
    path("models/", views.model_version_list, name="model-version-list"),
]
