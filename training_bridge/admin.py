from django.contrib import admin

from training_bridge.models import (
    AuditEvent,
    DatasetExport,
    DatasetRule,
    DatasetVersion,
    TrainingTrigger,
    WeakImport,
    WeakSource,
)


@admin.register(DatasetRule)
class DatasetRuleAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "purpose", "kind", "consensus_method", "updated_at"]
    list_filter = ["purpose", "kind"]
    search_fields = ["name"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Versions, exports and the audit log change only through the services."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    list_display = ["id", "rule", "number", "purpose", "status", "entry_count", "created_at"]
    list_filter = ["purpose", "status"]


@admin.register(DatasetExport)
class DatasetExportAdmin(ReadOnlyAdmin):
    list_display = ["id", "version", "format", "status", "done", "total", "size_bytes"]
    list_filter = ["format", "status"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "actor", "version", "export"]
    list_filter = ["action"]


@admin.register(TrainingTrigger)
class TrainingTriggerAdmin(ReadOnlyAdmin):
    list_display = ["id", "version", "origin", "status", "job_id", "created_at", "fired_at"]
    list_filter = ["origin", "status"]


@admin.register(WeakSource)
class WeakSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "candidate_count", "created_at"]


@admin.register(WeakImport)
class WeakImportAdmin(ReadOnlyAdmin):
    list_display = ["id", "source", "file_format", "status", "imported", "duplicates", "failed"]
    list_filter = ["status"]
