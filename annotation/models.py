"""Campaigns, their items, leases and judgments.

An item is *open* while its judgments plus live leases are below its overlap target; ``is_open``
is a stored generated column so the assignment query can walk a partial index of open items
(see ``annotation/assignment.py``) without the counters and the flag ever disagreeing.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class CampaignKind(models.TextChoices):
    SINGLE = "single", "Single candidate"
    PAIR = "pair", "Side-by-side pair"
    BEST_OF_N = "best_of_n", "Best of N (teacher animations)"
    SET = "set", "Set of N (scene diversity)"


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    CLOSED = "closed", "Closed"


class Preset(models.TextChoices):
    ALIGNMENT = "alignment", "Prompt alignment"
    STYLE = "style", "Sticker style"
    MOTION = "motion", "Motion quality"
    PAIRWISE = "pairwise", "Pairwise comparison"
    TEACHER_SELECTION = "teacher_selection", "Teacher selection (best of N)"
    DIVERSITY = "diversity", "Scene diversity (set of N)"
    CUSTOM = "custom", "Custom"


class RaterPrompt(models.TextChoices):
    RAW = "raw", "The prompt as written"
    ENHANCED = "enhanced", "The enhanced prompt (the one written where a candidate has none)"


class Campaign(models.Model):
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=CampaignKind.choices)
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT, db_index=True
    )
    preset = models.CharField(max_length=32, choices=Preset.choices, default=Preset.CUSTOM)
    presets = models.JSONField(
        default=list,
        blank=True,
        help_text="The presets whose questions the campaign asks, in order: one for a preset's "
        "campaign, several combined (preset is then custom), none for hand-written questions.",
    )
    question_schema = models.JSONField(
        default=list,
        help_text="Questions: [{key, type (binary|likert|single_choice|multi_choice|text|pick), "
        "label, help, required, per_candidate, options: [{value, label, shortcut}]}].",
    )
    guidelines = models.TextField(blank=True, help_text="Markdown, rendered sanitised.")
    good_examples = models.ManyToManyField(
        "generation.Candidate", blank=True, related_name="good_example_in_campaigns"
    )
    bad_examples = models.ManyToManyField(
        "generation.Candidate", blank=True, related_name="bad_example_in_campaigns"
    )
    overlap = models.PositiveSmallIntegerField(
        default=1, help_text="Distinct raters wanted per item."
    )
    max_overlap = models.PositiveSmallIntegerField(
        default=1, help_text="Adaptive overlap may raise an item's target up to this."
    )
    lease_seconds = models.PositiveIntegerField(
        default=600, help_text="How long a rater holds an item before it returns to the pool."
    )
    gold_rate = models.FloatField(
        default=0.0, help_text="Share of gold items mixed into a rater's queue, 0..1."
    )
    rater_prompt = models.CharField(
        max_length=16,
        choices=RaterPrompt.choices,
        default=RaterPrompt.RAW,
        help_text="The prompt raters see beside a candidate. Raw by default: alignment is "
        "judged against what was asked for, as in the Style Tailoring paper, not against the "
        "enhancer's rewrite.",
    )
    selection = models.JSONField(
        default=dict, blank=True, help_text="The candidate selection the items were built from."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="campaign_overlap_gte_1"),
            models.CheckConstraint(
                condition=Q(max_overlap__gte=F("overlap")), name="campaign_max_overlap_gte_overlap"
            ),
            models.CheckConstraint(
                condition=Q(lease_seconds__gte=10, lease_seconds__lte=86400),
                name="campaign_lease_seconds_range",
            ),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0.0, gold_rate__lte=1.0), name="campaign_gold_rate_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_editable(self) -> bool:
        return self.status == CampaignStatus.DRAFT


class MembershipStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"


class CampaignMembership(models.Model):
    """A rater allowed to work on a campaign. Only active members are given items."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="memberships")
    rater = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="campaign_memberships"
    )
    status = models.CharField(
        max_length=16, choices=MembershipStatus.choices, default=MembershipStatus.ACTIVE
    )
    paused_reason = models.CharField(max_length=500, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign_id", "rater_id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "rater"], name="membership_unique_rater"),
        ]

    def __str__(self) -> str:
        return f"{self.rater_id} in {self.campaign_id} ({self.status})"


class Item(models.Model):
    """What one rater judges at once: one candidate, a pair or N, in a recorded order."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    candidates = models.ManyToManyField(
        "generation.Candidate", through="ItemCandidate", related_name="annotation_items"
    )
    is_gold = models.BooleanField(
        default=False, help_text="A gold item: known answers, served at the campaign's gold rate."
    )
    gold_answers = models.JSONField(null=True, blank=True, help_text="The known answers (gold).")
    overlap_target = models.PositiveSmallIntegerField(
        help_text="Judgments wanted; starts at the campaign's overlap, adaptive overlap raises it."
    )
    judgment_count = models.PositiveIntegerField(
        default=0, help_text="Judgments that count (skips excluded); moved with F()."
    )
    leased_count = models.PositiveIntegerField(
        default=0, help_text="Live leases; an expired lease is released by the sweep."
    )
    is_open = models.GeneratedField(
        expression=models.ExpressionWrapper(
            Q(is_gold=False) & Q(judgment_count__lt=F("overlap_target") - F("leased_count")),
            output_field=models.BooleanField(),
        ),
        output_field=models.BooleanField(),
        db_persist=True,
        help_text="Spare capacity: judgments plus live leases below the overlap target.",
    )
    group_key = models.CharField(
        max_length=200, blank=True, help_text="What grouped the candidates (prompt, seed, source)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap_target__gte=1), name="item_target_gte_1"),
            # The database itself refuses over-assignment (gold items have no capacity).
            models.CheckConstraint(
                condition=Q(is_gold=True)
                | Q(judgment_count__lte=F("overlap_target") - F("leased_count")),
                name="item_not_over_assigned",
            ),
        ]
        indexes = [
            # The assignment queue: open items of a campaign, closest to completion first.
            models.Index(
                F("campaign"),
                F("judgment_count").desc(),
                F("created_at"),
                F("id"),
                condition=Q(is_open=True),
                name="item_open_queue",
            ),
            models.Index(fields=["campaign", "id"], condition=Q(is_gold=True), name="item_gold"),
        ]

    def __str__(self) -> str:
        return f"item {self.pk}"

    def candidate_ids_in_order(self) -> list[int]:
        """The shown candidates' ids in the recorded (randomised) display order."""
        return list(
            self.item_candidates.order_by("position").values_list("candidate_id", flat=True)
        )


class LoadStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ItemLoad(models.Model):
    """Items from a candidate selection, added by a worker: QUEUED → RUNNING → SUCCEEDED | FAILED.

    A selection too large to add within a web request (``CAMPAIGN_SYNC_MAX_ITEMS``) is added in
    the background; its items and its SUCCEEDED status commit together, so a load either added
    all its items or none.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="item_loads")
    selection = models.JSONField(
        help_text="What to add: batches, model_versions, prompt_tags, candidate_kind, "
        "group_size and seed, as the from-selection request takes them."
    )
    status = models.CharField(max_length=16, choices=LoadStatus.choices, default=LoadStatus.QUEUED)
    items_created = models.PositiveIntegerField(
        null=True, blank=True, help_text="Items the load added; set when it succeeds."
    )
    error = models.TextField(blank=True, help_text="Why the load failed: nothing was added.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status=LoadStatus.SUCCEEDED, items_created__isnull=False)
                | (~Q(status=LoadStatus.SUCCEEDED) & Q(items_created__isnull=True)),
                name="item_load_count_iff_succeeded",
            ),
        ]

    def __str__(self) -> str:
        return f"item load {self.pk} of campaign {self.campaign_id} ({self.status})"


class Side(models.TextChoices):
    ONLY = "", "Only candidate"
    LEFT = "left", "Left"
    RIGHT = "right", "Right"


class ItemCandidate(models.Model):
    """One shown candidate of an item, at its randomised position (pairs: left or right)."""

    # Indexed by the unique (item, position) constraint.
    item = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="item_candidates", db_index=False
    )
    candidate = models.ForeignKey(
        "generation.Candidate", on_delete=models.PROTECT, related_name="item_links"
    )
    position = models.PositiveSmallIntegerField(help_text="Display order from 0.")
    side = models.CharField(max_length=8, choices=Side.choices, blank=True, default=Side.ONLY)

    class Meta:
        ordering = ["item_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "position"], name="item_candidate_position"),
            models.UniqueConstraint(fields=["item", "candidate"], name="item_candidate_unique"),
        ]

    def __str__(self) -> str:
        return f"item {self.item_id} #{self.position}: candidate {self.candidate_id}"


class Lease(models.Model):
    """A rater holds an item until ``expires_at``.

    The row outlives its expiry as a "seen" marker (``released``): the item's slot goes back to
    the pool, but the same rater is not handed the item again. A judgment deletes the lease.
    """

    # Both indexed by the unique (item, rater) constraint and the live-lease indexes; fewer
    # indexes make the insert and delete on every judgment cheaper.
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="leases", db_index=False)
    rater = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="annotation_leases",
        db_index=False,
    )
    # Live leases are found by campaign through ``lease_live``.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="leases", db_index=False
    )
    expires_at = models.DateTimeField()
    released = models.BooleanField(
        default=False, help_text="Expired (or given up) and no longer counted on the item."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "rater"], name="lease_unique_rater"),
        ]
        indexes = [
            models.Index(
                fields=["campaign", "expires_at"], condition=Q(released=False), name="lease_live"
            ),
            models.Index(
                fields=["rater", "campaign", "id"],
                condition=Q(released=False),
                name="lease_live_by_rater",
            ),
        ]

    def __str__(self) -> str:
        return f"lease item {self.item_id} rater {self.rater_id}"


class Judgment(models.Model):
    # No single-column indexes: items are found through the unique (item, rater) constraint and
    # campaigns and raters through (campaign, rater, created_at); fewer indexes to write per
    # judgment, and none led by the rater alone (see the client id constraint below).
    item = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="judgments", db_index=False
    )
    rater = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="annotation_judgments",
        db_index=False,
    )
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.CASCADE,
        related_name="judgments",
        db_index=False,
        help_text="The item's campaign, stored for per-campaign reads.",
    )
    answers = models.JSONField(default=dict, help_text="{question key: answer}, schema-checked.")
    seconds_on_item = models.FloatField(
        help_text="Time the item was on screen, measured by the client."
    )
    client_id = models.UUIDField(
        default=uuid.uuid4, help_text="Client-generated id: a retried submit returns this row."
    )
    skipped = models.BooleanField(default=False)
    skip_reason = models.CharField(max_length=200, blank=True)
    excluded = models.BooleanField(
        default=False,
        help_text="Left out of results (set by quality control when a rater is paused).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "rater"], name="judgment_unique_rater"),
            # (client id, rater) rather than (rater, client id): an index led by the rater
            # tempts the planner, on a young table, to answer "has this rater judged item X?"
            # by reading all of the rater's judgments (measured: 0.6 ms per probe, 64 probes
            # per pick) instead of probing (item, rater).
            models.UniqueConstraint(
                fields=["client_id", "rater"], name="judgment_unique_client_id"
            ),
            models.CheckConstraint(
                condition=Q(seconds_on_item__gte=0), name="judgment_seconds_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(skipped=False) | ~Q(skip_reason=""), name="judgment_skip_has_reason"
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "rater", "created_at"], name="judgment_by_rater"),
        ]

    def __str__(self) -> str:
        return f"judgment {self.pk} (item {self.item_id}, rater {self.rater_id})"
