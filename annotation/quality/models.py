"""Quality control and results: policies, stored aggregation results, gold scores, rater quality.

Results are written by the aggregation task and read by pages, APIs and curation; they carry the
method and the time they were computed. A re-run replaces a campaign's rows for that question and
method inside one transaction, so readers see either the old set or the new one.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.quality import aggregation


def _share(name: str, field: str, *, nullable: bool = False) -> models.CheckConstraint:
    condition = Q(**{f"{field}__gte": 0.0, f"{field}__lte": 1.0})
    if nullable:
        condition |= Q(**{f"{field}__isnull": True})
    return models.CheckConstraint(condition=condition, name=name)


class Method(models.TextChoices):
    MAJORITY = aggregation.MAJORITY, "Majority vote"
    MEAN = aggregation.MEAN, "Mean (scales)"
    MEDIAN = aggregation.MEDIAN, "Median (scales)"
    DAWID_SKENE = aggregation.DAWID_SKENE, "Dawid–Skene"
    GLAD = aggregation.GLAD, "GLAD"
    MACE = aggregation.MACE, "MACE"


class RankingMethod(models.TextChoices):
    BRADLEY_TERRY = "bradley_terry", "Bradley–Terry (ties as half-wins)"


class QualityPolicy(models.Model):
    """A campaign's quality thresholds; a campaign without one uses the field defaults."""

    campaign = models.OneToOneField(
        "annotation.Campaign", on_delete=models.CASCADE, related_name="quality_policy"
    )
    auto_pause = models.BooleanField(
        default=True, help_text="Pause raters who fall below the thresholds automatically."
    )
    min_gold_judgments = models.PositiveSmallIntegerField(
        default=5, help_text="Gold judgments a rater needs before gold accuracy can pause them."
    )
    min_gold_accuracy = models.FloatField(
        default=0.7, help_text="Pause below this share of correct gold answers (0..1)."
    )
    min_consensus_agreement = models.FloatField(
        null=True,
        blank=True,
        help_text="Pause below this agreement with the other raters (0..1); empty turns the "
        "check off.",
    )
    min_consensus_judgments = models.PositiveSmallIntegerField(
        default=20, help_text="Judgments on shared items needed before agreement can pause."
    )
    speed_floor_seconds = models.FloatField(
        default=1.0, help_text="A judgment faster than this many seconds counts as too fast."
    )
    max_fast_share = models.FloatField(
        default=0.5, help_text="Pause above this share of too-fast judgments (0..1)."
    )
    min_speed_judgments = models.PositiveSmallIntegerField(
        default=20, help_text="Judgments needed before speed can pause a rater."
    )
    consensus_method = models.CharField(
        max_length=16,
        choices=Method.choices,
        default=Method.MAJORITY,
        help_text="The consensus whose confidence adaptive overlap reads.",
    )
    confidence_target = models.FloatField(
        default=0.8,
        help_text="Adaptive overlap: an item whose consensus confidence stays below this after "
        "its overlap is reached gets one more judgment, up to the campaign's max overlap.",
    )
    qualification_campaign = models.ForeignKey(
        "annotation.Campaign",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="qualifies_for",
        help_text="A campaign of gold items a rater must pass before this campaign's queue opens.",
    )
    qualification_min_gold = models.PositiveSmallIntegerField(
        default=10, help_text="Gold items a rater must answer in the qualification campaign."
    )
    qualification_min_accuracy = models.FloatField(
        default=0.8, help_text="Gold accuracy needed in the qualification campaign (0..1)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "quality policies"
        constraints = [
            _share("policy_min_gold_accuracy_range", "min_gold_accuracy"),
            _share("policy_min_agreement_range", "min_consensus_agreement", nullable=True),
            _share("policy_max_fast_share_range", "max_fast_share"),
            _share("policy_confidence_target_range", "confidence_target"),
            _share("policy_qualification_accuracy_range", "qualification_min_accuracy"),
            models.CheckConstraint(
                condition=Q(speed_floor_seconds__gte=0.0, speed_floor_seconds__lte=600.0),
                name="policy_speed_floor_range",
            ),
            models.CheckConstraint(
                condition=Q(min_gold_judgments__gte=1), name="policy_min_gold_gte_1"
            ),
            models.CheckConstraint(
                condition=Q(qualification_min_gold__gte=1), name="policy_qualification_gold_gte_1"
            ),
            models.CheckConstraint(
                condition=~Q(qualification_campaign=models.F("campaign")),
                name="policy_not_own_qualification",
            ),
        ]

    def __str__(self) -> str:
        return f"quality policy of campaign {self.campaign_id}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class RunTrigger(models.TextChoices):
    ON_DEMAND = "on_demand", "On demand"
    PERIODIC = "periodic", "Periodic"
    IMPORT = "import", "After an import"


class AggregationRun(models.Model):
    """One computation of a campaign's results: QUEUED → RUNNING → SUCCEEDED | FAILED."""

    campaign = models.ForeignKey(
        "annotation.Campaign", on_delete=models.CASCADE, related_name="aggregation_runs"
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices)
    methods = models.JSONField(
        default=list, help_text="Consensus methods asked for; each fits its questions' types."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.TextField(blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="Counts and timings.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One pending computation per campaign: asking again while one waits joins it.
            models.UniqueConstraint(
                fields=["campaign"], condition=Q(status="queued"), name="run_one_queued"
            ),
        ]

    def __str__(self) -> str:
        return f"aggregation run {self.pk} of campaign {self.campaign_id} ({self.status})"


class AgreementResult(models.Model):
    """Inter-rater agreement of one question: Krippendorff's alpha and Fleiss' kappa."""

    campaign = models.ForeignKey(
        "annotation.Campaign", on_delete=models.CASCADE, related_name="agreement_results"
    )
    run = models.ForeignKey(AggregationRun, null=True, on_delete=models.SET_NULL, related_name="+")
    question_key = models.CharField(max_length=40)
    level = models.CharField(max_length=16, help_text="Alpha's level: nominal, ordinal, interval.")
    alpha = models.FloatField(null=True, help_text="Krippendorff's alpha at ``level``.")
    alpha_interval = models.FloatField(null=True, help_text="Interval alpha (scales only).")
    fleiss_kappa = models.FloatField(null=True)
    fleiss_reason = models.CharField(
        max_length=200, blank=True, help_text="Why kappa is empty (unequal judgments per item)."
    )
    observed_agreement = models.FloatField(
        null=True,
        help_text="Pairs agreeing: over items with two or more judgments, the share of rater "
        "pairs who gave the same answer.",
    )
    n_items = models.PositiveIntegerField()
    n_judgments = models.PositiveIntegerField()
    n_raters = models.PositiveIntegerField()
    distribution = models.JSONField(
        default=list, help_text="[{value, label, count}] per option, in schema order."
    )
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["campaign_id", "question_key"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "question_key"], name="agreement_unique_question"
            ),
        ]

    def __str__(self) -> str:
        return f"agreement on {self.question_key} in campaign {self.campaign_id}"


class QuestionResult(models.Model):
    """Summary of one consensus method on one question of a campaign."""

    campaign = models.ForeignKey(
        "annotation.Campaign", on_delete=models.CASCADE, related_name="question_results"
    )
    run = models.ForeignKey(AggregationRun, null=True, on_delete=models.SET_NULL, related_name="+")
    question_key = models.CharField(max_length=40)
    method = models.CharField(max_length=16, choices=Method.choices)
    n_items = models.PositiveIntegerField()
    n_judgments = models.PositiveIntegerField()
    n_ties = models.PositiveIntegerField()
    mean_confidence = models.FloatField(null=True)
    gold_accuracy = models.FloatField(
        null=True, help_text="Accuracy on gold items; a tie of k labels counts 1/k."
    )
    n_gold_items = models.PositiveIntegerField(default=0)
    confidence_histogram = models.JSONField(
        default=list, help_text="Items per confidence bin: 10 bins over [0, 1]."
    )
    rater_reliability = models.JSONField(
        default=dict, help_text="{rater id: reliability} from the probabilistic models."
    )
    details = models.JSONField(default=dict, blank=True, help_text="Iterations, seconds.")
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["campaign_id", "question_key", "method"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "question_key", "method"], name="question_result_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} on {self.question_key} in campaign {self.campaign_id}"


class ConsensusResult(models.Model):
    """The stored consensus of one item (or one candidate of an item, for per-candidate
    questions) for one question and method. ``label`` is null on a tie.

    The foreign keys have no database constraint: checking three of them per row at commit
    cost 2 of the 7 seconds that storing 200,000 rows took (bench/aggregation.py). Rows are
    written only by the result pipeline from rows it has just read, and deletes still cascade
    through the ORM.

    Nor do the campaign and the candidate have an index of their own: ``consensus_by_method``
    leads with the campaign, and only per-candidate questions' rows name a candidate, so its
    index holds those alone. Each index costs every stored row: without the two, one method's
    2,000,000 rows went in with COPY in 11.0 s against 14.7 s (two runs each).
    """

    campaign = models.ForeignKey(
        "annotation.Campaign",
        on_delete=models.CASCADE,
        related_name="consensus_results",
        db_constraint=False,
        db_index=False,
    )
    item = models.ForeignKey(
        "annotation.Item",
        on_delete=models.CASCADE,
        related_name="consensus_results",
        db_constraint=False,
    )
    candidate = models.ForeignKey(
        "generation.Candidate",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
        help_text="The candidate, for per-candidate questions; empty otherwise.",
    )
    question_key = models.CharField(max_length=40)
    method = models.CharField(max_length=16, choices=Method.choices)
    label = models.JSONField(null=True, help_text="The consensus answer; null on a tie.")
    confidence = models.FloatField()
    n_judgments = models.PositiveIntegerField()
    is_tie = models.BooleanField(default=False)
    tied_labels = models.JSONField(default=list, help_text="The tied answers, on a tie.")
    mean = models.FloatField(null=True)
    median = models.FloatField(null=True)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["item_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "question_key", "method"],
                condition=Q(candidate__isnull=True),
                name="consensus_unique_item",
            ),
            models.UniqueConstraint(
                fields=["item", "candidate", "question_key", "method"],
                condition=Q(candidate__isnull=False),
                name="consensus_unique_item_candidate",
            ),
            _share("consensus_confidence_range", "confidence"),
            models.CheckConstraint(
                condition=Q(is_tie=False) | Q(label__isnull=True), name="consensus_tie_no_label"
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "question_key", "method"], name="consensus_by_method"),
            models.Index(
                fields=["candidate"],
                condition=Q(candidate__isnull=False),
                name="consensus_by_candidate",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} consensus of item {self.item_id} on {self.question_key}"


class GoldScore(models.Model):
    """The score of one judgment on a gold item: the share of gold questions answered right."""

    judgment = models.OneToOneField(
        "annotation.Judgment", on_delete=models.CASCADE, related_name="gold_score"
    )
    campaign = models.ForeignKey("annotation.Campaign", on_delete=models.CASCADE, related_name="+")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(help_text="Share of the item's gold questions answered right.")
    details = models.JSONField(default=dict, help_text="{question key: answered right}.")
    scored_at = models.DateTimeField()

    class Meta:
        constraints = [_share("gold_score_range", "score")]
        indexes = [models.Index(fields=["campaign", "rater"], name="gold_score_by_rater")]

    def __str__(self) -> str:
        return f"gold score {self.score:.2f} of judgment {self.judgment_id}"


class RaterQuality(models.Model):
    """A rater's standing in a campaign, recomputed from judgments, gold scores and consensus."""

    campaign = models.ForeignKey(
        "annotation.Campaign", on_delete=models.CASCADE, related_name="rater_qualities"
    )
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    n_judgments = models.PositiveIntegerField(default=0, help_text="Judgments that count.")
    n_gold = models.PositiveIntegerField(default=0, help_text="Scored gold judgments.")
    gold_accuracy = models.FloatField(null=True)
    # Named for the consensus it was once measured against; it now holds agreement with the
    # other raters (``aggregation.others_agreeing``), the per-rater form of "pairs agreeing".
    consensus_agreement = models.FloatField(
        null=True,
        help_text="Agreement with the other raters: over the rater's judgments of items others "
        "judged too, the share of those others who gave the same answer.",
    )
    n_consensus = models.PositiveIntegerField(
        default=0, help_text="The judgments that agreement counts (items shared with others)."
    )
    median_seconds = models.FloatField(null=True)
    fast_share = models.FloatField(null=True, help_text="Share faster than the speed floor.")
    reliability = models.JSONField(
        default=dict, help_text="{question key: {method: reliability}} from DS, GLAD, MACE."
    )
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["campaign_id", "rater_id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "rater"], name="rater_quality_unique"),
            _share("rater_quality_gold_range", "gold_accuracy", nullable=True),
            _share("rater_quality_agreement_range", "consensus_agreement", nullable=True),
            _share("rater_quality_fast_range", "fast_share", nullable=True),
        ]

    def __str__(self) -> str:
        return f"quality of rater {self.rater_id} in campaign {self.campaign_id}"


class MembershipAction(models.TextChoices):
    PAUSED = "paused", "Paused"
    RESUMED = "resumed", "Resumed"


class PauseCause(models.TextChoices):
    GOLD = "gold", "Gold accuracy below the threshold"
    SPEED = "speed", "Too many judgments faster than the floor"
    AGREEMENT = "agreement", "Agreement with the other raters below the threshold"
    QUALIFICATION = "qualification", "Qualification not passed yet"
    MANUAL = "manual", "By a curator"


class MembershipEvent(models.Model):
    """Why and when a rater was paused from or resumed in a campaign, and by whom (null: the
    automatic check). The membership row holds the current state; this is its history."""

    membership = models.ForeignKey(
        "annotation.CampaignMembership", on_delete=models.CASCADE, related_name="quality_events"
    )
    action = models.CharField(max_length=16, choices=MembershipAction.choices)
    cause = models.CharField(max_length=16, choices=PauseCause.choices)
    window_start = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Pause: judgments from this time on were excluded (the rater's evaluation "
        "window: since joining, or since the last resume). Resume: restored from this time.",
    )
    reason = models.CharField(max_length=500)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    excluded_judgments = models.PositiveIntegerField(
        default=0, help_text="Judgments excluded (pause) or restored (resume) by this event."
    )
    metrics = models.JSONField(default=dict, help_text="The rater's figures at the time.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} ({self.cause}) of membership {self.membership_id}"


class RankingResult(models.Model):
    """Side-by-side results of a pair campaign's question: strengths of every model version
    with bootstrap intervals, win/tie/loss per pair, and position bias."""

    campaign = models.ForeignKey(
        "annotation.Campaign", on_delete=models.CASCADE, related_name="ranking_results"
    )
    run = models.ForeignKey(AggregationRun, null=True, on_delete=models.SET_NULL, related_name="+")
    question_key = models.CharField(max_length=40)
    method = models.CharField(max_length=16, choices=RankingMethod.choices)
    n_comparisons = models.PositiveIntegerField()
    n_bootstrap = models.PositiveIntegerField()
    regularization = models.FloatField(
        default=0.0, help_text="Prior strength added when the data alone has no finite estimate."
    )
    left_win_share = models.FloatField(null=True, help_text="Share of comparisons the left won.")
    left_win_share_decisive = models.FloatField(
        null=True, help_text="Share of non-tied comparisons the left side won (0.5: no bias)."
    )
    tie_share = models.FloatField(null=True)
    pairs = models.JSONField(
        default=list,
        help_text="[{a, b, a_wins, b_wins, ties, a_win_rate}] per model version pair.",
    )
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["campaign_id", "question_key"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "question_key", "method"], name="ranking_unique_question"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} ranking on {self.question_key} in campaign {self.campaign_id}"


class ModelStrength(models.Model):
    ranking = models.ForeignKey(RankingResult, on_delete=models.CASCADE, related_name="strengths")
    model_version = models.ForeignKey(
        "generation.ModelVersion", on_delete=models.CASCADE, related_name="+"
    )
    rank = models.PositiveIntegerField(help_text="1 is strongest.")
    strength = models.FloatField(help_text="Log-ability, centred to mean 0.")
    ci_low = models.FloatField(help_text="Bootstrap 2.5th percentile of the strength.")
    ci_high = models.FloatField(help_text="Bootstrap 97.5th percentile of the strength.")
    score = models.FloatField(help_text="exp(strength) normalised to sum to 1.")
    score_ci_low = models.FloatField()
    score_ci_high = models.FloatField()
    wins = models.PositiveIntegerField()
    losses = models.PositiveIntegerField()
    ties = models.PositiveIntegerField()

    class Meta:
        ordering = ["ranking_id", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["ranking", "model_version"], name="strength_unique_model"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_version_id} ranked {self.rank} in ranking {self.ranking_id}"
