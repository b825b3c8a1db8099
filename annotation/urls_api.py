from django.urls import path

from annotation.apis import campaigns, rating

urlpatterns = [
    path("campaigns/", campaigns.CampaignListApi.as_view(), name="api-campaign-list"),
    path("campaigns/create/", campaigns.CampaignCreateApi.as_view(), name="api-campaign-create"),
    path("campaign-presets/", campaigns.PresetListApi.as_view(), name="api-campaign-presets"),
    path("campaigns/<id:pk>/", campaigns.CampaignDetailApi.as_view(), name="api-campaign-detail"),
    path(
        "campaigns/<id:pk>/update/",
        campaigns.CampaignUpdateApi.as_view(),
        name="api-campaign-update",
    ),
    path(
        "campaigns/<id:pk>/start/", campaigns.CampaignStartApi.as_view(), name="api-campaign-start"
    ),
    path(
        "campaigns/<id:pk>/pause/", campaigns.CampaignPauseApi.as_view(), name="api-campaign-pause"
    ),
    path(
        "campaigns/<id:pk>/close/", campaigns.CampaignCloseApi.as_view(), name="api-campaign-close"
    ),
    path(
        "campaigns/<id:pk>/items/add/",
        campaigns.CampaignItemsAddApi.as_view(),
        name="api-campaign-items-add",
    ),
    path(
        "campaigns/<id:pk>/items/from-selection/",
        campaigns.CampaignItemsFromSelectionApi.as_view(),
        name="api-campaign-items-from-selection",
    ),
    path(
        "campaigns/<id:pk>/items/load/",
        campaigns.CampaignItemsLoadApi.as_view(),
        name="api-campaign-items-load",
    ),
    path(
        "campaigns/<id:pk>/items/loads/",
        campaigns.CampaignItemLoadListApi.as_view(),
        name="api-campaign-item-loads",
    ),
    path(
        "campaigns/<id:pk>/items/loads/<id:load>/",
        campaigns.CampaignItemLoadDetailApi.as_view(),
        name="api-campaign-item-load",
    ),
    path(
        "campaigns/<id:pk>/progress/",
        campaigns.CampaignProgressApi.as_view(),
        name="api-campaign-progress",
    ),
    # Raters
    path("rate/campaigns/", rating.RaterCampaignListApi.as_view(), name="api-rater-campaigns"),
    path("rate/ping/", rating.PingApi.as_view(), name="api-rate-ping"),
    path("campaigns/<id:pk>/rate/", rating.RatingStepApi.as_view(), name="api-rating-step"),
    path("campaigns/<id:pk>/next/", rating.ItemNextApi.as_view(), name="api-item-next"),
    path(
        "campaigns/<id:pk>/submit/", rating.JudgmentSubmitApi.as_view(), name="api-judgment-submit"
    ),
    path("campaigns/<id:pk>/skip/", rating.ItemSkipApi.as_view(), name="api-item-skip"),
    path("campaigns/<id:pk>/undo/", rating.JudgmentUndoApi.as_view(), name="api-judgment-undo"),
    path("campaigns/<id:pk>/held/", rating.ItemsHeldApi.as_view(), name="api-items-held"),
    path(
        "campaigns/<id:pk>/rate/progress/",
        rating.RaterProgressApi.as_view(),
        name="api-rater-progress",
    ),
    path(
        "campaigns/<id:pk>/rate/config/",
        rating.RatingConfigApi.as_view(),
        name="api-rating-config",
    ),
]
