"""Experiments: arms of one kind evaluated on the same held-out prompts (or source stickers) and
seeds, and the scores each arm got on each axis, from raters, from the platform's own
measurements, or from an instrument outside (the sticker world's oracle)."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from generation.models import ModelKind


class ExperimentStatus(models.TextChoices):
    GENERATING = "generating", "Generating with every arm"
    RATING = "rating", "Campaigns open"
    FAILED = "failed", "Failed"


class Axis(models.TextChoices):
    ALIGNMENT = "alignment", "Prompt alignment (pass rate)"
    STYLE = "style", "Visual quality / style (pass rate)"
    DIVERSITY = "diversity", "Scene diversity (mean pairwise distance)"
    MOTION = "motion", "Motion quality (pass rate)"
    CONSISTENCY = "consistency", "Consistency with the source sticker (pass rate)"
    LATENCY_MS = "latency_ms", "Latency per candidate (ms)"
    WIN_ALIGNMENT = "win_alignment", "Win rate against the base: alignment"
    WIN_STYLE = "win_style", "Win rate against the base: style"
    WIN_MOTION = "win_motion", "Win rate against the base: motion"
    WIN_OVERALL = "win_overall", "Win rate against the base: overall"


AXES_BY_KIND = {
    ModelKind.IMAGE: (
        Axis.ALIGNMENT,
        Axis.STYLE,
        Axis.DIVERSITY,
        Axis.LATENCY_MS,
        Axis.WIN_ALIGNMENT,
        Axis.WIN_STYLE,
        Axis.WIN_OVERALL,
    ),
    ModelKind.ANIMATION: (
        Axis.MOTION,
        Axis.CONSISTENCY,
        Axis.LATENCY_MS,
        Axis.WIN_MOTION,
        Axis.WIN_STYLE,
        Axis.WIN_OVERALL,
    ),
}
# Axes whose values are shares or rates, in [0, 1]; latency is any non-negative number.
UNIT_AXES = frozenset(a for a in Axis.values if a != Axis.LATENCY_MS)


class ScoreSource(models.TextChoices):
    """The sources the platform writes itself; an instrument outside names its own."""

    HUMAN = "human", "Raters (the experiment's campaigns)"
    PLATFORM = "platform", "Measured by the platform from the candidates"


class Experiment(models.Model):
    """Arms compared on identical inputs: every arm generates from the same held-out prompts
    (image) or source stickers (animation) with the same seeds, one batch per arm. GENERATING
    until every batch has ended, then RATING with its campaigns open, or FAILED with the
    reason."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(
        max_length=16, choices=ModelKind.choices, help_text="The kind of every arm's model."
    )
    status = models.CharField(
        max_length=16, choices=ExperimentStatus.choices, default=ExperimentStatus.GENERATING
    )
    prompt_set = models.ForeignKey(
        "generation.PromptSet",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The held-out prompts every image arm generates from.",
    )
    sources = models.ManyToManyField(
        "generation.Candidate",
        blank=True,
        related_name="+",
        help_text="Stickers of held-out prompts every animation arm animates.",
    )
    seeds = models.JSONField(help_text="The seeds every arm uses on every prompt or source.")
    overlap = models.PositiveSmallIntegerField(
        default=3, help_text="Judgments per item in the experiment's campaigns."
    )
    rating_campaign = models.ForeignKey(
        "annotation.Campaign",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="One item per candidate: the pass/fail questions of the kind's axes.",
    )
    pair_campaign = models.ForeignKey(
        "annotation.Campaign",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Each arm against the base arm, same prompt (or source) and seed.",
    )
    error = models.TextField(blank=True)
    results_computed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the scores from raters and candidates were computed."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="animation") | Q(prompt_set__isnull=False),
                name="experiment_image_has_prompt_set",
            ),
            models.CheckConstraint(
                condition=~Q(status="rating")
                | (Q(rating_campaign__isnull=False) & Q(pair_campaign__isnull=False)),
                name="experiment_rating_has_campaigns",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ExperimentArm(models.Model):
    """A model version, or the prompt-engineered base: a model version with a prompt template
    applied to every prompt at generation time (the candidate keeps the raw prompt and the
    enhanced one)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    position = models.PositiveSmallIntegerField(help_text="Order within the experiment, from 0.")
    label = models.CharField(max_length=100, help_text="The arm's name in tables and plots.")
    model_version = models.ForeignKey(
        "generation.ModelVersion", on_delete=models.PROTECT, related_name="experiment_arms"
    )
    template = models.TextField(
        blank=True, help_text="A prompt template with a {prompt} slot, applied at generation."
    )
    is_base = models.BooleanField(
        default=False, help_text="The arm every other arm is compared with in pairs."
    )
    prompt_set = models.ForeignKey(
        "generation.PromptSet",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="What the arm generated from: the experiment's prompts, or for a template "
        "arm their copy with the template applied as each prompt's enhanced text.",
    )
    batch = models.ForeignKey(
        "generation.GenerationBatch",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The arm's generation batch.",
    )

    class Meta:
        ordering = ["experiment_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "position"], name="experiment_arm_unique_position"
            ),
            models.UniqueConstraint(
                fields=["experiment", "label"], name="experiment_arm_unique_label"
            ),
            models.UniqueConstraint(
                fields=["experiment"], condition=Q(is_base=True), name="experiment_one_base_arm"
            ),
        ]

    def __str__(self) -> str:
        return self.label


class ExperimentScore(models.Model):
    """One arm's figure on one axis from one source, with its 95% interval and what it was
    computed from. The platform writes sources ``human`` and ``platform``; instruments outside
    write their own (``oracle``) through ``experiment_scores_record``."""

    arm = models.ForeignKey(ExperimentArm, on_delete=models.CASCADE, related_name="scores")
    axis = models.CharField(max_length=24, choices=Axis.choices)
    source = models.SlugField(max_length=40, help_text="human, platform, or an instrument's name.")
    value = models.FloatField()
    low = models.FloatField(null=True, blank=True, help_text="Lower end of the 95% interval.")
    high = models.FloatField(null=True, blank=True, help_text="Upper end of the 95% interval.")
    n = models.PositiveIntegerField(
        null=True, blank=True, help_text="Units behind the value (items, comparisons, prompts)."
    )
    method = models.CharField(
        max_length=40, blank=True, help_text="wilson, bradley_terry, bootstrap, or the source's."
    )
    campaign = models.ForeignKey(
        "annotation.Campaign", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    batch = models.ForeignKey(
        "generation.GenerationBatch",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    details = models.JSONField(default=dict, blank=True, help_text="Counts behind the figure.")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["arm_id", "axis", "source"]
        constraints = [
            models.UniqueConstraint(
                fields=["arm", "axis", "source"], name="experiment_score_unique_source"
            ),
            models.CheckConstraint(
                condition=Q(low__isnull=True) | Q(low__lte=F("value")),
                name="experiment_score_low_lte_value",
            ),
            models.CheckConstraint(
                condition=Q(high__isnull=True) | Q(high__gte=F("value")),
                name="experiment_score_high_gte_value",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.arm} {self.axis} ({self.source}): {self.value}"
