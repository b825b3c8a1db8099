from django.db import migrations, models


def presets_from_preset(apps, schema_editor):
    """A campaign made from one preset asks that preset's questions; a custom one none's."""
    Campaign = apps.get_model("annotation", "Campaign")
    for preset in (
        Campaign.objects.exclude(preset="custom").values_list("preset", flat=True).distinct()
    ):
        Campaign.objects.filter(preset=preset).update(presets=[preset])


class Migration(migrations.Migration):
    dependencies = [("annotation", "0004_rate_step_enhanced_prompt")]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="presets",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="The presets whose questions the campaign asks, in order: one for a "
                "preset's campaign, several combined (preset is then custom), none for "
                "hand-written questions.",
            ),
        ),
        migrations.RunPython(presets_from_preset, migrations.RunPython.noop),
    ]
