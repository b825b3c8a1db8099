"""Rater management pages for curators: the raters, a new rater's account and its one-time
set-password link, the campaigns a rater joins, and their figures in each (the quality
selectors' ``rater_campaigns_quality``, the per-rater view of a campaign's rater table)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.forms import RaterCampaignsForm, RaterCreateForm
from annotation.quality import selectors
from annotation.quality.services import rater_accounts
from stickerloop.errors import ServiceConflict
from stickerloop.list_filters import list_page
from stickerloop.roles import Role, role_required

# Where a new link waits for the rater's page to show it, once: it is never stored elsewhere.
_LINK_KEY = "rater-link-{}"


def _form_errors(form, exc: ValidationError) -> None:
    for field, problems in exc.message_dict.items():
        for problem in problems:
            form.add_error(field if field in form.fields else None, problem)


def _rater(pk: int):
    return get_object_or_404(get_user_model().objects.filter(groups__name=Role.RATER), pk=pk)


@role_required(Role.CURATOR)
def rater_list(request):
    """Raters, searched by a part of their username or e-mail address, or their id."""
    context = list_page(request.GET, selectors.raters_overview(), name_fields=("username", "email"))
    return render(
        request,
        "quality/rater_list.html",
        context,
        status=400 if context["errors"] else 200,
    )


@role_required(Role.CURATOR)
def rater_create(request):
    form = RaterCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            invitation = rater_accounts.rater_account_create(
                username=data["username"],
                email=data["email"],
                send_email=data["delivery"] == "email",
                campaigns=list(data["campaigns"]),
                invited_by=request.user,
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            rater = invitation.rater
            if invitation.emailed:
                messages.success(
                    request, f"{rater.username} is a rater; the link went to {rater.email}."
                )
            else:
                request.session[_LINK_KEY.format(rater.pk)] = request.build_absolute_uri(
                    invitation.link_path
                )
                messages.success(request, f"{rater.username} is a rater.")
            return redirect("rater-detail", pk=rater.pk)
    return render(
        request, "quality/rater_form.html", {"form": form}, status=400 if form.errors else 200
    )


def _detail(request, rater, campaigns_form, *, status: int = 200):
    return render(
        request,
        "quality/rater_detail.html",
        {
            "rater": rater,
            "rows": selectors.rater_campaigns_quality(rater_id=rater.pk),
            "campaigns_form": campaigns_form,
            # Shown on this one answer and forgotten: reloading the page does not show it.
            "link": request.session.pop(_LINK_KEY.format(rater.pk), None),
            "link_hours": settings.PASSWORD_RESET_TIMEOUT // 3600,
        },
        status=status,
    )


@role_required(Role.CURATOR)
def rater_detail(request, pk: int):
    rater = _rater(pk)
    return _detail(request, rater, RaterCampaignsForm(rater=rater))


@require_POST
@role_required(Role.CURATOR)
def rater_link(request, pk: int):
    rater = _rater(pk)
    try:
        path = rater_accounts.rater_link_issue(rater=rater)
    except ServiceConflict as exc:
        messages.error(request, str(exc))
    else:
        request.session[_LINK_KEY.format(rater.pk)] = request.build_absolute_uri(path)
    return redirect("rater-detail", pk=rater.pk)


@require_POST
@role_required(Role.CURATOR)
def rater_campaigns_add(request, pk: int):
    rater = _rater(pk)
    form = RaterCampaignsForm(request.POST, rater=rater)
    if form.is_valid():
        try:
            added = rater_accounts.rater_campaigns_add(
                rater=rater, campaigns=list(form.cleaned_data["campaigns"])
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, f"{rater.username} joined {added} campaign(s).")
            return redirect("rater-detail", pk=rater.pk)
    return _detail(request, rater, form, status=400)
