import sys

from django.core.management.base import BaseCommand

from stickerloop import health


class Command(BaseCommand):
    help = (
        "Check that the database answers with every migration applied, the broker answers and "
        "the storage takes a file (the bucket exists and is writable); exit 1 with one line "
        "naming the first part that does not. Run it before starting the web or a worker."
    )
    # Django's system checks and its unapplied-migration warning are not what this reports on.
    requires_system_checks: list = []
    requires_migrations_checks = False

    def handle(self, **options):
        try:
            health.preflight()
        except health.Unavailable as problem:
            self.stderr.write(f"preflight: {problem}")
            sys.exit(1)
        self.stdout.write("preflight: database, broker and storage ready")
