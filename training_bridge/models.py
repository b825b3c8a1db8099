"""Curation: rules that turn judgments into immutable dataset versions, their exports, weak
corpora, the audit log, and training triggers waiting for the training side."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class DatasetPurpose(models.TextChoices):
    ALIGNMENT = "alignment", "Alignment (content)"
    STYLE = "style", "Style"
    MOTION = "motion", "Motion"
    TEACHER_SELECTION = "teacher_selection", "Teacher selection"
    WEAK = "weak", "Weak corpus"
    EVALUATION = "evaluation", "Held-out evaluation prompts"


class DatasetKind(models.TextChoices):
    IMAGE = "image", "Sticker images"
    ANIMATION = "animation", "Animations"


# Which kinds each purpose can hold.
PURPOSE_KINDS = {
    DatasetPurpose.ALIGNMENT: (DatasetKind.IMAGE,),
    DatasetPurpose.STYLE: (DatasetKind.IMAGE,),
    DatasetPurpose.MOTION: (DatasetKind.ANIMATION,),
    DatasetPurpose.TEACHER_SELECTION: (DatasetKind.ANIMATION,),
    DatasetPurpose.WEAK: (DatasetKind.IMAGE, DatasetKind.ANIMATION),
    DatasetPurpose.EVALUATION: (DatasetKind.IMAGE, DatasetKind.ANIMATION),
}


class CaptionSource(models.TextChoices):
    RAW_PROMPT = "raw_prompt", "The prompt as written"
    ENHANCED_PROMPT = "enhanced_prompt", "The enhanced prompt (the raw one where none)"
    MOTION_PROMPT = "motion_prompt", "The motion prompt (the raw one where none)"
    TEMPLATE = "template", "A template"


class WeakSource(models.Model):
    """An external corpus imported as candidates (origin ``imported``), e.g. sticker-like images
    found by keyword, or animated-sticker-like clips with their motion scores."""

    name = models.SlugField(max_length=100, unique=True, help_text="Unique short name.")
    kind = models.CharField(max_length=16, choices=DatasetKind.choices)
    description = models.TextField(blank=True)
    motion_bucket_edges = models.JSONField(
        default=list,
        blank=True,
        help_text="Ascending motion-score edges; bucket 0 lies below the first, bucket n at or "
        "above the n-th (animations).",
    )
    candidate_count = models.PositiveIntegerField(default=0, help_text="Candidates imported.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ImportFormat(models.TextChoices):
    FOLDER = "folder", "Folder on the server"
    TAR = "tar", "Tar archive"
    PARQUET = "parquet", "Parquet file"


class TaskStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


TERMINAL_TASK_STATUSES = (TaskStatus.SUCCEEDED, TaskStatus.FAILED)


class WeakImport(models.Model):
    """One import run of a folder, tar or Parquet file into a weak source.

    A bad file is reported in ``errors`` and the rest is imported; only an unreadable container
    fails the run. Candidates are unique per source on their content hash, so a re-run imports
    nothing twice.
    """

    source = models.ForeignKey(WeakSource, on_delete=models.PROTECT, related_name="imports")
    file_format = models.CharField(max_length=16, choices=ImportFormat.choices)
    location = models.CharField(
        max_length=1000,
        help_text="Storage key of the uploaded archive, or the folder's path on the server.",
    )
    original_name = models.CharField(max_length=300, blank=True)
    status = models.CharField(
        max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED, db_index=True
    )
    processed = models.PositiveIntegerField(default=0, help_text="Rows read so far.")
    imported = models.PositiveIntegerField(default=0, help_text="Candidates created.")
    duplicates = models.PositiveIntegerField(default=0, help_text="Files already in the source.")
    failed = models.PositiveIntegerField(default=0, help_text="Rows or files that failed.")
    errors = models.JSONField(
        default=list, blank=True, help_text='Per-row problems: [{"file": ..., "error": ...}].'
    )
    error = models.TextField(blank=True, help_text="Why the whole run failed, if it did.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import {self.pk} into {self.source_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_TASK_STATUSES


class CandidateFingerprint(models.Model):
    """A candidate's perceptual hash, computed once (for near-duplicate removal)."""

    candidate = models.OneToOneField(
        "generation.Candidate", primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    phash = models.BigIntegerField(help_text="64-bit DCT perceptual hash, as a signed integer.")

    def __str__(self) -> str:
        return f"fingerprint of {self.candidate_id}"


class DatasetRule(models.Model):
    """Which candidates a dataset takes and how they become entries. Editable; every build
    snapshots the rule into the immutable version it makes."""

    name = models.CharField(max_length=200, unique=True)
    purpose = models.CharField(max_length=24, choices=DatasetPurpose.choices)
    kind = models.CharField(max_length=16, choices=DatasetKind.choices)
    description = models.TextField(blank=True)
    campaigns = models.ManyToManyField(
        "annotation.Campaign",
        blank=True,
        related_name="dataset_rules",
        help_text="Source campaigns (single-candidate or best-of-N).",
    )
    weak_sources = models.ManyToManyField(
        WeakSource, blank=True, related_name="rules", help_text="Source corpora (weak rules)."
    )
    consensus_method = models.CharField(
        max_length=16,
        default="majority",
        help_text="majority, dawid_skene, glad, mace, mean, median.",
    )
    conditions = models.JSONField(
        default=list,
        blank=True,
        help_text='[{"question": key, "labels": [accepted consensus labels], "min_confidence": x, '
        '"min_mean": y, "max_mean": z}]; all must hold.',
    )
    min_judgments = models.PositiveSmallIntegerField(
        default=1, help_text="Judgments (not skipped, not excluded) an item needs."
    )
    exclude_gold = models.BooleanField(default=True)
    exclude_paused_only = models.BooleanField(
        default=True, help_text="Drop items whose judgments all come from paused raters."
    )
    min_motion_score = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Animations: keep motion scores at or above this floor.",
    )
    weak_label_filters = models.JSONField(
        default=dict, blank=True, help_text="Weak rules: {label: [accepted values]}."
    )
    motion_buckets = models.JSONField(
        default=list, blank=True, help_text="Weak animation rules: accepted motion buckets."
    )
    exclude_held_out = models.BooleanField(
        default=True,
        help_text="Leave out prompts of held-out prompt sets (evaluation rules take only those).",
    )
    per_prompt_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many entries per prompt (best first)."
    )
    dedup_max_distance = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(16)],
        help_text="Drop near-duplicates within this many perceptual-hash bits; empty: keep all.",
    )
    validation_fraction = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of prompts held out for validation (split by prompt).",
    )
    split_seed = models.PositiveIntegerField(default=0)
    caption_source = models.CharField(
        max_length=16, choices=CaptionSource.choices, default=CaptionSource.RAW_PROMPT
    )
    caption_template = models.CharField(
        max_length=500,
        blank=True,
        help_text="With caption_source=template: e.g. 'a sticker of {prompt}'. Placeholders: "
        "{prompt}, {enhanced_prompt}, {motion_prompt}.",
    )
    training_trigger = models.JSONField(
        null=True,
        blank=True,
        help_text='Publishing starts training: {"recipe", "base_model_version_id", "params", '
        '"role"}.',
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
                condition=Q(validation_fraction__gte=0.0, validation_fraction__lte=0.5),
                name="rule_validation_fraction_range",
            ),
            models.CheckConstraint(
                condition=Q(min_motion_score__isnull=True)
                | Q(min_motion_score__gte=0.0, min_motion_score__lte=1.0),
                name="rule_min_motion_score_range",
            ),
            models.CheckConstraint(
                condition=Q(dedup_max_distance__isnull=True) | Q(dedup_max_distance__lte=16),
                name="rule_dedup_distance_range",
            ),
            models.CheckConstraint(
                condition=~Q(caption_source="template") | ~Q(caption_template=""),
                name="rule_template_has_text",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"
    RETIRED = "retired", "Retired"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VALIDATION = "validation", "Validation"


class DatasetVersion(models.Model):
    """An immutable dataset: a manifest (entries) and its checksum. Only the status moves:
    draft → published → retired (or draft → retired)."""

    rule = models.ForeignKey(DatasetRule, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField(help_text="1, 2, 3 ... within the rule.")
    purpose = models.CharField(max_length=24, choices=DatasetPurpose.choices)
    kind = models.CharField(max_length=16, choices=DatasetKind.choices)
    status = models.CharField(
        max_length=16, choices=VersionStatus.choices, default=VersionStatus.DRAFT, db_index=True
    )
    rule_snapshot = models.JSONField(help_text="The rule's settings when this version was built.")
    stage_counts = models.JSONField(
        default=list, help_text="Candidates each condition kept and dropped, in order."
    )
    manifest_sha256 = models.CharField(
        max_length=64,
        help_text="sha256 over the canonical manifest (see versions.manifest_checksum).",
    )
    entry_count = models.PositiveIntegerField()
    train_count = models.PositiveIntegerField()
    validation_count = models.PositiveIntegerField()
    built_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retired_at = models.DateTimeField(null=True, blank=True)
    retired_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "number"], name="version_unique_number"),
            # Rebuilding unchanged input returns the live version instead of a copy of it.
            models.UniqueConstraint(
                fields=["rule", "manifest_sha256"],
                condition=~Q(status="retired"),
                name="version_unique_live_manifest",
            ),
            models.CheckConstraint(
                condition=Q(entry_count=F("train_count") + F("validation_count")),
                name="version_counts_add_up",
            ),
            models.CheckConstraint(condition=Q(entry_count__gte=1), name="version_not_empty"),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(published_at__isnull=False) | Q(status="retired"),
                name="version_published_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule.name} v{self.number}"


class DatasetEntry(models.Model):
    """One manifest row: a candidate with its file checksum, caption, labels and provenance."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="entries")
    position = models.PositiveIntegerField(help_text="Order in the manifest, from 0.")
    candidate = models.ForeignKey(
        "generation.Candidate", on_delete=models.PROTECT, related_name="dataset_entries"
    )
    split = models.CharField(max_length=16, choices=Split.choices)
    caption = models.TextField()
    file_key = models.CharField(max_length=500, help_text="Storage key of the PNG or WebP.")
    file_sha256 = models.CharField(max_length=64)
    file_ext = models.CharField(max_length=8)
    label = models.JSONField(null=True, help_text="The first condition's consensus label.")
    confidence = models.FloatField(help_text="The first condition's consensus confidence.")
    labels = models.JSONField(default=dict, help_text="{question: consensus label} or weak labels.")
    confidences = models.JSONField(default=dict, help_text="{question: confidence}.")
    scores = models.JSONField(default=dict, help_text="{question: mean} for scale questions.")
    n_judgments = models.PositiveIntegerField(default=0)
    model_version_name = models.CharField(max_length=100, blank=True)
    seed = models.BigIntegerField(default=0)
    prompt_text = models.TextField(help_text="The raw prompt (the caption, for imports).")
    teacher = models.CharField(
        max_length=100, blank=True, help_text="Teacher-selection sets: the model that animated it."
    )
    source_candidate = models.ForeignKey(
        "generation.Candidate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Animations: the source sticker.",
    )
    source_file_key = models.CharField(max_length=500, blank=True)
    frames_prefix = models.CharField(max_length=500, blank=True)
    frame_count = models.PositiveIntegerField(default=1)
    motion_score = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["version_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="entry_unique_position"),
            models.UniqueConstraint(fields=["version", "candidate"], name="entry_unique_candidate"),
            models.CheckConstraint(
                condition=Q(confidence__gte=0.0, confidence__lte=1.0), name="entry_confidence_range"
            ),
        ]

    def __str__(self) -> str:
        return f"entry {self.position} of version {self.version_id}"


class ExportFormat(models.TextChoices):
    IMAGEFOLDER = "imagefolder", "Hugging Face imagefolder"
    WEBDATASET = "webdataset", "WebDataset shards"
    PARQUET = "parquet", "Parquet"


class DatasetExport(models.Model):
    """One export of a version into the configured storage: QUEUED → RUNNING → SUCCEEDED | FAILED.

    A large version is written in ``parts``: consecutive ranges of the manifest, each a task
    of its own, so several workers share one export; the export succeeds when every part has.
    Files go to deterministic keys under ``storage_prefix``, so a re-run overwrites its own
    output.
    """

    version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="exports")
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    shard_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="WebDataset: samples per shard."
    )
    status = models.CharField(
        max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED, db_index=True
    )
    total = models.PositiveIntegerField(default=0, help_text="Entries to write.")
    done = models.PositiveIntegerField(default=0, help_text="Entries written.")
    attempts = models.PositiveIntegerField(default=0, help_text="Part runs started.")
    parts = models.PositiveIntegerField(
        default=1, help_text="Ranges of the manifest written side by side, a task each."
    )
    part_results = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"<part>": {"files": [...], "cpu_seconds": s}} of the parts finished so far.',
    )
    storage_prefix = models.CharField(max_length=500, blank=True)
    files = models.JSONField(
        default=list, blank=True, help_text='[{"name", "key", "size", "sha256"}], by name.'
    )
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="The single file's sha256, or sha256 over 'sha256  name' lines of all files.",
    )
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        default=timezone.now,
        help_text="Last sign of life: queued, claimed, or a running part's beat "
        "(stale: the sweep requeues the export's unfinished parts).",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(done__lte=F("total")), name="export_done_lte_total"),
            models.CheckConstraint(condition=Q(parts__gte=1), name="export_parts_at_least_one"),
            models.CheckConstraint(
                condition=~Q(format="webdataset") | Q(shard_size__gte=1),
                name="export_webdataset_has_shard_size",
            ),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | Q(sha256__regex=r"^[0-9a-f]{64}$"),
                name="export_succeeded_has_checksum",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.format} export {self.pk} of version {self.version_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_TASK_STATUSES

    @property
    def progress_percent(self) -> int:
        if not self.total:
            return 100 if self.status == TaskStatus.SUCCEEDED else 0
        return int(100 * self.done / self.total)


class AuditAction(models.TextChoices):
    BUILD = "build", "Built a version"
    PUBLISH = "publish", "Published a version"
    RETIRE = "retire", "Retired a version"
    EXPORT = "export", "Asked for an export"
    EXPORT_SUCCEEDED = "export_succeeded", "Export finished"
    EXPORT_FAILED = "export_failed", "Export failed"
    DOWNLOAD = "download", "Downloaded an export"
    # Recorded before triggers fired in the publishing transaction; kept for those rows.
    TRIGGER_PENDING = "trigger_pending", "Training trigger waiting for the training service"
    TRIGGER_FIRED = "trigger_fired", "Training trigger created a job"
    TRIGGER_FAILED = "trigger_failed", "Training trigger failed"


class AuditEvent(models.Model):
    """Who did what to which dataset version or export, and when. Rows are only ever added."""

    action = models.CharField(max_length=24, choices=AuditAction.choices, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty for the system (a worker finishing an export).",
    )
    version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    export = models.ForeignKey(
        DatasetExport, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_id} at {self.created_at}"


class TriggerStatus(models.TextChoices):
    FIRED = "fired", "Training job created"
    FAILED = "failed", "Failed"


class TriggerOrigin(models.TextChoices):
    RULE = "rule", "The version's rule (fired in the publishing transaction)"
    PIPELINE = "pipeline", "A pipeline stage waiting for this version"


class TrainingTrigger(models.Model):
    """The training a publish asked for (``jobs.triggers``): the version's rule's trigger, fired
    in the publishing transaction, or a pipeline's next stage, fired when the pipeline advances
    on the publish. A failed one records why and can be fired again. A version has at most one
    rule trigger; any number of pipelines may train on it."""

    version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="training_triggers"
    )
    origin = models.CharField(
        max_length=16, choices=TriggerOrigin.choices, default=TriggerOrigin.RULE, db_index=True
    )
    trigger = models.JSONField(help_text='{"recipe", "base_model_version_id", "params", "role"}')
    status = models.CharField(max_length=16, choices=TriggerStatus.choices, db_index=True)
    job_id = models.BigIntegerField(null=True, blank=True, help_text="The training job created.")
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="fired") | Q(job_id__isnull=False), name="trigger_fired_has_job"
            ),
            models.UniqueConstraint(
                fields=["version"],
                condition=Q(origin="rule"),
                name="trigger_one_rule_trigger_per_version",
            ),
            models.CheckConstraint(
                condition=Q(origin__in=["rule", "pipeline"]), name="trigger_origin_known"
            ),
        ]

    def __str__(self) -> str:
        return f"trigger of version {self.version_id} ({self.status})"
