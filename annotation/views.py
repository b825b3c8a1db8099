"""Pages: the rater's own page and rating screen; campaign pages for curators and engineers."""

import json

import markdown
import nh3
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from annotation import selectors
from annotation.forms import CampaignForm, MembershipForm, SelectionForm
from annotation.models import (
    Campaign,
    CampaignMembership,
    CampaignStatus,
    MembershipStatus,
    Preset,
)
from annotation.rating_config import rating_config
from annotation.services import campaigns as campaign_services
from annotation.services import items as item_services
from annotation.services.item_loads import item_load_request, too_large_for_a_request
from generation.models import Candidate, GenerationBatch
from generation.services.strips import frame_strip_ensure
from stickerloop import media
from stickerloop.authentication import login_or_token_required
from stickerloop.errors import ServiceConflict
from stickerloop.ids import parse_id
from stickerloop.list_filters import list_filter_apply, list_filters
from stickerloop.media import media_url
from stickerloop.roles import Role, role_required

STAFF = (Role.CURATOR, Role.ML_ENGINEER)


def guidelines_html(text: str) -> str:
    """Markdown rendered, then sanitised: raw HTML, scripts and event handlers are dropped."""
    return mark_safe(nh3.clean(markdown.markdown(text or "", extensions=["extra"])))


def _examples(candidates, rater_prompt: str) -> list[dict]:
    """``candidates`` with their sources joined (``selectors.campaign_list`` prefetches them so),
    as the staff pages show them; raters get ``selectors.examples_media_urls``."""
    return [
        {
            "kind": c.kind,
            "url": media_url(c.file),
            "prompt": selectors.prompt_shown(
                raw_prompt=c.raw_prompt,
                enhanced_prompt=c.enhanced_prompt,
                rater_prompt=rater_prompt,
            ),
            "source_url": media_url(c.source.file) if c.source_id else "",
        }
        for c in candidates
    ]


# Raters ------------------------------------------------------------------------------------------


@role_required(Role.RATER)
def rater_home(request):
    return render(
        request,
        "annotation/rater_home.html",
        {
            "campaigns": selectors.rater_campaigns(rater=request.user),
            "today": selectors.rater_today(rater=request.user),
        },
    )


@role_required(Role.RATER)
def rate(request, pk: int):
    """The rating screen. Its script leases and preloads the next items through the API."""
    campaign = get_object_or_404(Campaign, pk=pk)
    membership = CampaignMembership.objects.filter(campaign=campaign, rater=request.user).first()
    if membership is None:
        raise PermissionDenied(f"You are not a rater of campaign {campaign.name!r}.")
    config = rating_config(
        campaign=campaign, membership=membership, username=request.user.get_username()
    )
    return render(
        request,
        "annotation/rate.html",
        {
            "campaign": campaign,
            "config": config,
            "guidelines": guidelines_html(campaign.guidelines),
            "good_examples": selectors.examples_media_urls(
                campaign_id=campaign.pk,
                rater_id=request.user.pk,
                good=True,
                candidates=campaign.good_examples.all(),
                rater_prompt=campaign.rater_prompt,
            ),
            "bad_examples": selectors.examples_media_urls(
                campaign_id=campaign.pk,
                rater_id=request.user.pk,
                good=False,
                candidates=campaign.bad_examples.all(),
                rater_prompt=campaign.rater_prompt,
            ),
            "can_rate": membership.status == MembershipStatus.ACTIVE
            and campaign.status == CampaignStatus.RUNNING,
            # The counters as the page opens; the script keeps them current (RaterProgressApi).
            "progress": selectors.rater_progress(campaign_id=campaign.pk, rater_id=request.user.pk),
        },
    )


@login_or_token_required
def rate_media(request, token: str, position: int, part: str):
    """A file of the rating screen, under a signed grant (``stickerloop.media``); the grant's
    scope is checked against the rater's leases and judgments on every fetch
    (``selectors.rater_media_key``). 404 for every refusal: it says nothing about what exists.
    An animation's frame strip is made from its frames on the first request that finds none.
    A script rating with an API token (the simulated raters) fetches the same URLs with it."""
    scope = media.grant_scope(token=token, user_id=request.user.pk)
    if scope is None:
        raise Http404("No such file.")
    if part == selectors.STRIP_PART:
        frames = selectors.rater_media_frames(
            rater_id=request.user.pk, scope=scope, position=position
        )
        if frames is None:
            raise Http404("No such file.")
        frames_prefix, frame_count = frames
        key = frame_strip_ensure(frames_prefix=frames_prefix, frame_count=frame_count)
    else:
        key = selectors.rater_media_key(
            rater_id=request.user.pk, scope=scope, position=position, part=part
        )
    return media.media_response(key)


# Curators ----------------------------------------------------------------------------------------


def _form_errors(form, exc: ValidationError) -> None:
    for field, problems in exc.message_dict.items():
        target = field if field in form.fields else None
        for problem in problems:
            form.add_error(target, problem if target else f"{field}: {problem}")


@role_required(*STAFF)
def campaign_list(request):
    filters, errors = list_filters(request.GET, statuses=CampaignStatus.values)
    qs = selectors.campaign_list()
    if not errors:
        qs = list_filter_apply(qs, filters)
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    progress = selectors.campaigns_progress(campaigns=page.object_list)
    rows = [{"campaign": c, "progress": progress[c.pk]} for c in page]
    return render(
        request,
        "annotation/campaign_list.html",
        {
            "page": page,
            "rows": rows,
            "filters": filters,
            "errors": errors,
            "statuses": CampaignStatus.values,
        },
        status=400 if errors else 200,
    )


def _campaign_values(form: CampaignForm) -> dict:
    values = dict(form.cleaned_data)
    values.pop("batch", None)
    values["good_examples"] = list(Candidate.objects.filter(pk__in=values["good_examples"]))
    values["bad_examples"] = list(Candidate.objects.filter(pk__in=values["bad_examples"]))
    presets = values.pop("presets")
    if presets == [Preset.CUSTOM]:
        values["preset"] = Preset.CUSTOM
    else:
        values["presets"] = presets
        values.pop("question_schema")
    return values


@role_required(*STAFF)
def campaign_create(request):
    """The new-campaign form; opened from a batch (``?batch=<id>``), it carries the batch on to
    the campaign's page, whose items form then has it selected."""
    initial = {"presets": [Preset.ALIGNMENT]}
    batch_id = parse_id(request.GET.get("batch"))
    batch = GenerationBatch.objects.filter(pk=batch_id).first() if batch_id else None
    if batch is not None:
        initial.update(batch=batch.pk, name=f"Batch {batch.pk}: {batch.name}".rstrip(": "))
    form = CampaignForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        values = _campaign_values(form)
        values["raters"] = list(values["raters"])
        try:
            campaign = campaign_services.campaign_create(**values, created_by=request.user)
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, f"Campaign {campaign.name!r} created as a draft.")
            url = reverse("campaign-detail", args=[campaign.pk])
            if form.cleaned_data["batch"] is not None:
                url += f"?batch={form.cleaned_data['batch'].pk}"
            return redirect(url)
    return render(
        request,
        "annotation/campaign_form.html",
        {"form": form, "title": "New campaign", "batch": batch},
        status=400 if form.errors else 200,
    )


@role_required(*STAFF)
def campaign_edit(request, pk: int):
    campaign = get_object_or_404(Campaign, pk=pk)
    initial = {
        "name": campaign.name,
        "presets": campaign.presets or [Preset.CUSTOM],
        "guidelines": campaign.guidelines,
        "overlap": campaign.overlap,
        "max_overlap": campaign.max_overlap,
        "lease_seconds": campaign.lease_seconds,
        "gold_rate": campaign.gold_rate,
        "rater_prompt": campaign.rater_prompt,
        "good_examples": " ".join(
            str(i) for i in campaign.good_examples.values_list("pk", flat=True)
        ),
        "bad_examples": " ".join(
            str(i) for i in campaign.bad_examples.values_list("pk", flat=True)
        ),
    }
    if campaign.preset == "custom":
        initial["question_schema"] = json.dumps(campaign.question_schema, indent=2)
    form = CampaignForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        values = _campaign_values(form)
        if campaign.status != CampaignStatus.DRAFT:
            values = {k: values[k] for k in campaign_services.EDITABLE_WHILE_RUNNING}
        elif values.get("presets") == campaign.presets:
            # The same presets: the stored questions stay as they are.
            values.pop("presets")
        if values.get("max_overlap") is None:
            values.pop("max_overlap", None)
        try:
            campaign_services.campaign_update(campaign=campaign, **values)
        except ValidationError as exc:
            _form_errors(form, exc)
        except ServiceConflict as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Saved.")
            return redirect("campaign-detail", pk=campaign.pk)
    return render(
        request,
        "annotation/campaign_form.html",
        {"form": form, "title": f"Edit {campaign.name}", "campaign": campaign},
        status=400 if form.errors else 200,
    )


@role_required(*STAFF)
def campaign_detail(request, pk: int):
    """The campaign's page; ``?batch=<id>`` selects that batch in its items form."""
    campaign = get_object_or_404(selectors.campaign_list(), pk=pk)
    batch = parse_id(request.GET.get("batch"))
    return render(
        request,
        "annotation/campaign_detail.html",
        {
            "campaign": campaign,
            "progress": selectors.campaign_progress(campaign=campaign),
            "memberships": campaign.memberships.select_related("rater").order_by("rater__username"),
            "selection_form": SelectionForm(initial={"batches": [batch]} if batch else None),
            "item_loads": selectors.item_loads(campaign.pk, limit=5),
            "membership_form": MembershipForm(),
            "guidelines": guidelines_html(campaign.guidelines),
            "good_examples": _examples(campaign.good_examples.all(), campaign.rater_prompt),
            "bad_examples": _examples(campaign.bad_examples.all(), campaign.rater_prompt),
        },
    )


ACTIONS = {
    "start": campaign_services.campaign_start,
    "pause": campaign_services.campaign_pause,
    "close": campaign_services.campaign_close,
}


@require_POST
@role_required(*STAFF)
def campaign_action(request, pk: int, action: str):
    campaign = get_object_or_404(Campaign, pk=pk)
    if action not in ACTIONS:
        raise PermissionDenied("Unknown action.")
    try:
        ACTIONS[action](campaign=campaign)
    except ServiceConflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Campaign {action}ed." if action != "pause" else "Paused.")
    return redirect("campaign-detail", pk=pk)


@require_POST
@role_required(*STAFF)
def campaign_items_from_selection(request, pk: int):
    campaign = get_object_or_404(Campaign, pk=pk)
    form = SelectionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("campaign-detail", pk=pk)
    data = form.cleaned_data
    selection = {
        "batches": [b.pk for b in data["batches"]],
        "model_versions": [m.pk for m in data["model_versions"]],
        "prompt_tags": [t.name for t in data["prompt_tags"]],
        "candidate_kind": data["candidate_kind"] or None,
        "group_size": data["group_size"],
    }
    try:
        if too_large_for_a_request(campaign=campaign, **selection):
            load = item_load_request(
                campaign=campaign, requested_by=request.user, seed=data["seed"], **selection
            )
            messages.success(
                request,
                f"Item load {load.pk} queued: a worker adds the selection's items, "
                "and this page shows when it is done.",
            )
        else:
            items = item_services.campaign_items_from_selection(
                campaign=campaign, seed=data["seed"], **selection
            )
            # A single campaign's items are a lazy queryset: counted, not loaded.
            added = items.count() if isinstance(items, QuerySet) else len(items)
            messages.success(request, f"{added} item(s) added.")
    except ValidationError as exc:
        messages.error(request, " ".join(m for ms in exc.message_dict.values() for m in ms))
    except ServiceConflict as exc:
        messages.error(request, str(exc))
    return redirect("campaign-detail", pk=pk)
