from django.contrib import admin

from generation.models import (
    Candidate,
    GenerationBatch,
    GenerationChunk,
    ModelVersion,
    PromptImport,
    PromptSet,
)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "role", "parent", "is_active", "created_at"]
    list_filter = ["kind", "role", "is_active"]
    search_fields = ["name", "uri"]


@admin.register(PromptSet)
class PromptSetAdmin(admin.ModelAdmin):
    list_display = ["name", "is_held_out", "created_at"]
    search_fields = ["name"]


@admin.register(PromptImport)
class PromptImportAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "status", "progress", "processed", "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in PromptImport._meta.fields]


@admin.register(GenerationBatch)
class GenerationBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "kind", "status", "done_count", "failed_count", "total"]
    list_filter = ["kind", "status"]
    readonly_fields = [f.name for f in GenerationBatch._meta.fields]


@admin.register(GenerationChunk)
class GenerationChunkAdmin(admin.ModelAdmin):
    list_display = ["id", "batch", "index", "model_version", "status", "attempts"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in GenerationChunk._meta.fields]


@admin.register(Candidate)
class CandidateAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "origin", "model_version", "seed", "inference_ms", "motion_score"]
    list_filter = ["kind", "origin"]
    readonly_fields = [f.name for f in Candidate._meta.fields]
