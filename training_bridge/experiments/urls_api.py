from django.urls import path

from training_bridge.experiments import apis

urlpatterns = [
    path("experiments/", apis.ExperimentListApi.as_view(), name="api-experiment-list"),
    path("experiments/create/", apis.ExperimentCreateApi.as_view(), name="api-experiment-create"),
    path("experiments/<id:pk>/", apis.ExperimentDetailApi.as_view(), name="api-experiment-detail"),
    path(
        "experiments/<id:pk>/results/",
        apis.ExperimentResultsApi.as_view(),
        name="api-experiment-results",
    ),
    path(
        "experiments/<id:pk>/results/compute/",
        apis.ExperimentResultsComputeApi.as_view(),
        name="api-experiment-results-compute",
    ),
    path(
        "experiments/<id:pk>/scores/",
        apis.ExperimentScoresRecordApi.as_view(),
        name="api-experiment-scores-record",
    ),
]
