from django.urls import path

from training_bridge import views

urlpatterns = [
    path("datasets/", views.rule_list, name="dataset-rule-list"),
    path("datasets/rules/new/", views.rule_form, name="dataset-rule-create"),
    path("datasets/rules/preview/", views.rule_form_preview, name="dataset-rule-form-preview"),
    path("datasets/rules/<id:pk>/", views.rule_detail, name="dataset-rule-detail"),
    path("datasets/rules/<id:pk>/edit/", views.rule_form, name="dataset-rule-edit"),
    path("datasets/rules/<id:pk>/build/", views.rule_build, name="dataset-rule-build"),
    path("datasets/versions/", views.version_list, name="dataset-version-list"),
    path("datasets/versions/<id:pk>/", views.version_detail, name="dataset-version-detail"),
    path("datasets/versions/<id:pk>/retire/", views.version_retire, name="dataset-version-retire"),
    path("datasets/versions/<id:pk>/export/", views.version_export, name="dataset-version-export"),
    path(
        "datasets/versions/<id:pk>/diff/<id:other>/",
        views.version_diff,
        name="dataset-version-diff",
    ),
    path("datasets/exports/", views.export_list, name="dataset-export-list"),
    path("datasets/exports/live/", views.export_list_live, name="dataset-export-list-live"),
    path("datasets/exports/<id:pk>/", views.export_detail, name="dataset-export-detail"),
    path("datasets/weak-sources/", views.weak_source_list, name="weak-source-list"),
]
