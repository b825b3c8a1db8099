"""64 raters at once over HTTP against the live server and PostgreSQL: no item judged beyond its
overlap, no rater shown an item twice, no acknowledged judgment lost, a retried submit stored
once. (tests/annotation/test_concurrency.py drives the rating service itself with threads.)"""

import random
import threading
import time
import uuid

import pytest
import requests
from django.db.models import Count, Q

from annotation.models import Item, Judgment, Lease
from stickerloop.services import token_issue
from tests import factories as f

RATERS = 64
ITEMS = 64
OVERLAP = 2
DEADLINE_SECONDS = 50
EMPTY_TRIES = 15  # empty answers in a row before a rater concludes the campaign is done


def _post(http: requests.Session, url: str, body: dict) -> requests.Response:
    """POST, sending the same body again when the connection is reset: the test server's listen
    backlog is small and 64 clients connect at once. Safe for submits: a resent client id is
    answered with the stored judgment."""
    for attempt in range(5):
        try:
            return http.post(url, json=body, timeout=30)
        except requests.ConnectionError:
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _rater_loop(
    url: str, token: str, seed: int, shown: list, acknowledged: list, errors: list, lock
) -> None:
    rng = random.Random(seed)
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"
    step = f"{url}/rate/"
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        queue: list[int] = []
        empty = 0
        while time.monotonic() < deadline:
            if not queue:
                answer = _post(http, step, {"fetch": 2})
                if answer.status_code != 200:
                    errors.append(f"fetch: {answer.status_code} {answer.text[:200]}")
                    return
                queue = [item["id"] for item in answer.json()["items"]]
                shown.extend(queue)
                if not queue:
                    empty += 1
                    if empty >= EMPTY_TRIES:
                        return
                    time.sleep(0.1)  # others hold the last leases
                    continue
                empty = 0
            submit = {
                "item": queue.pop(0),
                "client_id": str(uuid.uuid4()),
                "seconds_on_item": rng.random(),
                "answers": {"aligned": rng.random() < 0.5},
            }
            answer = _post(http, step, {"submit": submit, "fetch": 1})
            if answer.status_code != 200:
                errors.append(f"submit: {answer.status_code} {answer.text[:200]}")
                return
            body = answer.json()
            with lock:
                acknowledged.append((submit["client_id"], body["judgment"]["id"]))
            if rng.random() < 0.25:
                # The answer got lost on the way back: the client sends the same submit again.
                again = _post(http, step, {"submit": submit, "fetch": 0})
                replay = again.json()
                if (again.status_code, replay["replayed"], replay["judgment"]["id"]) != (
                    200,
                    True,
                    body["judgment"]["id"],
                ):
                    errors.append(f"retry of {submit['client_id']}: {again.text[:200]}")
            more = [item["id"] for item in body["items"]]
            shown.extend(more)
            queue.extend(more)
        errors.append("a rater ran past the deadline")
    except Exception as exc:
        errors.append(repr(exc))


@pytest.mark.django_db(transaction=True)
@pytest.mark.load
def test_64_raters_at_once_over_http(live_server):
    raters = f.raters(RATERS, prefix="crowd")
    campaign = f.running_campaign(raters=raters, n_items=ITEMS, overlap=OVERLAP)
    tokens = [token_issue(user=r).key for r in raters]
    url = f"{live_server.url}/api/campaigns/{campaign.pk}"
    acknowledged: list = []
    errors: list = []
    lock = threading.Lock()
    shown: list[list[int]] = [[] for _ in tokens]
    threads = [
        threading.Thread(target=_rater_loop, args=(url, t, i, shown[i], acknowledged, errors, lock))
        for i, t in enumerate(tokens)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS + 30)
    assert errors == []
    assert time.monotonic() - started < 60

    # No rater was shown an item twice; all shown together is each item its overlap times over.
    assert [len(ids) - len(set(ids)) for ids in shown] == [0] * RATERS
    assert sum(len(ids) for ids in shown) == ITEMS * OVERLAP
    # No acknowledged judgment lost; each retried submit stored once.
    stored = dict(Judgment.objects.values_list("client_id", "pk"))
    assert {str(cid): pk for cid, pk in stored.items()} == dict(acknowledged)
    assert len(acknowledged) == ITEMS * OVERLAP
    # No item over its overlap, none short of it, no rater judging an item twice, no lease left.
    items = Item.objects.filter(campaign=campaign).annotate(
        counted=Count("judgments", filter=Q(judgments__skipped=False)),
        raters=Count("judgments__rater", distinct=True),
    )
    assert {(i.judgment_count, i.counted, i.raters, i.leased_count) for i in items} == {
        (OVERLAP, OVERLAP, OVERLAP, 0)
    }
    assert Lease.objects.filter(released=False).count() == 0
