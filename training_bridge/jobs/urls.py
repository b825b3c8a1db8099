from django.urls import path

from training_bridge.jobs import views

urlpatterns = [
    path("training/jobs/", views.job_list, name="training-job-list"),
    path("training/jobs/new/", views.job_create, name="training-job-create"),
    path("training/jobs/<id:pk>/", views.job_detail, name="training-job-detail"),
    path("training/jobs/<id:pk>/live/", views.job_live, name="training-job-live"),
    path("training/jobs/<id:pk>/<str:action>/", views.job_action, name="training-job-action"),
    path("training/models/<id:pk>/", views.model_lineage, name="model-version-lineage"),
    # Publishing lives with the training trigger it fires: curation never imports the jobs app.
    path(
        "datasets/versions/<id:pk>/publish/", views.version_publish, name="dataset-version-publish"
    ),
]
