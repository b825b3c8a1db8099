from django.urls import path

from training_bridge.pipelines import views

urlpatterns = [
    path("training/pipelines/", views.pipeline_list, name="pipeline-list"),
    path("training/pipelines/new/", views.pipeline_create_page, name="pipeline-create"),
    path("training/pipelines/<id:pk>/", views.pipeline_detail, name="pipeline-detail"),
    path("training/pipelines/<id:pk>/live/", views.pipeline_live, name="pipeline-live"),
    path("training/pipelines/<id:pk>/resume/", views.pipeline_resume_page, name="pipeline-resume"),
]
