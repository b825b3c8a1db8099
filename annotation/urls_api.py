from django.urls import path

from annotation import apis

urlpatterns = [
    path("campaigns/", apis.CampaignListApi.as_view(), name="api-campaign-list"),
    path("campaigns/create/", apis.CampaignCreateApi.as_view(), name="api-campaign-create"),
    path("campaign-presets/", apis.PresetListApi.as_view(), name="api-campaign-presets"),
    path("campaigns/<int:pk>/", apis.CampaignDetailApi.as_view(), name="api-campaign-detail"),
    path(
        "campaigns/<int:pk>/update/", apis.CampaignUpdateApi.as_view(), name="api-campaign-update"
    ),
    path("campaigns/<int:pk>/start/", apis.CampaignStartApi.as_view(), name="api-campaign-start"),
    path("campaigns/<int:pk>/pause/", apis.CampaignPauseApi.as_view(), name="api-campaign-pause"),
    path("campaigns/<int:pk>/close/", apis.CampaignCloseApi.as_view(), name="api-campaign-close"),
    path(
        "campaigns/<int:pk>/items/add/",
        apis.CampaignItemsAddApi.as_view(),
        name="api-campaign-items-add",
    ),
    path(
        "campaigns/<int:pk>/items/from-selection/",
        apis.CampaignItemsFromSelectionApi.as_view(),
        name="api-campaign-items-from-selection",
    ),
    path(
        "campaigns/<int:pk>/progress/",
        apis.CampaignProgressApi.as_view(),
        name="api-campaign-progress",
    ),
    # Raters
    path("rate/campaigns/", apis.RaterCampaignListApi.as_view(), name="api-rater-campaigns"),
    path("rate/ping/", apis.PingApi.as_view(), name="api-rate-ping"),
    path("campaigns/<int:pk>/rate/", apis.RatingStepApi.as_view(), name="api-rating-step"),
    path("campaigns/<int:pk>/next/", apis.ItemNextApi.as_view(), name="api-item-next"),
    path(
        "campaigns/<int:pk>/submit/", apis.JudgmentSubmitApi.as_view(), name="api-judgment-submit"
    ),
    path("campaigns/<int:pk>/skip/", apis.ItemSkipApi.as_view(), name="api-item-skip"),
    path("campaigns/<int:pk>/undo/", apis.JudgmentUndoApi.as_view(), name="api-judgment-undo"),
    path("campaigns/<int:pk>/held/", apis.ItemsHeldApi.as_view(), name="api-items-held"),
]
