"""Consensus rows keep the indexes their readers use: the campaign's own index goes (the
by-method index leads with it) and the candidate's holds per-candidate rows only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0006_item_id_sequence_cache"),
        ("generation", "0006_batch_motion_prompts"),
        ("quality", "0002_rater_agreement_with_other_raters"),
    ]

    operations = [
        migrations.AlterField(
            model_name="consensusresult",
            name="campaign",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="consensus_results",
                to="annotation.campaign",
            ),
        ),
        migrations.AlterField(
            model_name="consensusresult",
            name="candidate",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                help_text="The candidate, for per-candidate questions; empty otherwise.",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="generation.candidate",
            ),
        ),
        migrations.AddIndex(
            model_name="consensusresult",
            index=models.Index(
                condition=models.Q(("candidate__isnull", False)),
                fields=["candidate"],
                name="consensus_by_candidate",
            ),
        ),
    ]
