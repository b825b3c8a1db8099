from django.urls import path

from annotation.apis import campaigns, rating

urlpatterns = [
    path("campaigns/", campaigns.CampaignListApi.as_view(), name="api-campaign-list"),
    path("campaigns/create/", campaigns.CampaignCreateApi.as_view(), name="api-campaign-create"),
    path("campaign-presets/", campaigns.PresetListApi.as_view(), name="api-campaign-presets"),
    path("campaigns/<int:pk>/", campaigns.CampaignDetailApi.as_view(), name="api-campaign-detail"),
    path(
        "campaigns/<int:pk>/update/",
        campaigns.CampaignUpdateApi.as_view(),
        name="api-campaign-update",
    ),
    path(
        "campaigns/<int:pk>/start/", campaigns.CampaignStartApi.as_view(), name="api-campaign-start"
    ),
    path(
        "campaigns/<int:pk>/pause/", campaigns.CampaignPauseApi.as_view(), name="api-campaign-pause"
    ),
    path(
        "campaigns/<int:pk>/close/", campaigns.CampaignCloseApi.as_view(), name="api-campaign-close"
    ),
    path(
        "campaigns/<int:pk>/items/add/",
        campaigns.CampaignItemsAddApi.as_view(),
        name="api-campaign-items-add",
    ),
    path(
        "campaigns/<int:pk>/items/from-selection/",
        campaigns.CampaignItemsFromSelectionApi.as_view(),
        name="api-campaign-items-from-selection",
    ),
    path(
        "campaigns/<int:pk>/progress/",
        campaigns.CampaignProgressApi.as_view(),
        name="api-campaign-progress",
    ),
    # Raters
    path("rate/campaigns/", rating.RaterCampaignListApi.as_view(), name="api-rater-campaigns"),
    path("rate/ping/", rating.PingApi.as_view(), name="api-rate-ping"),
    path("campaigns/<int:pk>/rate/", rating.RatingStepApi.as_view(), name="api-rating-step"),
    path("campaigns/<int:pk>/next/", rating.ItemNextApi.as_view(), name="api-item-next"),
    path(
        "campaigns/<int:pk>/submit/", rating.JudgmentSubmitApi.as_view(), name="api-judgment-submit"
    ),
    path("campaigns/<int:pk>/skip/", rating.ItemSkipApi.as_view(), name="api-item-skip"),
    path("campaigns/<int:pk>/undo/", rating.JudgmentUndoApi.as_view(), name="api-judgment-undo"),
    path("campaigns/<int:pk>/held/", rating.ItemsHeldApi.as_view(), name="api-items-held"),
]
