"""Model versions, prompt sets, generation batches and the candidates they produce."""

from django.conf import settings
from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

PROMPT_MAX_CHARS = 1000


class ModelKind(models.TextChoices):
    IMAGE = "image", "Text to sticker image"
    ANIMATION = "animation", "Sticker animation"


class ModelRole(models.TextChoices):
    BASE = "base", "Base"
    TEACHER = "teacher", "Teacher"
    STUDENT = "student", "Student"
    FINETUNED = "finetuned", "Finetuned"


class ModelVersion(models.Model):
    name = models.SlugField(max_length=100, unique=True, help_text="Unique short name.")
    kind = models.CharField(max_length=16, choices=ModelKind.choices)
    role = models.CharField(max_length=16, choices=ModelRole.choices, default=ModelRole.BASE)
    uri = models.CharField(
        max_length=1000,
        help_text="A diffusers-format folder, a bucket path, or a hub id where a hub is reachable.",
    )
    description = models.TextField(blank=True)
    default_params = models.JSONField(
        default=dict, blank=True, help_text="Default inference parameters (steps, guidance, size)."
    )
    max_prompt_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="The text encoder's token limit, read at registration."
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    provenance = models.JSONField(
        default=dict, blank=True, help_text="Where this version came from (job, datasets)."
    )
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EnhancerKind(models.TextChoices):
    TEMPLATE = "template", "Template with a {prompt} slot"
    TEXT_GENERATION = "text_generation", "Text-generation model"


class PromptEnhancer(models.Model):
    """A step between a prompt as written and the text a model generates from.

    Rows are never edited: a batch names the enhancer it used, so what a candidate's enhanced
    prompt came from stays on record. A different template is a new enhancer.
    """

    name = models.SlugField(max_length=100, unique=True, help_text="Unique short name.")
    kind = models.CharField(max_length=16, choices=EnhancerKind.choices)
    template = models.TextField(
        help_text="Holds {prompt}. A template enhancer's output, followed by its style phrases; "
        "for a text-generation enhancer, what the model reads before it writes.",
    )
    style_phrases = models.JSONField(
        default=list,
        blank=True,
        help_text="Template enhancers: phrases appended after the filled template, "
        "comma-separated.",
    )
    uri = models.CharField(
        max_length=1000,
        blank=True,
        help_text="Text-generation enhancers: the local folder of a transformers causal "
        "language model and its tokenizer.",
    )
    max_new_tokens = models.PositiveSmallIntegerField(
        default=64, help_text="Text-generation enhancers: the most tokens written per prompt."
    )
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(template__contains="{prompt}"), name="enhancer_template_has_slot"
            ),
            models.CheckConstraint(
                condition=Q(kind="template") | ~Q(uri=""), name="enhancer_model_has_uri"
            ),
            models.CheckConstraint(
                condition=Q(max_new_tokens__gte=1, max_new_tokens__lte=256),
                name="enhancer_max_new_tokens_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PromptSet(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    is_held_out = models.BooleanField(
        default=False, help_text="Held-out evaluation prompts: never used for training datasets."
    )
    enhancer = models.ForeignKey(
        PromptEnhancer,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="prompt_sets",
        help_text="The enhancer a batch of these prompts applies unless it names another "
        "(or none).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class PromptFileFormat(models.TextChoices):
    TEXT = "text", "Text, a prompt a line"
    CSV = "csv", "CSV with a text column"
    JSONL = "jsonl", "JSON Lines with a text field"


class PromptImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


TERMINAL_PROMPT_IMPORT_STATUSES = (PromptImportStatus.SUCCEEDED, PromptImportStatus.FAILED)


class PromptImport(models.Model):
    """A prompt file too large to import inside the web request, imported by a task.

    The upload waits in storage under ``location`` while the import is queued or running. The
    prompt set appears only when the import succeeds, with all its prompts in one transaction;
    a failed import stores no prompt set and says why in ``error``.
    """

    name = models.CharField(max_length=200, help_text="The prompt set's name once imported.")
    description = models.TextField(blank=True)
    is_held_out = models.BooleanField(default=False)
    file_format = models.CharField(max_length=8, choices=PromptFileFormat.choices)
    location = models.CharField(
        max_length=300, help_text="Storage key of the uploaded file (removed once it has ended)."
    )
    original_name = models.CharField(max_length=300, blank=True)
    size_bytes = models.PositiveBigIntegerField(help_text="Size of the uploaded file in bytes.")
    status = models.CharField(
        max_length=16,
        choices=PromptImportStatus.choices,
        default=PromptImportStatus.QUEUED,
        db_index=True,
    )
    processed = models.PositiveIntegerField(default=0, help_text="Lines (CSV: rows) read so far.")
    progress = models.PositiveSmallIntegerField(
        default=0, help_text="Percent done: reading the file up to 90, storing the prompts 100."
    )
    report = models.JSONField(
        default=dict,
        blank=True,
        help_text="Once succeeded: imported, the first 100 duplicates and empty lines, and "
        "their counts.",
    )
    error = models.TextField(blank=True, help_text="Why the import failed, if it did.")
    prompt_set = models.OneToOneField(
        PromptSet,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The prompt set made, once succeeded.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__lte=100), name="prompt_import_progress")
        ]

    def __str__(self) -> str:
        return f"prompt import {self.pk} ({self.name})"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_PROMPT_IMPORT_STATUSES


class Prompt(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    position = models.PositiveIntegerField(help_text="Order within the set, from 0.")
    text = models.TextField(validators=[MaxLengthValidator(PROMPT_MAX_CHARS)])
    enhanced_text = models.TextField(
        blank=True, help_text="The prompt as rewritten by a prompt enhancer, if any."
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="prompts")

    class Meta:
        ordering = ["prompt_set_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["prompt_set", "text"], name="prompt_unique_text"),
            models.UniqueConstraint(
                fields=["prompt_set", "position"], name="prompt_unique_position"
            ),
            models.CheckConstraint(condition=~Q(text=""), name="prompt_text_not_empty"),
        ]

    def __str__(self) -> str:
        return self.text[:60]


class BatchKind(models.TextChoices):
    STICKER = "sticker", "Stickers from prompts"
    ANIMATION = "animation", "Animations of stickers"


class BatchStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partly failed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_BATCH_STATUSES = (
    BatchStatus.SUCCEEDED,
    BatchStatus.PARTIAL,
    BatchStatus.FAILED,
    BatchStatus.CANCELLED,
)


class GenerationBatch(models.Model):
    """What to generate: prompts × model versions × seeds, or source stickers × models × seeds."""

    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=BatchKind.choices)
    status = models.CharField(
        max_length=16, choices=BatchStatus.choices, default=BatchStatus.QUEUED, db_index=True
    )
    prompt_set = models.ForeignKey(
        PromptSet, null=True, blank=True, on_delete=models.PROTECT, related_name="batches"
    )
    model_versions = models.ManyToManyField(ModelVersion, related_name="batches")
    sources = models.ManyToManyField(
        "Candidate",
        blank=True,
        related_name="animation_batches",
        help_text="Sticker candidates to animate (animation batches).",
    )
    enhancer = models.ForeignKey(
        PromptEnhancer,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="batches",
        help_text="The enhancer applied to each prompt before generation (sticker batches); "
        "candidates keep its output as their enhanced prompt.",
    )
    seeds = models.JSONField(default=list, help_text="Seeds; each prompt or source gets each.")
    params = models.JSONField(
        default=dict,
        help_text="Inference parameters: num_inference_steps, guidance_scale, width, height, "
        "num_frames, fps, motion_prompt, negative_prompt. An animation batch's motion_prompt is "
        "the default for stickers without their own.",
    )
    motion_prompts = models.JSONField(
        default=dict,
        blank=True,
        help_text="Animation batches: {source candidate id: motion prompt} for stickers with "
        "their own; the others take params.motion_prompt, else their sticker's prompt.",
    )
    total = models.PositiveIntegerField(default=0, help_text="Candidates asked for.")
    done_count = models.PositiveIntegerField(default=0, help_text="Candidates stored.")
    failed_count = models.PositiveIntegerField(default=0, help_text="Candidates in failed chunks.")
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_finished = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
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
                condition=Q(done_count__lte=models.F("total")), name="batch_done_lte_total"
            ),
            models.CheckConstraint(
                condition=Q(chunks_finished__lte=models.F("chunks_total")),
                name="batch_chunks_finished_lte_total",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"batch {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_BATCH_STATUSES

    @property
    def progress_percent(self) -> int:
        if not self.total:
            return 100 if self.is_finished else 0
        return int(100 * (self.done_count + self.failed_count) / self.total)


class ChunkStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_CHUNK_STATUSES = (ChunkStatus.SUCCEEDED, ChunkStatus.FAILED, ChunkStatus.CANCELLED)


class GenerationChunk(models.Model):
    """One GPU task's share of a batch: one model version and a list of (prompt|source, seed)."""

    batch = models.ForeignKey(GenerationBatch, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    items = models.JSONField(help_text='[{"prompt": id, "seed": n}] or [{"source": id, "seed": n}]')
    status = models.CharField(
        max_length=16, choices=ChunkStatus.choices, default=ChunkStatus.QUEUED
    )
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        default=timezone.now,
        help_text="Last sign of life: queued, claimed, or the running worker's beat "
        "(stale: the sweep requeues the chunk).",
    )

    class Meta:
        ordering = ["batch_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "index"], name="chunk_unique_index"),
        ]

    def __str__(self) -> str:
        return f"batch {self.batch_id} chunk {self.index}"


class CandidateKind(models.TextChoices):
    STICKER = "sticker", "Sticker"
    ANIMATION = "animation", "Animation"


class CandidateOrigin(models.TextChoices):
    GENERATED = "generated", "Generated by a model version"
    IMPORTED = "imported", "Imported from a weak corpus"


def frame_key(frames_prefix: str, index: int) -> str:
    """Storage key of frame ``index`` of an animation whose frames are under ``frames_prefix``
    (``Candidate.frames_prefix``): the one naming of stored frames, for writers and readers."""
    return f"{frames_prefix}frame-{index:03d}.png"


class Candidate(models.Model):
    """One generated (or imported) sticker image or animation, with its provenance."""

    kind = models.CharField(max_length=16, choices=CandidateKind.choices, db_index=True)
    origin = models.CharField(
        max_length=16, choices=CandidateOrigin.choices, default=CandidateOrigin.GENERATED
    )
    batch = models.ForeignKey(
        GenerationBatch, null=True, blank=True, on_delete=models.CASCADE, related_name="candidates"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="candidates"
    )
    prompt = models.ForeignKey(
        Prompt, null=True, blank=True, on_delete=models.PROTECT, related_name="candidates"
    )
    source = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="animations",
        help_text="The sticker an animation was made from.",
    )
    seed = models.BigIntegerField(default=0)
    params = models.JSONField(default=dict, help_text="The inference parameters actually used.")
    raw_prompt = models.TextField(help_text="The prompt as written (or the caption, if imported).")
    enhanced_prompt = models.TextField(blank=True)
    motion_prompt = models.TextField(blank=True, help_text="The text that asked for the motion.")
    file = models.CharField(max_length=500, help_text="Storage key of the PNG or animated WebP.")
    frames_prefix = models.CharField(
        max_length=500, blank=True, help_text="Storage prefix of the frames (animations)."
    )
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    frame_count = models.PositiveIntegerField(default=1)
    file_size = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    device = models.CharField(max_length=32, blank=True)
    inference_ms = models.FloatField(null=True, blank=True)
    motion_score = models.FloatField(
        null=True, blank=True, help_text="Mean frame-to-frame change in [0, 1] (animations)."
    )
    weak_labels = models.JSONField(default=dict, blank=True, help_text="Labels of an import.")
    import_source = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "prompt", "model_version", "seed"],
                condition=Q(source__isnull=True, batch__isnull=False),
                name="candidate_unique_sticker_key",
            ),
            models.UniqueConstraint(
                fields=["batch", "source", "model_version", "seed"],
                condition=Q(source__isnull=False),
                name="candidate_unique_animation_key",
            ),
            # An import stores a file once per source: ``candidates_import`` inserts with
            # ON CONFLICT DO NOTHING on this key. Rows without a content hash (crowd imports
            # know only an item's name) or without a source are not deduplicated.
            models.UniqueConstraint(
                fields=["import_source", "sha256"],
                condition=Q(origin="imported") & ~Q(import_source="") & ~Q(sha256=""),
                name="candidate_unique_import_key",
            ),
            models.CheckConstraint(
                condition=Q(kind="animation") | Q(source__isnull=True),
                name="candidate_only_animations_have_source",
            ),
            models.CheckConstraint(
                condition=Q(origin="imported") | Q(model_version__isnull=False),
                name="candidate_generated_has_model_version",
            ),
            models.CheckConstraint(condition=Q(frame_count__gte=1), name="candidate_frames_gte_1"),
        ]
        indexes = [models.Index(fields=["model_version", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk}"
