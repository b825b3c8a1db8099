from django.urls import path

from training_bridge.apis import exports as exports_apis
from training_bridge.apis import rules as rules_apis
from training_bridge.apis import versions as versions_apis
from training_bridge.apis import weak_imports as weak_imports_apis

urlpatterns = [
    path("dataset-rules/", rules_apis.RuleListApi.as_view(), name="api-dataset-rule-list"),
    path(
        "dataset-rules/create/", rules_apis.RuleCreateApi.as_view(), name="api-dataset-rule-create"
    ),
    path(
        "dataset-rules/preview/",
        rules_apis.RuleDraftPreviewApi.as_view(),
        name="api-dataset-rule-draft-preview",
    ),
    path(
        "dataset-rules/<id:pk>/",
        rules_apis.RuleDetailApi.as_view(),
        name="api-dataset-rule-detail",
    ),
    path(
        "dataset-rules/<id:pk>/update/",
        rules_apis.RuleUpdateApi.as_view(),
        name="api-dataset-rule-update",
    ),
    path(
        "dataset-rules/<id:pk>/preview/",
        rules_apis.RulePreviewApi.as_view(),
        name="api-dataset-rule-preview",
    ),
    path(
        "dataset-rules/<id:pk>/build/",
        versions_apis.RuleBuildApi.as_view(),
        name="api-dataset-rule-build",
    ),
    path(
        "dataset-versions/", versions_apis.VersionListApi.as_view(), name="api-dataset-version-list"
    ),
    path(
        "dataset-versions/<id:pk>/",
        versions_apis.VersionDetailApi.as_view(),
        name="api-dataset-version-detail",
    ),
    path(
        "dataset-versions/<id:pk>/entries/",
        versions_apis.VersionEntriesApi.as_view(),
        name="api-dataset-version-entries",
    ),
    path(
        "dataset-versions/<id:pk>/retire/",
        versions_apis.VersionRetireApi.as_view(),
        name="api-dataset-version-retire",
    ),
    path(
        "dataset-versions/<id:pk>/diff/<id:other>/",
        versions_apis.VersionDiffApi.as_view(),
        name="api-dataset-version-diff",
    ),
    path(
        "dataset-versions/<id:pk>/exports/",
        exports_apis.ExportCreateApi.as_view(),
        name="api-dataset-export-create",
    ),
    path(
        "dataset-versions/<id:pk>/exports/batch/",
        exports_apis.ExportBatchCreateApi.as_view(),
        name="api-dataset-export-batch-create",
    ),
    path("dataset-exports/", exports_apis.ExportListApi.as_view(), name="api-dataset-export-list"),
    path(
        "dataset-exports/progress/",
        exports_apis.ExportProgressApi.as_view(),
        name="api-dataset-export-progress",
    ),
    path(
        "dataset-exports/<id:pk>/",
        exports_apis.ExportDetailApi.as_view(),
        name="api-dataset-export-detail",
    ),
    path(
        "dataset-exports/<id:pk>/download/",
        exports_apis.ExportDownloadApi.as_view(),
        name="api-dataset-export-download",
    ),
    path("dataset-audit/", exports_apis.AuditListApi.as_view(), name="api-dataset-audit"),
    path(
        "weak-sources/", weak_imports_apis.WeakSourceListApi.as_view(), name="api-weak-source-list"
    ),
    path(
        "weak-sources/create/",
        weak_imports_apis.WeakSourceCreateApi.as_view(),
        name="api-weak-source-create",
    ),
    path(
        "weak-sources/<id:pk>/imports/",
        weak_imports_apis.WeakImportCreateApi.as_view(),
        name="api-weak-import-create",
    ),
    path(
        "weak-imports/", weak_imports_apis.WeakImportListApi.as_view(), name="api-weak-import-list"
    ),
    path(
        "weak-imports/<id:pk>/",
        weak_imports_apis.WeakImportDetailApi.as_view(),
        name="api-weak-import-detail",
    ),
]
