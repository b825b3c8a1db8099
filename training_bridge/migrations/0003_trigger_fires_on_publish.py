"""Training triggers fire in the publishing transaction now, so there is no pending state (nor
the periodic task that fired pending triggers). A trigger still pending was published while the
training service was absent: it becomes failed, with that reason, and can be fired again."""

from django.db import migrations, models

PENDING_REASON = (
    "Published while the training service was absent; fire the trigger again to create the job."
)


def pending_to_failed(apps, schema_editor):
    TrainingTrigger = apps.get_model("training_bridge", "TrainingTrigger")
    TrainingTrigger.objects.filter(status="pending").update(status="failed", error=PENDING_REASON)


class Migration(migrations.Migration):
    dependencies = [
        ("training_bridge", "0002_export_parts"),
    ]

    operations = [
        migrations.RunPython(pending_to_failed, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="trainingtrigger",
            name="status",
            field=models.CharField(
                choices=[("fired", "Training job created"), ("failed", "Failed")],
                db_index=True,
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="datasetversion",
            name="manifest_sha256",
            field=models.CharField(
                help_text="sha256 over the canonical manifest (see versions.manifest_checksum).",
                max_length=64,
            ),
        ),
    ]
