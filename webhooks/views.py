"""Webhook pages for curators and ML engineers: the endpoints with their last deliveries at a
glance, registering one (its secret shown on the answer page, once), an endpoint's page (edit,
test delivery, rotate the secret, enable or disable, delete, the delivery log) and a delivery's
attempts with a redeliver button. Writes go through the services."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from stickerloop.errors import ServiceConflict, validation_error_detail
from stickerloop.list_filters import list_page
from stickerloop.roles import Role, role_required
from webhooks import payload, selectors
from webhooks.catalog import DESCRIPTIONS, SUBSCRIBABLE, EventType
from webhooks.models import Delivery, DeliveryStatus, Endpoint
from webhooks.services import deliveries as delivery_services
from webhooks.services import endpoints as endpoint_services
from webhooks.services.endpoints import MAX_OVERLAP_HOURS
from webhooks.services.events import endpoint_test_send

STAFF = (Role.CURATOR, Role.ML_ENGINEER)


def _errors(exc: ValidationError) -> dict[str, list[str]]:
    detail = validation_error_detail(exc)
    return detail if isinstance(detail, dict) else {"non_field_errors": detail}


def _event_choices() -> list[tuple[str, str, str]]:
    return [(value, EventType(value).label, DESCRIPTIONS[value]) for value in SUBSCRIBABLE]


@role_required(*STAFF)
def endpoint_list(request):
    """Endpoints, searched by a part of their URL or description, or their id. They have no
    status (enabled or disabled is ``is_active``): only the search applies."""
    context = list_page(request.GET, selectors.endpoint_list(), name_fields=("url", "description"))
    return render(
        request,
        "webhooks/endpoint_list.html",
        context,
        status=400 if context["errors"] else 200,
    )


@role_required(*STAFF)
def endpoint_create(request):
    """The registration form; a registered endpoint's secret is shown on the answer page, once."""
    values, errors = {"events": []}, {}
    if request.method == "POST":
        values = {
            "url": request.POST.get("url", ""),
            "description": request.POST.get("description", ""),
            "events": request.POST.getlist("events"),
        }
        try:
            endpoint, secret = endpoint_services.endpoint_create(**values, created_by=request.user)
        except ValidationError as exc:
            errors = _errors(exc)
        else:
            return render(request, "webhooks/secret.html", {"endpoint": endpoint, "secret": secret})
    return render(
        request,
        "webhooks/endpoint_form.html",
        {"values": values, "errors": errors, "event_choices": _event_choices()},
        status=400 if errors else 200,
    )


def _detail_context(request, endpoint: Endpoint, errors: dict | None = None) -> dict:
    deliveries = selectors.delivery_list(
        endpoint=endpoint, status=request.GET.get("status") or None
    )
    return {
        "endpoint": endpoint,
        "page": Paginator(deliveries, 25).get_page(request.GET.get("page")),
        "statuses": DeliveryStatus.choices,
        "filters": request.GET,
        "event_choices": _event_choices(),
        "errors": errors or {},
    }


@role_required(*STAFF)
def endpoint_detail(request, pk: int):
    endpoint = get_object_or_404(Endpoint, pk=pk)
    return render(request, "webhooks/endpoint_detail.html", _detail_context(request, endpoint))


def _overlap_hours(form) -> int | None:
    """The form's overlap in hours; None (the default) when left empty."""
    raw = form.get("overlap_hours", "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ValidationError(
            {"overlap_hours": [f"Must be an integer from 0 to {MAX_OVERLAP_HOURS}."]}
        ) from exc


@require_POST
@role_required(*STAFF)
def endpoint_action(request, pk: int, action: str):
    """update, test, rotate, enable, disable or delete; ``rotate`` answers with the page that
    shows the new secret once."""
    endpoint = get_object_or_404(Endpoint, pk=pk)
    try:
        if action == "update":
            endpoint_services.endpoint_update(
                endpoint=endpoint,
                url=request.POST.get("url", ""),
                events=request.POST.getlist("events"),
                description=request.POST.get("description", ""),
            )
            messages.success(request, "Endpoint saved.")
        elif action == "test":
            delivery = endpoint_test_send(endpoint=endpoint)
            messages.success(request, f"Test delivery {delivery.pk} queued.")
        elif action == "rotate":
            endpoint, secret = endpoint_services.endpoint_secret_rotate(
                endpoint=endpoint, overlap_hours=_overlap_hours(request.POST)
            )
            return render(
                request,
                "webhooks/secret.html",
                {"endpoint": endpoint, "secret": secret, "rotated": True},
            )
        elif action == "enable":
            endpoint_services.endpoint_enable(endpoint=endpoint)
            messages.success(request, "Endpoint enabled.")
        elif action == "disable":
            endpoint_services.endpoint_disable(endpoint=endpoint, disabled_by=request.user)
            messages.success(request, "Endpoint disabled.")
        elif action == "delete":
            endpoint_services.endpoint_delete(endpoint=endpoint)
            messages.success(request, f"Endpoint {pk} deleted.")
            return redirect("webhook-endpoint-list")
        else:
            messages.error(request, f"Unknown action {action!r}.")
    except ServiceConflict as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        endpoint.refresh_from_db()
        context = _detail_context(request, endpoint, errors=_errors(exc))
        return render(request, "webhooks/endpoint_detail.html", context, status=400)
    return redirect("webhook-endpoint-detail", pk=pk)


@role_required(*STAFF)
def delivery_detail(request, pk: int):
    delivery = get_object_or_404(selectors.delivery_detail(), pk=pk)
    body = json.loads(payload.body(delivery.event))
    return render(
        request,
        "webhooks/delivery_detail.html",
        {"delivery": delivery, "body": json.dumps(body, indent=2, ensure_ascii=False)},
    )


@require_POST
@role_required(*STAFF)
def delivery_redeliver(request, pk: int):
    delivery = get_object_or_404(Delivery, pk=pk)
    try:
        delivery_services.delivery_redeliver(delivery=delivery)
    except ServiceConflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Delivery {pk} queued again.")
    return redirect("webhook-delivery-detail", pk=pk)
