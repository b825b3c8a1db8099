"""What a rating client needs to know of a campaign before it rates: the questions, how many
items to keep leased ahead, the undo window and the endpoints. The rating screen gets it written
into its page; a script rating with an API token asks ``RatingConfigApi`` for the same."""

from django.urls import reverse

from annotation.models import Campaign, CampaignMembership
from annotation.services.rating import undo_window

# Items the screen keeps leased ahead of the one shown: the next one shows the moment an answer
# is given, and a rater holds few items back from the others.
PREFETCH = 3


def rating_config(*, campaign: Campaign, membership: CampaignMembership, username: str) -> dict:
    """The rating client's configuration for ``membership`` (the caller's, in ``campaign``)."""
    return {
        "campaign": {
            "id": campaign.pk,
            "name": campaign.name,
            "kind": campaign.kind,
            "status": campaign.status,
            "rater_prompt": campaign.rater_prompt,
        },
        "membership": {"status": membership.status, "reason": membership.paused_reason},
        "schema": campaign.question_schema,
        "user": username,
        "prefetch": PREFETCH,
        "undo_seconds": int(undo_window().total_seconds()),
        "urls": {
            "step": reverse("api-rating-step", args=[campaign.pk]),
            "held": reverse("api-items-held", args=[campaign.pk]),
            "undo": reverse("api-judgment-undo", args=[campaign.pk]),
            "progress": reverse("api-rater-progress", args=[campaign.pk]),
            "ping": reverse("api-rate-ping"),
            "home": reverse("rater-home"),
        },
    }
