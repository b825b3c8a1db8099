"""Simulated raters over HTTP: the command's raters work a small campaign of rendered stickers on
the live server, a real Celery worker computes the platform's quality, and the report sets each
rater's hidden profile beside it. Nothing the platform stores names a profile."""

import io
import json

import pytest
from django.core.management import call_command
from django.db.models import Count, Q

from annotation.models import Item, Judgment, Lease
from annotation.services.campaigns import campaign_create, campaign_start
from annotation.services.items import campaign_items_add
from simulation.profiles import assign_profiles
from simulation.services import world_stickers_import

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ITEMS, OVERLAP = 12, 3
PROFILES = {"reliable": 2, "spammer": 1, "adversarial": 1}


def test_four_simulated_raters_work_a_campaign_of_rendered_stickers(live_server, start_worker):
    worker = start_worker("default")
    stickers = world_stickers_import(source="e2e world", count=ITEMS, wrong_share=0.3)
    campaign = campaign_create(
        name="World alignment", kind="single", preset="alignment", overlap=OVERLAP
    )
    campaign_items_add(campaign=campaign, candidate_groups=[[s.candidate] for s in stickers])
    campaign_start(campaign=campaign)
    out = io.StringIO()

    call_command(
        "simulate_raters",
        *("--campaign", str(campaign.pk), "--raters", "4", "--seconds", "90", "--seed", "3"),
        *("--base-url", live_server.url, "--profiles", "reliable=2,spammer=1,adversarial=1"),
        *("--patience", "3", "--quality-timeout", "90", "--json"),
        stdout=out,
    )

    report = json.loads(out.getvalue())
    # Every item got its judgments, each from a different rater; no lease is left.
    items = Item.objects.filter(campaign=campaign).annotate(
        counted=Count("judgments", filter=Q(judgments__skipped=False)),
        raters=Count("judgments__rater", filter=Q(judgments__skipped=False), distinct=True),
    )
    assert {(i.judgment_count, i.counted, i.raters) for i in items} == {(OVERLAP,) * 3}, (
        report,
        worker.log()[-2000:],
    )
    assert Lease.objects.filter(campaign=campaign, released=False).count() == 0
    stored = Judgment.objects.filter(campaign=campaign)
    assert report["judgments"] == stored.filter(skipped=False).count() == ITEMS * OVERLAP
    assert report["skips"] == stored.filter(skipped=True).count()
    assert report["judgments_per_s"] > 0
    # The report names each rater's hidden profile, as the seed assigned them.
    by_name = {r["username"]: r for r in report["per_rater"]}
    assert sorted(by_name) == [f"sim-3-{i}" for i in range(4)]
    assert [by_name[f"sim-3-{i}"]["profile"] for i in range(4)] == assign_profiles(
        seed=3, counts=PROFILES
    )
    # ...beside its accuracy against the oracle and the quality the platform computed.
    assert report["quality_note"] == ""
    for row in by_name.values():
        assert row["judgments"] > 0
        assert 0.0 <= row["accuracy"] <= 1.0
        assert 0.0 <= row["platform_quality"] <= 1.0
    assert {r["stopped"] for r in by_name.values()} == {"no item came for 3 s"}
    # Answers fit the alignment preset: the binary question always, reason tags from the oracle.
    assert {
        tuple(sorted(a)) for a in stored.filter(skipped=False).values_list("answers", flat=True)
    } <= {
        ("aligned",),
        ("aligned", "missing"),
    }
    # Nothing the platform keeps says which rater is which kind.
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert [
        p for p in ("spammer", "adversarial", "pass_biased", "sloppy") if p in dump.getvalue()
    ] == []
