"""Quality pages: a campaign's agreement, consensus and raters; the leaderboard of a pair
campaign. Numbers come from stored results; plots are inline SVG drawn on the server."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.forms import MembershipForm
from annotation.models import Campaign, CampaignKind, CampaignStatus
from annotation.quality import selectors, svg
from annotation.quality.models import AggregationRun, RunStatus
from annotation.quality.services import membership
from annotation.quality.services.runs import aggregation_run_request
from generation.views import SESSION_SOURCES
from stickerloop.errors import ServiceConflict
from stickerloop.roles import Role, has_role, role_required

STAFF = (Role.CURATOR, Role.ML_ENGINEER)


@role_required(*STAFF)
def campaign_index(request):
    campaigns = Campaign.objects.order_by("-created_at", "-id")[:200]
    last_runs = {}
    for run in AggregationRun.objects.filter(campaign__in=campaigns).order_by("-created_at"):
        last_runs.setdefault(run.campaign_id, run)
    rows = [{"campaign": c, "run": last_runs.get(c.pk)} for c in campaigns]
    return render(request, "quality/index.html", {"rows": rows})


def _question_labels(campaign: Campaign) -> dict[str, str]:
    return {q["key"]: q.get("label", q["key"]) for q in selectors.campaign_questions(campaign)}


def _live_context(campaign: Campaign) -> dict:
    """The quality page's moving part: its last computations. The page shows results as of the
    newest succeeded run, so that run is the fragment's phase: a new one reloads the page (see
    static/js/live.js). Nothing moves once the campaign is closed and no run is pending."""
    runs = list(AggregationRun.objects.filter(campaign=campaign).order_by("-created_at")[:5])
    succeeded = [run.pk for run in runs if run.status == RunStatus.SUCCEEDED]
    pending = any(run.status in (RunStatus.QUEUED, RunStatus.RUNNING) for run in runs)
    return {
        "campaign": campaign,
        "runs": runs,
        "results_run": succeeded[0] if succeeded else "none",
        "settled": campaign.status == CampaignStatus.CLOSED and not pending,
    }


@role_required(*STAFF)
def campaign_live(request, pk: int):
    """The quality page's live fragment, polled by static/js/live.js."""
    campaign = get_object_or_404(Campaign, pk=pk)
    return render(request, "quality/_live.html", _live_context(campaign))


@role_required(*STAFF)
def campaign_quality(request, pk: int):
    campaign = get_object_or_404(Campaign, pk=pk)
    labels = _question_labels(campaign)
    agreement = [
        {
            "result": a,
            "label": labels.get(a.question_key, a.question_key),
            "plot": svg.bar_chart(
                [str(d["label"]) for d in a.distribution],
                [d["count"] for d in a.distribution],
                title=f"Answers to {a.question_key}",
            ),
        }
        for a in selectors.agreement_results(campaign=campaign)
    ]
    results = [
        {
            "result": r,
            "plot": svg.histogram(
                r.confidence_histogram, title=f"Consensus confidence, {r.question_key}, {r.method}"
            ),
        }
        for r in selectors.question_results(campaign=campaign)
    ]
    raters = selectors.rater_table(campaign=campaign)
    return render(
        request,
        "quality/campaign.html",
        {
            **_live_context(campaign),
            "policy": selectors.policy_for(campaign),
            "agreement": agreement,
            "results": results,
            "raters": raters,
            "paused_count": sum(1 for r in raters if r["status"] == "paused"),
            "is_pair": campaign.kind == CampaignKind.PAIR,
            "can_act": has_role(request.user, Role.CURATOR),
            "animate_choices": _animate_choices(campaign),
        },
    )


def _animate_choices(campaign: Campaign) -> list[dict]:
    """(question, answer) pairs whose passing stickers the page offers to animate: each answer
    of the questions asked once per item."""
    return [
        {
            "value": json.dumps([q["key"], option["value"]]),
            "text": f"{q.get('label', q['key'])}: {option.get('label', option['value'])}",
        }
        for q in selectors.campaign_questions(campaign)
        if not q.get("per_candidate")
        for option in q.get("options") or []
    ]


@role_required(*STAFF)
def campaign_animate(request, pk: int):
    """Take the stickers whose consensus gives the chosen answer to the animation batch page
    (``?passing=["question", answer]``), ticked there as if in the gallery; they travel in the
    session, as a campaign may pass more than a URL holds."""
    campaign = get_object_or_404(Campaign, pk=pk)
    try:
        question_key, label = json.loads(request.GET.get("passing", ""))
        if not isinstance(question_key, str):
            raise TypeError
        stickers = selectors.passing_stickers(
            campaign=campaign, question_key=question_key, label=label
        )
    except (ValueError, TypeError):
        messages.error(request, "Choose a question and an answer.")
        return redirect("quality-campaign", pk=pk)
    except ValidationError as exc:
        messages.error(request, " ".join(m for ms in exc.message_dict.values() for m in ms))
        return redirect("quality-campaign", pk=pk)
    if not stickers:
        messages.error(
            request, f"No sticker of this campaign has that consensus on {question_key}."
        )
        return redirect("quality-campaign", pk=pk)
    request.session[SESSION_SOURCES] = stickers
    return redirect("animation-batch-create")


@role_required(*STAFF)
def leaderboard(request, pk: int):
    campaign = get_object_or_404(Campaign, pk=pk)
    labels = _question_labels(campaign)
    boards = []
    for ranking in selectors.ranking_results(campaign=campaign):
        strengths = list(ranking.strengths.all())
        names = [s.model_version.name for s in strengths]
        position = {s.model_version_id: i for i, s in enumerate(strengths)}
        rates = {}
        for pair in ranking.pairs:
            i, j = position[pair["a_id"]], position[pair["b_id"]]
            total = pair["a_wins"] + pair["b_wins"] + pair["ties"]
            rates[(i, j)] = (pair["a_win_rate"], total)
            rates[(j, i)] = (1 - pair["a_win_rate"], total)
        boards.append(
            {
                "ranking": ranking,
                "label": labels.get(ranking.question_key, ranking.question_key),
                "strengths": strengths,
                "strength_plot": svg.interval_chart(
                    [(s.model_version.name, s.strength, s.ci_low, s.ci_high) for s in strengths],
                    title=f"Bradley–Terry strength with 95% bootstrap intervals, "
                    f"{ranking.question_key}",
                ),
                "matrix_plot": svg.win_rate_matrix(
                    names, rates, title=f"Win rate of the row model, {ranking.question_key}"
                ),
                "pairs": ranking.pairs,
            }
        )
    return render(request, "quality/leaderboard.html", {"campaign": campaign, "boards": boards})


@require_POST
@role_required(*STAFF)
def compute(request, pk: int):
    campaign = get_object_or_404(Campaign, pk=pk)
    try:
        run = aggregation_run_request(campaign=campaign, requested_by=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(m for ms in exc.message_dict.values() for m in ms))
    else:
        messages.success(request, f"Computation {run.pk} is queued.")
    return redirect("quality-campaign", pk=campaign.pk)


@require_POST
@role_required(Role.CURATOR)
def rater_resume(request, pk: int, rater_id: int):
    campaign = get_object_or_404(Campaign, pk=pk)
    try:
        membership.rater_resume(
            campaign=campaign,
            rater_id=rater_id,
            actor=request.user,
            reason=request.POST.get("reason", ""),
        )
    except (ValidationError, ServiceConflict) as exc:
        text = (
            " ".join(m for ms in exc.message_dict.values() for m in ms)
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        messages.error(request, text)
    else:
        messages.success(request, "The rater is resumed.")
    return redirect("quality-campaign", pk=campaign.pk)


@require_POST
@role_required(Role.CURATOR)
def campaign_membership(request, pk: int):
    """The campaign page's raters form: add a rater, or pause or resume one, through the
    membership service (the same rules as the quality pages)."""
    campaign = get_object_or_404(Campaign, pk=pk)
    form = MembershipForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("campaign-detail", pk=pk)
    try:
        membership.campaign_membership_set(
            campaign=campaign, actor=request.user, **form.cleaned_data
        )
    except ValidationError as exc:
        messages.error(request, " ".join(m for ms in exc.message_dict.values() for m in ms))
    except ServiceConflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"{form.cleaned_data['rater'].get_username()}: {form.cleaned_data['status']}."
        )
    return redirect("campaign-detail", pk=pk)
