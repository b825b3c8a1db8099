from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation.services.model_versions import default_models_register
from generation.world.defaults import DefaultModelsError


class Command(BaseCommand):
    help = (
        "Install the sticker world's trained default models (committed weights, checked against "
        "their manifest) into the models folder and register them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--root", type=Path, default=settings.MODELS_DIR)

    def handle(self, *args, root: Path, **options):
        root.mkdir(parents=True, exist_ok=True)
        try:
            versions = default_models_register(root=root)
        except DefaultModelsError as exc:
            raise CommandError(str(exc)) from exc
        for version in versions:
            self.stdout.write(
                f"{version.name:<20} {version.kind:<10} {version.role:<8} {version.uri}"
            )
