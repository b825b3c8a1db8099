from django.urls import path

from annotation.quality import rater_views, views

urlpatterns = [
    # The campaign page's raters form; membership is this app's to change.
    path("campaigns/<id:pk>/raters/", views.campaign_membership, name="campaign-membership"),
    path("raters/", rater_views.rater_list, name="rater-list"),
    path("raters/new/", rater_views.rater_create, name="rater-create"),
    path("raters/<id:pk>/", rater_views.rater_detail, name="rater-detail"),
    path("raters/<id:pk>/link/", rater_views.rater_link, name="rater-link"),
    path("raters/<id:pk>/campaigns/", rater_views.rater_campaigns_add, name="rater-campaigns-add"),
    path("quality/", views.campaign_index, name="quality-index"),
    path("quality/campaigns/<id:pk>/", views.campaign_quality, name="quality-campaign"),
    path("quality/campaigns/<id:pk>/live/", views.campaign_live, name="quality-campaign-live"),
    path("quality/campaigns/<id:pk>/leaderboard/", views.leaderboard, name="quality-leaderboard"),
    path("quality/campaigns/<id:pk>/compute/", views.compute, name="quality-compute"),
    path("quality/campaigns/<id:pk>/animate/", views.campaign_animate, name="quality-animate"),
    path(
        "quality/campaigns/<id:pk>/raters/<id:rater_id>/resume/",
        views.rater_resume,
        name="quality-rater-resume",
    ),
]
