"""Many raters at once against real PostgreSQL: no over-assignment, no rater judging an item
twice, no acknowledged judgment lost, expired leases back in the pool."""

import random
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from annotation.models import Item, Judgment, Lease
from annotation.services.rating import Submission, item_next_for_rater, rating_step
from stickerloop.errors import ServiceConflict
from tests import factories as f

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]

RATERS = 12
ITEMS = 40
OVERLAP = 3


def _more_work(campaign_id, rater) -> bool:
    """Items still short of judgments that this rater has not seen (they may be leased now)."""
    unfinished = Item.objects.filter(campaign_id=campaign_id, judgment_count__lt=OVERLAP)
    return unfinished.exclude(judgments__rater=rater).exclude(leases__rater=rater).exists()


def _rater_loop(campaign_id, rater, acknowledged, errors, seed):
    rng = random.Random(seed)
    deadline = time.monotonic() + 90
    try:
        queue: list[int] = []
        while time.monotonic() < deadline:
            if not queue:
                queue = rating_step(campaign_id=campaign_id, rater=rater, fetch=2).item_ids
                if not queue:
                    if not _more_work(campaign_id, rater):
                        break
                    time.sleep(0.02)  # others hold the last leases; a skip may free one
                    continue
            item_id = queue.pop(0)
            skipped = rng.random() < 0.1
            submission = Submission(
                item_id=item_id,
                client_id=uuid.uuid4(),
                seconds_on_item=rng.random(),
                answers={} if skipped else {"aligned": rng.random() < 0.5},
                skipped=skipped,
                skip_reason="Not sure" if skipped else "",
            )
            result = rating_step(
                campaign_id=campaign_id, rater=rater, submission=submission, fetch=1
            )
            acknowledged.append((submission.client_id, result.judgment.pk))
            if rng.random() < 0.2:
                # A retry of the same submit (the answer got lost on the way back).
                again = rating_step(campaign_id=campaign_id, rater=rater, submission=submission)
                if again.judgment.pk != result.judgment.pk:
                    errors.append(f"retry stored a second judgment for {submission.client_id}")
            queue.extend(result.item_ids)
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()


def test_many_raters_at_once(step_mode):
    raters = [f.rater(f"crowd-{i}") for i in range(RATERS + 1)]
    campaign = f.running_campaign(raters=raters, n_items=ITEMS, overlap=OVERLAP)
    # One rater takes three items and walks away; their leases expire during the run.
    quitter = raters[-1]
    abandoned = item_next_for_rater(campaign=campaign, rater=quitter, count=3)
    Lease.objects.filter(rater=quitter).update(expires_at=timezone.now() - timedelta(seconds=1))

    acknowledged: list = []
    errors: list = []
    threads = [
        threading.Thread(target=_rater_loop, args=(campaign.pk, r, acknowledged, errors, i))
        for i, r in enumerate(raters[:-1])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []

    # No acknowledged judgment lost, none stored twice.
    stored = dict(Judgment.objects.values_list("client_id", "pk"))
    assert dict(acknowledged) == {cid: stored[cid] for cid, _ in acknowledged}
    assert len(stored) == len({cid for cid, _ in acknowledged})
    # Every item got exactly its overlap of counted judgments, from distinct raters; the
    # abandoned items came back and were finished too.
    counts = Item.objects.annotate(
        counted=Count("judgments", filter=Q(judgments__skipped=False)),
        raters=Count("judgments__rater", distinct=True),
        total=Count("judgments"),
    )
    assert {(i.judgment_count, i.counted, i.leased_count) for i in counts} == {
        (OVERLAP, OVERLAP, 0)
    }
    assert all(i.raters == i.total for i in counts)
    assert not Judgment.objects.filter(rater=quitter).exists()
    assert {i.pk for i in abandoned} <= set(Item.objects.values_list("pk", flat=True))
    assert Lease.objects.filter(released=False).count() == 0


def _submit_once(campaign_id, rater, submission, results, barrier):
    try:
        barrier.wait()
        result = rating_step(campaign_id=campaign_id, rater=rater, submission=submission)
        results.append(result.judgment.pk)
    except (PermissionDenied, ServiceConflict) as exc:
        results.append(repr(exc))
    finally:
        connection.close()


def test_the_same_submit_sent_twice_at_once_is_stored_once(step_mode):
    r = f.rater()
    campaign = f.running_campaign(raters=[r], n_items=1)
    [item] = item_next_for_rater(campaign=campaign, rater=r)
    submission = Submission(
        item_id=item.pk, client_id=uuid.uuid4(), seconds_on_item=1.0, answers={"aligned": True}
    )
    results: list = []
    barrier = threading.Barrier(4)
    threads = [
        threading.Thread(target=_submit_once, args=(campaign.pk, r, submission, results, barrier))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    [judgment] = Judgment.objects.all()
    assert results == [judgment.pk] * 4
    assert list(Item.objects.values_list("judgment_count", "leased_count")) == [(1, 0)]
