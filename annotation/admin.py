"""Read-only views of the annotation tables: every change goes through the services."""

from django.contrib import admin

from annotation.models import Campaign, CampaignMembership, Item, ItemLoad, Judgment, Lease


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "kind", "preset", "status", "overlap", "created_at"]
    list_filter = ["kind", "status", "preset"]
    search_fields = ["name"]


@admin.register(CampaignMembership)
class CampaignMembershipAdmin(ReadOnlyAdmin):
    list_display = ["campaign", "rater", "status", "paused_reason"]
    list_filter = ["status"]


@admin.register(Item)
class ItemAdmin(ReadOnlyAdmin):
    list_display = ["id", "campaign", "is_gold", "judgment_count", "leased_count", "overlap_target"]
    list_filter = ["is_gold"]


@admin.register(ItemLoad)
class ItemLoadAdmin(ReadOnlyAdmin):
    list_display = ["id", "campaign", "status", "items_created", "created_at", "finished_at"]
    list_filter = ["status"]


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ["id", "item", "rater", "expires_at", "released"]


@admin.register(Judgment)
class JudgmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "item", "rater", "skipped", "excluded", "seconds_on_item", "created_at"]
    list_filter = ["skipped", "excluded"]
