from django.urls import path

from training_bridge.jobs import apis

urlpatterns = [
    path("training-jobs/", apis.JobListApi.as_view(), name="api-training-job-list"),
    path("training-jobs/create/", apis.JobCreateApi.as_view(), name="api-training-job-create"),
    path(
        "training-jobs/progress/", apis.JobProgressApi.as_view(), name="api-training-job-progress"
    ),
    path("training-jobs/<id:pk>/", apis.JobDetailApi.as_view(), name="api-training-job-detail"),
    path(
        "training-jobs/<id:pk>/cancel/",
        apis.JobCancelApi.as_view(),
        name="api-training-job-cancel",
    ),
    path(
        "training-jobs/<id:pk>/resume/",
        apis.JobResumeApi.as_view(),
        name="api-training-job-resume",
    ),
    path(
        "training-jobs/<id:pk>/report/",
        apis.JobProgressReportApi.as_view(),
        name="api-training-job-report",
    ),
    path(
        "training-jobs/<id:pk>/register-output/",
        apis.JobRegisterOutputApi.as_view(),
        name="api-training-job-register-output",
    ),
    path(
        "training-jobs/<id:pk>/losses/",
        apis.JobLossesApi.as_view(),
        name="api-training-job-losses",
    ),
    # Publishing lives with the training trigger it fires: curation never imports the jobs app.
    path(
        "dataset-versions/<id:pk>/publish/",
        apis.VersionPublishApi.as_view(),
        name="api-dataset-version-publish",
    ),
    path(
        "training-triggers/<id:pk>/fire/",
        apis.TriggerFireApi.as_view(),
        name="api-training-trigger-fire",
    ),
]
