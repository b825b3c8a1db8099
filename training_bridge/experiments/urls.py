from django.urls import path

from training_bridge.experiments import views

urlpatterns = [
    path("training/experiments/", views.experiment_list, name="experiment-list"),
    path("training/experiments/<id:pk>/", views.experiment_detail, name="experiment-detail"),
    path("training/experiments/<id:pk>/live/", views.experiment_live, name="experiment-live"),
    path(
        "training/experiments/<id:pk>/compute/",
        views.experiment_compute,
        name="experiment-compute",
    ),
]
