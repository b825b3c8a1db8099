from django.urls import path

from annotation.quality import views

urlpatterns = [
    # The campaign page's raters form; membership is this app's to change.
    path("campaigns/<int:pk>/raters/", views.campaign_membership, name="campaign-membership"),
    path("quality/", views.campaign_index, name="quality-index"),
    path("quality/campaigns/<int:pk>/", views.campaign_quality, name="quality-campaign"),
    path("quality/campaigns/<int:pk>/leaderboard/", views.leaderboard, name="quality-leaderboard"),
    path("quality/campaigns/<int:pk>/compute/", views.compute, name="quality-compute"),
    path(
        "quality/campaigns/<int:pk>/raters/<int:rater_id>/resume/",
        views.rater_resume,
        name="quality-rater-resume",
    ),
]
