from django.urls import path

from generation import apis

urlpatterns = [
    path("model-versions/", apis.ModelVersionListApi.as_view(), name="api-model-version-list"),
    path(
        "model-versions/register/",
        apis.ModelVersionRegisterApi.as_view(),
        name="api-model-version-register",
    ),
    path(
        "model-versions/<id:pk>/",
        apis.ModelVersionDetailApi.as_view(),
        name="api-model-version-detail",
    ),
    path(
        "prompt-enhancers/", apis.PromptEnhancerListApi.as_view(), name="api-prompt-enhancer-list"
    ),
    path(
        "prompt-enhancers/create/",
        apis.PromptEnhancerCreateApi.as_view(),
        name="api-prompt-enhancer-create",
    ),
    path(
        "prompt-enhancers/<id:pk>/",
        apis.PromptEnhancerDetailApi.as_view(),
        name="api-prompt-enhancer-detail",
    ),
    path("prompt-sets/", apis.PromptSetListApi.as_view(), name="api-prompt-set-list"),
    path("prompt-sets/import/", apis.PromptSetImportApi.as_view(), name="api-prompt-set-import"),
    path(
        "prompt-sets/imports/<id:pk>/",
        apis.PromptImportDetailApi.as_view(),
        name="api-prompt-import-detail",
    ),
    path("prompt-sets/<id:pk>/", apis.PromptSetDetailApi.as_view(), name="api-prompt-set-detail"),
    path(
        "prompt-sets/<id:pk>/enhancer/",
        apis.PromptSetEnhancerApi.as_view(),
        name="api-prompt-set-enhancer",
    ),
    path("batches/", apis.BatchListApi.as_view(), name="api-batch-list"),
    path("batches/create/", apis.BatchCreateApi.as_view(), name="api-batch-create"),
    path("batches/progress/", apis.BatchProgressApi.as_view(), name="api-batch-progress"),
    path("batches/<id:pk>/", apis.BatchDetailApi.as_view(), name="api-batch-detail"),
    path("batches/<id:pk>/cancel/", apis.BatchCancelApi.as_view(), name="api-batch-cancel"),
    path("candidates/", apis.CandidateListApi.as_view(), name="api-candidate-list"),
    path("candidates/<id:pk>/", apis.CandidateDetailApi.as_view(), name="api-candidate-detail"),
]
