"""The JSON body of a delivery, the same bytes on every attempt of an event::

    {"id": "<event uuid>", "type": "batch.finished", "created_at": "2025-01-31T12:00:00.000000Z",
     "object": {"type": "generation_batch", "id": 12,
                "url": "https://stickers.example.org/api/batches/12/"},
     "data": {"status": "succeeded", "done_count": 8, "failed_count": 0}}

``created_at`` is when the state changed; ``object.url`` is the object's API URL under
``STICKERLOOP_SITE_URL`` (GET it with a token for the whole object).
"""

import json
from datetime import UTC

from django.conf import settings
from django.urls import reverse

from webhooks.models import Event

# The API page of each kind of object an event names.
OBJECT_URL_NAMES = {
    "generation_batch": "api-batch-detail",
    "campaign": "api-campaign-detail",
    "dataset_version": "api-dataset-version-detail",
    "dataset_export": "api-dataset-export-detail",
    "training_job": "api-training-job-detail",
    "webhook_endpoint": "api-webhook-endpoint-detail",
}


def object_url(object_type: str, object_id: int, data: dict) -> str:
    if object_type == "campaign_membership":
        # A membership has no page of its own: the campaign's raters list shows it.
        path = reverse("api-quality-raters", kwargs={"pk": data["campaign"]})
    elif object_type == "item_load":
        path = reverse("api-campaign-item-load", kwargs={"pk": data["campaign"], "load": object_id})
    else:
        path = reverse(OBJECT_URL_NAMES[object_type], kwargs={"pk": object_id})
    return settings.SITE_URL + path


def body(event: Event) -> bytes:
    document = {
        "id": str(event.event_id),
        "type": event.type,
        "created_at": event.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "object": {
            "type": event.object_type,
            "id": event.object_id,
            "url": object_url(event.object_type, event.object_id, event.data),
        },
        "data": event.data,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
