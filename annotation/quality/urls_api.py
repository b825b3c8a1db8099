from django.urls import path

from annotation.quality import apis

C = "quality/campaigns/<id:pk>/"

urlpatterns = [
    path(f"{C}policy/", apis.PolicyApi.as_view(), name="api-quality-policy"),
    path(f"{C}compute/", apis.ComputeApi.as_view(), name="api-quality-compute"),
    path(f"{C}agreement/", apis.AgreementApi.as_view(), name="api-quality-agreement"),
    path(f"{C}results/", apis.ResultsApi.as_view(), name="api-quality-results"),
    path(f"{C}consensus/", apis.ConsensusApi.as_view(), name="api-quality-consensus"),
    path(f"{C}raters/", apis.RaterTableApi.as_view(), name="api-quality-raters"),
    path(
        f"{C}raters/<id:rater_id>/pause/",
        apis.RaterPauseApi.as_view(),
        name="api-quality-rater-pause",
    ),
    path(
        f"{C}raters/<id:rater_id>/resume/",
        apis.RaterResumeApi.as_view(),
        name="api-quality-rater-resume",
    ),
    path(f"{C}rankings/", apis.RankingApi.as_view(), name="api-quality-rankings"),
    path(f"{C}gold/", apis.GoldSetApi.as_view(), name="api-quality-gold-set"),
    path(f"{C}gold/add/", apis.GoldAddApi.as_view(), name="api-quality-gold-add"),
    path(f"{C}gold/promote/", apis.GoldPromoteApi.as_view(), name="api-quality-gold-promote"),
    path(
        f"{C}gold/<id:item_id>/unset/", apis.GoldUnsetApi.as_view(), name="api-quality-gold-unset"
    ),
    path("quality/runs/<id:pk>/", apis.RunDetailApi.as_view(), name="api-quality-run"),
]
