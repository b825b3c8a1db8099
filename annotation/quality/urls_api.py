from django.urls import path

from annotation.quality.apis import gold, policy, raters, runs, tables

C = "quality/campaigns/<id:pk>/"

urlpatterns = [
    path(
        "campaigns/<id:pk>/raters/",
        raters.CampaignMembershipSetApi.as_view(),
        name="api-campaign-membership-set",
    ),
    path(f"{C}policy/", policy.PolicyApi.as_view(), name="api-quality-policy"),
    path(f"{C}compute/", runs.ComputeApi.as_view(), name="api-quality-compute"),
    path(f"{C}agreement/", tables.AgreementApi.as_view(), name="api-quality-agreement"),
    path(f"{C}results/", tables.ResultsApi.as_view(), name="api-quality-results"),
    path(f"{C}consensus/", tables.ConsensusApi.as_view(), name="api-quality-consensus"),
    path(f"{C}raters/", tables.RaterTableApi.as_view(), name="api-quality-raters"),
    path(
        f"{C}raters/<id:rater_id>/pause/",
        raters.RaterPauseApi.as_view(),
        name="api-quality-rater-pause",
    ),
    path(
        f"{C}raters/<id:rater_id>/resume/",
        raters.RaterResumeApi.as_view(),
        name="api-quality-rater-resume",
    ),
    path(f"{C}rankings/", tables.RankingApi.as_view(), name="api-quality-rankings"),
    path(f"{C}gold/", gold.GoldSetApi.as_view(), name="api-quality-gold-set"),
    path(f"{C}gold/add/", gold.GoldAddApi.as_view(), name="api-quality-gold-add"),
    path(f"{C}gold/promote/", gold.GoldPromoteApi.as_view(), name="api-quality-gold-promote"),
    path(
        f"{C}gold/<id:item_id>/unset/", gold.GoldUnsetApi.as_view(), name="api-quality-gold-unset"
    ),
    path("quality/runs/<id:pk>/", runs.RunDetailApi.as_view(), name="api-quality-run"),
]
