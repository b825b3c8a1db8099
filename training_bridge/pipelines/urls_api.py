from django.urls import path

from training_bridge.pipelines import apis

urlpatterns = [
    path("pipelines/", apis.PipelineListApi.as_view(), name="api-pipeline-list"),
    path("pipelines/create/", apis.PipelineCreateApi.as_view(), name="api-pipeline-create"),
    path("pipelines/<id:pk>/", apis.PipelineDetailApi.as_view(), name="api-pipeline-detail"),
    path("pipelines/<id:pk>/resume/", apis.PipelineResumeApi.as_view(), name="api-pipeline-resume"),
]
