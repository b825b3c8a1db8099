"""Pipelines: the stages of a turn of the loop declared once, in order (a dataset version, a
training job on earlier stages' versions, an experiment over earlier stages' models), and
where each stage stands. A pipeline runs its stages one after the other; a published version
or a finished job moves it on (``services.pipelines.pipeline_advance``)."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class PipelineStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed (resume it from the failed stage)"


class StageKind(models.TextChoices):
    DATASET = "dataset", "Dataset version (a rule's next published version, or a given one)"
    TRAINING = "training", "Training job (fired through a training trigger)"
    EVALUATION = "evaluation", "Experiment (earlier stages' models against a base)"


class StageStatus(models.TextChoices):
    PENDING = "pending", "Not started"
    WAITING = "waiting", "Waiting for a published version"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


ACTIVE_STAGE_STATUSES = (StageStatus.WAITING, StageStatus.RUNNING)


class Pipeline(models.Model):
    """A declared sequence of stages. RUNNING while a stage is pending, waiting or running;
    SUCCEEDED after the last; FAILED at ``current_position`` with the reason, until resumed."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=PipelineStatus.choices, default=PipelineStatus.RUNNING
    )
    current_position = models.PositiveIntegerField(
        default=0, help_text="The stage being worked on (the failed one, when failed)."
    )
    error = models.TextField(blank=True, help_text="Why it failed: the failed stage's reason.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=PipelineStatus.values), name="pipeline_status_known"
            ),
            models.CheckConstraint(
                condition=~Q(status="failed") | ~Q(error=""), name="pipeline_failed_has_error"
            ),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | Q(finished_at__isnull=False),
                name="pipeline_succeeded_has_time",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_finished(self) -> bool:
        return self.status == PipelineStatus.SUCCEEDED


class PipelineStage(models.Model):
    """One step of a pipeline, at ``position``.

    - dataset: ``rule``'s first version published once the stage starts waiting, or the
      published ``dataset_version`` given at declaration; it fills ``role`` for later stages.
    - training: ``recipe`` on, for each of the recipe's roles, the earlier dataset stage
      ``inputs`` names for it, else the nearest earlier dataset stage of that role (so one set
      can train several arms in different roles); from ``base_model_version`` or the model
      ``base_stage`` trained; fired as a training
      trigger on the version that completed it, so the job is made as a publish makes one.
    - evaluation: an experiment of the models of the training stages named in ``arms`` against
      ``base_model_version`` or ``base_stage``'s model, on a held-out ``prompt_set``.
    """

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="stages")
    position = models.PositiveIntegerField(help_text="0, 1, 2 ... in the order they run.")
    name = models.SlugField(max_length=100, help_text="Unique within the pipeline.")
    kind = models.CharField(max_length=16, choices=StageKind.choices)
    status = models.CharField(
        max_length=16, choices=StageStatus.choices, default=StageStatus.PENDING
    )
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Starts so far (resumes add one).")
    role = models.CharField(
        max_length=24, blank=True, help_text="Dataset stages: the training role they fill."
    )
    rule = models.ForeignKey(
        "training_bridge.DatasetRule",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pipeline_stages",
    )
    dataset_version = models.ForeignKey(
        "training_bridge.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pipeline_stages",
        help_text="Dataset stages: the version given, or the one whose publish completed it.",
    )
    recipe = models.CharField(max_length=24, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="Training: hyper-parameters.")
    inputs = models.JSONField(
        default=dict,
        blank=True,
        help_text="Training: role → name of the earlier dataset stage that fills it (roles not "
        "named take the nearest earlier dataset stage of that role).",
    )
    evaluate = models.BooleanField(
        default=False,
        help_text="Training: also compare the model with its parent (job evaluation).",
    )
    base_model_version = models.ForeignKey(
        "generation.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Training: the model to start from. Evaluation: the base arm.",
    )
    base_stage = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="An earlier training stage whose model is the base instead.",
    )
    arms = models.JSONField(
        default=list, blank=True, help_text="Evaluation: names of earlier training stages."
    )
    prompt_set = models.ForeignKey(
        "generation.PromptSet",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Evaluation of image models: held-out prompts (default: the newest set).",
    )
    seeds = models.JSONField(default=list, blank=True, help_text="Evaluation: the arms' seeds.")
    training_trigger = models.OneToOneField(
        "training_bridge.TrainingTrigger",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pipeline_stage",
    )
    job = models.OneToOneField(
        "training_jobs.TrainingJob",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pipeline_stage",
    )
    experiment = models.OneToOneField(
        "experiments.Experiment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pipeline_stage",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pipeline_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline", "position"], name="pipeline_stage_unique_position"
            ),
            models.UniqueConstraint(fields=["pipeline", "name"], name="pipeline_stage_unique_name"),
            # The stages run one at a time.
            models.UniqueConstraint(
                fields=["pipeline"],
                condition=Q(status__in=["waiting", "running"]),
                name="pipeline_one_active_stage",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=StageKind.values), name="pipeline_stage_kind_known"
            ),
            models.CheckConstraint(
                condition=Q(status__in=StageStatus.values), name="pipeline_stage_status_known"
            ),
            models.CheckConstraint(
                condition=~Q(status="failed") | ~Q(error=""), name="pipeline_stage_failed_has_error"
            ),
            models.CheckConstraint(
                condition=~Q(kind="dataset") | (Q(rule__isnull=False) & ~Q(role="")),
                name="pipeline_dataset_stage_has_rule_and_role",
            ),
            models.CheckConstraint(
                condition=~Q(kind="dataset")
                | ~Q(status="succeeded")
                | Q(dataset_version__isnull=False),
                name="pipeline_dataset_stage_succeeded_has_version",
            ),
            models.CheckConstraint(
                condition=~Q(kind="training") | ~Q(recipe=""), name="pipeline_training_has_recipe"
            ),
            # Training and evaluation start from exactly one base: a model version or a stage's.
            models.CheckConstraint(
                condition=Q(kind="dataset")
                | Q(base_model_version__isnull=False, base_stage__isnull=True)
                | Q(base_model_version__isnull=True, base_stage__isnull=False),
                name="pipeline_stage_one_base",
            ),
            models.CheckConstraint(
                condition=~Q(kind="training")
                | ~Q(status__in=["running", "succeeded"])
                | Q(job__isnull=False),
                name="pipeline_training_running_has_job",
            ),
            models.CheckConstraint(
                condition=~Q(kind="evaluation")
                | ~Q(status__in=["running", "succeeded"])
                | Q(experiment__isnull=False),
                name="pipeline_evaluation_running_has_experiment",
            ),
        ]

    def __str__(self) -> str:
        return f"stage {self.position} ({self.name}) of pipeline {self.pipeline_id}"
