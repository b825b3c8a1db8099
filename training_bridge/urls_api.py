from django.urls import path

from training_bridge import apis

urlpatterns = [
    path("dataset-rules/", apis.RuleListApi.as_view(), name="api-dataset-rule-list"),
    path("dataset-rules/create/", apis.RuleCreateApi.as_view(), name="api-dataset-rule-create"),
    path(
        "dataset-rules/preview/",
        apis.RuleDraftPreviewApi.as_view(),
        name="api-dataset-rule-draft-preview",
    ),
    path("dataset-rules/<id:pk>/", apis.RuleDetailApi.as_view(), name="api-dataset-rule-detail"),
    path(
        "dataset-rules/<id:pk>/update/",
        apis.RuleUpdateApi.as_view(),
        name="api-dataset-rule-update",
    ),
    path(
        "dataset-rules/<id:pk>/preview/",
        apis.RulePreviewApi.as_view(),
        name="api-dataset-rule-preview",
    ),
    path(
        "dataset-rules/<id:pk>/build/", apis.RuleBuildApi.as_view(), name="api-dataset-rule-build"
    ),
    path("dataset-versions/", apis.VersionListApi.as_view(), name="api-dataset-version-list"),
    path(
        "dataset-versions/<id:pk>/",
        apis.VersionDetailApi.as_view(),
        name="api-dataset-version-detail",
    ),
    path(
        "dataset-versions/<id:pk>/entries/",
        apis.VersionEntriesApi.as_view(),
        name="api-dataset-version-entries",
    ),
    path(
        "dataset-versions/<id:pk>/publish/",
        apis.VersionPublishApi.as_view(),
        name="api-dataset-version-publish",
    ),
    path(
        "dataset-versions/<id:pk>/retire/",
        apis.VersionRetireApi.as_view(),
        name="api-dataset-version-retire",
    ),
    path(
        "dataset-versions/<id:pk>/diff/<id:other>/",
        apis.VersionDiffApi.as_view(),
        name="api-dataset-version-diff",
    ),
    path(
        "dataset-versions/<id:pk>/exports/",
        apis.ExportCreateApi.as_view(),
        name="api-dataset-export-create",
    ),
    path(
        "dataset-versions/<id:pk>/exports/batch/",
        apis.ExportBatchCreateApi.as_view(),
        name="api-dataset-export-batch-create",
    ),
    path("dataset-exports/", apis.ExportListApi.as_view(), name="api-dataset-export-list"),
    path(
        "dataset-exports/progress/",
        apis.ExportProgressApi.as_view(),
        name="api-dataset-export-progress",
    ),
    path(
        "dataset-exports/<id:pk>/",
        apis.ExportDetailApi.as_view(),
        name="api-dataset-export-detail",
    ),
    path(
        "dataset-exports/<id:pk>/download/",
        apis.ExportDownloadApi.as_view(),
        name="api-dataset-export-download",
    ),
    path("dataset-audit/", apis.AuditListApi.as_view(), name="api-dataset-audit"),
    path(
        "training-triggers/<id:pk>/fire/",
        apis.TriggerFireApi.as_view(),
        name="api-training-trigger-fire",
    ),
    path("weak-sources/", apis.WeakSourceListApi.as_view(), name="api-weak-source-list"),
    path(
        "weak-sources/create/",
        apis.WeakSourceCreateApi.as_view(),
        name="api-weak-source-create",
    ),
    path(
        "weak-sources/<id:pk>/imports/",
        apis.WeakImportCreateApi.as_view(),
        name="api-weak-import-create",
    ),
    path("weak-imports/", apis.WeakImportListApi.as_view(), name="api-weak-import-list"),
    path(
        "weak-imports/<id:pk>/",
        apis.WeakImportDetailApi.as_view(),
        name="api-weak-import-detail",
    ),
]
