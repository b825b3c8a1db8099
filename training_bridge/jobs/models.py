"""Training jobs: a recipe run on dataset versions, its progress and losses, the model version it
produced, and the side-by-side evaluation of that model against its parent."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Recipe(models.TextChoices):
    FINETUNE = "finetune", "Finetune"
    SEQUENTIAL = "sequential", "Sequential finetune (first, then second)"
    STYLE_TAILORING = "style_tailoring", "Style Tailoring"
    DISTILL_STUDENT = "distill_student", "Student from teacher selections"


class DatasetRole(models.TextChoices):
    TRAIN = "train", "Train (finetune)"
    FIRST = "first", "First (sequential)"
    SECOND = "second", "Second (sequential)"
    CONTENT = "content", "Content (Style Tailoring, high-noise timesteps)"
    STYLE = "style", "Style (Style Tailoring, low-noise timesteps)"
    TEACHER_SELECTION = "teacher_selection", "Teacher selection (student)"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Launcher(models.TextChoices):
    QUEUE = "queue", "The train queue (a subprocess on a Celery worker)"
    EXTERNAL = "external", "External (accelerate launch / torchrun on a cluster)"


class TrainingJob(models.Model):
    """One run of a recipe. QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED; resuming a
    failed, cancelled or orphaned job queues it again with the next ``attempt``."""

    name = models.CharField(max_length=200, blank=True)
    recipe = models.CharField(max_length=24, choices=Recipe.choices)
    base_model_version = models.ForeignKey(
        "generation.ModelVersion", on_delete=models.PROTECT, related_name="training_jobs"
    )
    params = models.JSONField(help_text="Hyper-parameters, with every default filled in.")
    launcher = models.CharField(max_length=16, choices=Launcher.choices, default=Launcher.QUEUE)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    attempt = models.PositiveIntegerField(
        default=1, help_text="Launches so far; a queue message of an older attempt does nothing."
    )
    step = models.PositiveIntegerField(default=0, help_text="Optimizer steps done.")
    total_steps = models.PositiveIntegerField(help_text="max_train_steps.")
    seconds_per_step = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    last_loss = models.JSONField(default=dict, blank=True, help_text="{role: loss} at ``step``.")
    load_seconds = models.FloatField(
        null=True, blank=True, help_text="One-time model and data load of the latest attempt."
    )
    last_checkpoint_step = models.PositiveIntegerField(null=True, blank=True)
    resumed_from_step = models.PositiveIntegerField(
        null=True, blank=True, help_text="Checkpoint the latest attempt started from."
    )
    metrics = models.JSONField(default=dict, blank=True, help_text="The run's training summary.")
    error = models.TextField(blank=True)
    log_tail = models.TextField(blank=True, help_text="The last lines of the run's output.")
    work_dir = models.CharField(
        max_length=1000, help_text="Folder of the spec, log, checkpoints and the output model."
    )
    spec = models.JSONField(default=dict, blank=True, help_text="The spec the recipe ran with.")
    launch_command = models.TextField(
        blank=True, help_text="External jobs: the command that runs the recipe on a cluster."
    )
    worker = models.CharField(
        max_length=300, blank=True, help_text="host:pid of the process running the recipe."
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the run (stale: orphaned)."
    )
    evaluate = models.BooleanField(
        default=True, help_text="After success, compare the new model with its parent."
    )
    evaluation_prompt_set = models.ForeignKey(
        "generation.PromptSet",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Held-out prompts for image models (default: the newest held-out set).",
    )
    evaluation_sources = models.ManyToManyField(
        "generation.Candidate",
        blank=True,
        related_name="+",
        help_text="Source stickers for animation models (default: stickers of held-out prompts).",
    )
    evaluation_seeds = models.JSONField(default=list, blank=True)
    output_model_version = models.OneToOneField(
        "generation.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="produced_by_job",
    )
    trigger = models.JSONField(
        default=dict, blank=True, help_text='Who started it: {"source": "manual"} or a publish.'
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(total_steps__gte=1), name="job_total_steps_gte_1"),
            models.CheckConstraint(
                condition=Q(step__lte=F("total_steps")), name="job_step_lte_total"
            ),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="job_attempt_gte_1"),
            models.CheckConstraint(
                condition=Q(output_model_version__isnull=True) | Q(status="succeeded"),
                name="job_output_only_when_succeeded",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.recipe} job {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    @property
    def progress_percent(self) -> int:
        if self.status == JobStatus.SUCCEEDED:
            return 100
        return int(100 * self.step / self.total_steps) if self.total_steps else 0


class TrainingJobDataset(models.Model):
    """A dataset version a job trains on, in a role; its checksum is copied at creation."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="dataset_links")
    dataset_version = models.ForeignKey(
        "training_bridge.DatasetVersion", on_delete=models.PROTECT, related_name="training_links"
    )
    role = models.CharField(max_length=24, choices=DatasetRole.choices)
    manifest_sha256 = models.CharField(max_length=64)
    export_path = models.CharField(
        max_length=1000, blank=True, help_text="The local export the latest attempt read."
    )

    class Meta:
        ordering = ["job_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "role"], name="job_dataset_unique_role"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: version {self.dataset_version_id}"


class TrainingJobLoss(models.Model):
    """The mean loss of one role over the logging interval that ended at ``step``."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="losses")
    step = models.PositiveIntegerField()
    role = models.CharField(max_length=24, choices=DatasetRole.choices)
    loss = models.FloatField(null=True, help_text="Empty when the loss was not finite.")
    seconds_per_step = models.FloatField(null=True)

    class Meta:
        ordering = ["job_id", "step", "role"]
        constraints = [
            # A resumed run reports the steps after its checkpoint again; they overwrite.
            models.UniqueConstraint(fields=["job", "step", "role"], name="job_loss_unique_step"),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} step {self.step} {self.role}"


class EvaluationStatus(models.TextChoices):
    GENERATING = "generating", "Generating with both models"
    OPEN = "open", "Pair campaign open"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class TrainingJobEvaluation(models.Model):
    """The new model against its parent: a generation batch with both, same prompts or source
    stickers and seeds, then a pair campaign of the matching candidates."""

    job = models.OneToOneField(TrainingJob, on_delete=models.CASCADE, related_name="evaluation")
    status = models.CharField(
        max_length=16, choices=EvaluationStatus.choices, default=EvaluationStatus.GENERATING
    )
    batch = models.ForeignKey(
        "generation.GenerationBatch",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    campaign = models.ForeignKey(
        "annotation.Campaign", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pairs = models.PositiveIntegerField(default=0, help_text="Items in the campaign.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="open") | Q(campaign__isnull=False),
                name="evaluation_open_has_campaign",
            ),
        ]

    def __str__(self) -> str:
        return f"evaluation of job {self.job_id} ({self.status})"
