from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from generation.services.model_versions import default_models_register


class Command(BaseCommand):
    help = "Build the default tiny sticker and animation models offline and register them."

    def add_arguments(self, parser):
        parser.add_argument("--root", type=Path, default=settings.MODELS_DIR)

    def handle(self, *args, root: Path, **options):
        root.mkdir(parents=True, exist_ok=True)
        for version in default_models_register(root=root):
            self.stdout.write(
                f"{version.name:<20} {version.kind:<10} {version.role:<8} {version.uri}"
            )
