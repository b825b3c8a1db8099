from django.urls import path

from annotation.quality import views

urlpatterns = [
    path("quality/", views.campaign_index, name="quality-index"),
    path("quality/campaigns/<id:pk>/", views.campaign_quality, name="quality-campaign"),
    path("quality/campaigns/<id:pk>/leaderboard/", views.leaderboard, name="quality-leaderboard"),
    path("quality/campaigns/<id:pk>/compute/", views.compute, name="quality-compute"),
    path(
        "quality/campaigns/<id:pk>/raters/<id:rater_id>/resume/",
        views.rater_resume,
        name="quality-rater-resume",
    ),
]
