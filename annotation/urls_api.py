from django.urls import path

from annotation import apis

urlpatterns = [
    path("campaigns/", apis.CampaignListApi.as_view(), name="api-campaign-list"),
    path("campaigns/create/", apis.CampaignCreateApi.as_view(), name="api-campaign-create"),
    path("campaign-presets/", apis.PresetListApi.as_view(), name="api-campaign-presets"),
    path("campaigns/<id:pk>/", apis.CampaignDetailApi.as_view(), name="api-campaign-detail"),
    path("campaigns/<id:pk>/update/", apis.CampaignUpdateApi.as_view(), name="api-campaign-update"),
    path("campaigns/<id:pk>/start/", apis.CampaignStartApi.as_view(), name="api-campaign-start"),
    path("campaigns/<id:pk>/pause/", apis.CampaignPauseApi.as_view(), name="api-campaign-pause"),
    path("campaigns/<id:pk>/close/", apis.CampaignCloseApi.as_view(), name="api-campaign-close"),
    path(
        "campaigns/<id:pk>/items/add/",
        apis.CampaignItemsAddApi.as_view(),
        name="api-campaign-items-add",
    ),
    path(
        "campaigns/<id:pk>/items/from-selection/",
        apis.CampaignItemsFromSelectionApi.as_view(),
        name="api-campaign-items-from-selection",
    ),
    path(
        "campaigns/<id:pk>/raters/",
        apis.CampaignMembershipSetApi.as_view(),
        name="api-campaign-membership-set",
    ),
    path(
        "campaigns/<id:pk>/progress/",
        apis.CampaignProgressApi.as_view(),
        name="api-campaign-progress",
    ),
    # Raters
    path("rate/campaigns/", apis.RaterCampaignListApi.as_view(), name="api-rater-campaigns"),
    path("rate/ping/", apis.PingApi.as_view(), name="api-rate-ping"),
    path("campaigns/<id:pk>/rate/", apis.RatingStepApi.as_view(), name="api-rating-step"),
    path("campaigns/<id:pk>/next/", apis.ItemNextApi.as_view(), name="api-item-next"),
    path("campaigns/<id:pk>/submit/", apis.JudgmentSubmitApi.as_view(), name="api-judgment-submit"),
    path("campaigns/<id:pk>/skip/", apis.ItemSkipApi.as_view(), name="api-item-skip"),
    path("campaigns/<id:pk>/undo/", apis.JudgmentUndoApi.as_view(), name="api-judgment-undo"),
    path("campaigns/<id:pk>/held/", apis.ItemsHeldApi.as_view(), name="api-items-held"),
]
