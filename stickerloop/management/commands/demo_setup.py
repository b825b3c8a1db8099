from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation.models import GenerationBatch, ModelKind, ModelVersion, PromptSet
from generation.services.batches import generation_batch_create
from generation.services.prompts import prompt_set_import
from stickerloop.services import user_create_with_roles

DEMO_USERS = [
    ("rater", ["rater"]),
    ("rater2", ["rater"]),
    ("curator", ["curator"]),
    ("engineer", ["ml_engineer"]),
    ("admin", ["admin", "curator", "ml_engineer", "rater"]),
]
DEMO_PASSWORD = "stickerloop"
DEMO_PROMPTS = """a corgi wearing sunglasses, waving
a cup of coffee with a happy face
a cactus in a tiny pot giving a thumbs up
a red panda eating noodles
a rocket ship blasting off with stars
a sleepy cat curled up on a cloud
"""


class Command(BaseCommand):
    help = "Development only: demo users for each role, a demo prompt set and a first batch."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("demo_setup creates well-known passwords; it refuses production.")
        self.stdout.write("Demo logins (development only):")
        for username, roles in DEMO_USERS:
            user_create_with_roles(username=username, password=DEMO_PASSWORD, roles=roles)
            self.stdout.write(f"  {username:<9} / {DEMO_PASSWORD}   roles: {', '.join(roles)}")
        prompt_set = PromptSet.objects.filter(name="Demo stickers").first()
        if prompt_set is None:
            prompt_set, _ = prompt_set_import(
                name="Demo stickers", content=DEMO_PROMPTS, file_format="text"
            )
        if not GenerationBatch.objects.exists():
            models = list(ModelVersion.objects.filter(kind=ModelKind.IMAGE, role="base")[:1])
            if models:
                batch = generation_batch_create(
                    name="Demo: first stickers",
                    kind="sticker",
                    prompt_set=prompt_set,
                    model_versions=models,
                    seeds=[0, 1, 2, 3],
                    params={},
                )
                self.stdout.write(f"Queued demo batch {batch.pk} ({batch.total} stickers).")
