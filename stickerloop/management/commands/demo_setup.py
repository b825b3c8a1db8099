from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Campaign, Preset
from annotation.services.campaigns import campaign_create, campaign_start
from annotation.services.items import campaign_items_from_selection
from generation.models import BatchStatus, GenerationBatch, ModelKind, ModelVersion, PromptSet
from generation.services.batches import generation_batch_create, generation_batch_plan
from generation.services.chunks import generation_chunk_run
from generation.services.prompts import prompt_set_import
from generation.world.sampling import prompts
from stickerloop.services import user_create_with_roles

DEMO_USERS = [
    ("rater", ["rater"]),
    ("rater2", ["rater"]),
    ("curator", ["curator"]),
    ("engineer", ["ml_engineer"]),
    ("admin", ["admin", "curator", "ml_engineer", "rater"]),
]
# Well known on purpose (printed, and in the README) for `make run` on one machine; the command
# refuses production. It still passes AUTH_PASSWORD_VALIDATORS, as user_create_with_roles asks.
DEMO_PASSWORD = "stickerloop-demo"
# Prompts from the sticker world's own "demo" stream: subjects and colours the default models
# were trained on, so the first batch draws recognisable stickers.
DEMO_PROMPT_COUNT = 12
# Held-out prompts from the world's "heldout" stream (combinations no training stream draws):
# without a held-out prompt set a training job's evaluation is skipped.
DEMO_HELD_OUT_COUNT = 16
DEMO_HELD_OUT = "Demo held-out prompts"
DEMO_SEEDS = [0, 1]
DEMO_BATCH = "Demo: first stickers"
DEMO_CAMPAIGN = "Demo: alignment and style"
DEMO_RATERS = ("rater", "rater2", "admin")


class Command(BaseCommand):
    help = (
        "Development only: demo users for each role, a demo prompt set, a held-out prompt set "
        "for evaluations, a first batch drawn by the default model, and an alignment-and-style "
        "campaign on it open to the demo raters."
    )

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("demo_setup creates well-known passwords; it refuses production.")
        self.stdout.write("Demo logins (development only):")
        for username, roles in DEMO_USERS:
            user_create_with_roles(username=username, password=DEMO_PASSWORD, roles=roles)
            self.stdout.write(f"  {username:<9} / {DEMO_PASSWORD}   roles: {', '.join(roles)}")
        prompt_set = PromptSet.objects.filter(name="Demo stickers").first()
        if prompt_set is None:
            content = "".join(f"{p.text}\n" for p in prompts("demo", DEMO_PROMPT_COUNT))
            prompt_set, _ = prompt_set_import(
                name="Demo stickers", content=content, file_format="text"
            )
        if not PromptSet.objects.filter(name=DEMO_HELD_OUT).exists():
            content = "".join(f"{p.text}\n" for p in prompts("heldout", DEMO_HELD_OUT_COUNT))
            held_out, report = prompt_set_import(
                name=DEMO_HELD_OUT, content=content, file_format="text", is_held_out=True
            )
            self.stdout.write(
                f"Created held-out prompt set {held_out.pk} ({report.imported} prompts) for "
                "training job evaluations."
            )
        batch = GenerationBatch.objects.filter(name=DEMO_BATCH).first()
        if batch is None and not GenerationBatch.objects.exists():
            batch = self._first_batch(prompt_set)
        if batch is not None and not Campaign.objects.filter(name=DEMO_CAMPAIGN).exists():
            self._first_campaign(batch)

    def _first_batch(self, prompt_set: PromptSet) -> GenerationBatch | None:
        models = list(ModelVersion.objects.filter(kind=ModelKind.IMAGE, role="base")[:1])
        if not models:
            return None
        batch = generation_batch_create(
            name=DEMO_BATCH,
            kind="sticker",
            prompt_set=prompt_set,
            model_versions=models,
            seeds=DEMO_SEEDS,
            params={},
        )
        # Generated here, through the same services the worker runs (a few seconds on a CPU),
        # so the demo campaign has stickers before the worker starts; the worker later finds
        # the chunks done and skips them.
        for chunk_id in generation_batch_plan(batch_id=batch.pk):
            generation_chunk_run(chunk_id=chunk_id)
        batch.refresh_from_db()
        self.stdout.write(
            f"Generated demo batch {batch.pk}: {batch.done_count} of {batch.total} stickers."
        )
        return batch

    def _first_campaign(self, batch: GenerationBatch) -> None:
        if batch.status != BatchStatus.SUCCEEDED:
            self.stdout.write(f"Demo batch {batch.pk} is {batch.status}; no demo campaign yet.")
            return
        raters = list(get_user_model().objects.filter(username__in=DEMO_RATERS))
        campaign = campaign_create(
            name=DEMO_CAMPAIGN,
            kind="single",
            presets=[Preset.ALIGNMENT, Preset.STYLE],
            guidelines=(
                "Judge each sticker twice: does it show what the prompt asks (subject, colour, "
                "expression), and is it a good sticker (white outline, flat colours, centred and "
                "whole, transparent background)?"
            ),
            overlap=2,
            raters=raters,
        )
        items = campaign_items_from_selection(campaign=campaign, batches=[batch.pk], seed=0)
        campaign_start(campaign=campaign)
        self.stdout.write(
            f"Opened campaign {campaign.pk} ({len(items)} items) to {', '.join(DEMO_RATERS)}."
        )
