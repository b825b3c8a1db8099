import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0003_chunk_heartbeat"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="PromptImport",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        help_text="The prompt set's name once imported.", max_length=200
                    ),
                ),
                ("description", models.TextField(blank=True)),
                ("is_held_out", models.BooleanField(default=False)),
                (
                    "file_format",
                    models.CharField(
                        choices=[
                            ("text", "Text, a prompt a line"),
                            ("csv", "CSV with a text column"),
                            ("jsonl", "JSON Lines with a text field"),
                        ],
                        max_length=8,
                    ),
                ),
                (
                    "location",
                    models.CharField(
                        help_text="Storage key of the uploaded file (removed once it has ended).",
                        max_length=300,
                    ),
                ),
                ("original_name", models.CharField(blank=True, max_length=300)),
                (
                    "size_bytes",
                    models.PositiveBigIntegerField(help_text="Size of the uploaded file in bytes."),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                        ],
                        db_index=True,
                        default="queued",
                        max_length=16,
                    ),
                ),
                (
                    "processed",
                    models.PositiveIntegerField(
                        default=0, help_text="Lines (CSV: rows) read so far."
                    ),
                ),
                (
                    "progress",
                    models.PositiveSmallIntegerField(
                        default=0,
                        help_text="Percent done: reading the file up to 90, storing the prompts 100.",
                    ),
                ),
                (
                    "report",
                    models.JSONField(
                        blank=True,
                        default=dict,
                        help_text="Once succeeded: imported, the first 100 duplicates and empty lines, and their counts.",
                    ),
                ),
                (
                    "error",
                    models.TextField(blank=True, help_text="Why the import failed, if it did."),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "prompt_set",
                    models.OneToOneField(
                        blank=True,
                        help_text="The prompt set made, once succeeded.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="generation.promptset",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("progress__lte", 100)), name="prompt_import_progress"
                    )
                ],
            },
        ),
    ]
