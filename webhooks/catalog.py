"""The event types an endpoint can subscribe to, and what each one means.

All but one are announced under the same name by the service that makes the change
(``stickerloop.events``). ``evaluation.ready`` is derived here: quality control announces that it
computed a campaign's results (``campaign.results_computed``), and when that campaign is a
training job's evaluation campaign the webhooks app turns it into ``evaluation.ready`` for the
job (see ``services.events.public_events``).
"""

from django.db import models

from stickerloop import events


class EventType(models.TextChoices):
    BATCH_FINISHED = events.BATCH_FINISHED, "Generation batch finished"
    BATCH_FAILED = events.BATCH_FAILED, "Generation batch failed"
    CAMPAIGN_COMPLETED = events.CAMPAIGN_COMPLETED, "Campaign completed"
    ITEM_LOAD_SUCCEEDED = events.ITEM_LOAD_SUCCEEDED, "Campaign item load succeeded"
    ITEM_LOAD_FAILED = events.ITEM_LOAD_FAILED, "Campaign item load failed"
    DATASET_VERSION_PUBLISHED = events.DATASET_VERSION_PUBLISHED, "Dataset version published"
    EXPORT_READY = events.EXPORT_READY, "Dataset export ready"
    TRAINING_JOB_SUCCEEDED = events.TRAINING_JOB_SUCCEEDED, "Training job succeeded"
    TRAINING_JOB_FAILED = events.TRAINING_JOB_FAILED, "Training job failed"
    TRAINING_JOB_CANCELLED = events.TRAINING_JOB_CANCELLED, "Training job cancelled"
    EVALUATION_READY = "evaluation.ready", "Evaluation results ready"
    RATER_PAUSED = events.RATER_PAUSED, "Rater paused"
    # Sent only by the test-delivery button, to the one endpoint it was pressed for.
    TEST = "webhook.test", "Test delivery"


SUBSCRIBABLE = tuple(value for value in EventType.values if value != EventType.TEST)

DESCRIPTIONS = {
    EventType.BATCH_FINISHED: "A generation batch ended: succeeded, partly failed or cancelled "
    "(data.status says which; data.done_count and data.failed_count count candidates).",
    EventType.BATCH_FAILED: "Every chunk of a generation batch failed (the batch's error says "
    "why).",
    EventType.CAMPAIGN_COMPLETED: "A rating campaign was closed: it takes no more judgments.",
    EventType.ITEM_LOAD_SUCCEEDED: "A worker added a selection's items to a campaign "
    "(data.campaign, data.items_created).",
    EventType.ITEM_LOAD_FAILED: "A worker could not add a selection's items to a campaign, and "
    "added none (data.campaign, data.error).",
    EventType.DATASET_VERSION_PUBLISHED: "A dataset version was published: training may use it.",
    EventType.EXPORT_READY: "A dataset export finished writing its files (data.format, "
    "data.dataset_version).",
    EventType.TRAINING_JOB_SUCCEEDED: "A training job registered its output model version "
    "(data.output_model_version).",
    EventType.TRAINING_JOB_FAILED: "A training job failed (its error says why).",
    EventType.TRAINING_JOB_CANCELLED: "A training job was cancelled.",
    EventType.EVALUATION_READY: "New win rates of a training job's evaluation campaign were "
    "computed (each aggregation run of that campaign; data.campaign, data.campaign_status: "
    "'closed' marks the final ones).",
    EventType.RATER_PAUSED: "A rater was paused in a campaign, by a curator or by the automatic "
    "quality check (data.campaign, data.rater, data.cause, data.reason).",
    EventType.TEST: "Sent by the test-delivery button.",
}


def unknown_events(names) -> list[str]:
    """The names in ``names`` that no endpoint can subscribe to, in their order."""
    return [name for name in names if name not in SUBSCRIBABLE]
