"""One simulated rater's loop, as a person works the rating screen.

It resumes the items it holds, keeps ``prefetch`` items leased ahead, and for each item
downloads the media, looks at it through the oracle, answers as its profile says (or skips with
a reason), and submits with the same step call that leases the next items. Now and then it
undoes its last answer and answers the item again. It stops at the deadline, when the campaign
or its membership stops it, or when no item has come for ``patience`` seconds.

``seconds_on_item`` is the simulated person's time on the item, drawn from the profile; with
``time_scale`` 1 the rater also waits that long, with 0 it goes as fast as the API answers.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import requests

from .client import RatingClient, RatingRefused
from .judge import Judge
from .policies import agreement, answer_sheet
from .profiles import Profile, think_seconds

SKIP_REASONS = ("Cannot tell what it shows", "The prompt is unclear", "Not sure")
MEDIA_FAILED = "The image did not load"


@dataclass
class RaterResult:
    """What one rater did; ``profile`` is hidden from the platform."""

    index: int
    username: str
    profile: str
    skips: int = 0
    undos: int = 0
    refusals: list[str] = field(default_factory=list)
    stopped: str = ""
    last_at: float | None = None  # time.monotonic() of the last acknowledged answer
    # Per item, the answer standing now: (answers equal to the oracle's, answers compared),
    # or None for a skip. An undone answer is replaced by the one given after it.
    standing: dict[int, tuple[int, int] | None] = field(default_factory=dict)

    @property
    def judgments(self) -> int:
        return sum(1 for v in self.standing.values() if v is not None)

    @property
    def accuracy(self) -> float | None:
        compared = sum(v[1] for v in self.standing.values() if v is not None)
        if not compared:
            return None
        return sum(v[0] for v in self.standing.values() if v is not None) / compared


class SimulatedRater:
    def __init__(
        self,
        *,
        client: RatingClient,
        judge: Judge,
        profile: Profile,
        rng: random.Random,
        result: RaterResult,
        deadline: float,
        time_scale: float = 0.0,
        patience: float = 10.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.judge = judge
        self.profile = profile
        self.rng = rng
        self.result = result
        self.deadline = deadline
        self.time_scale = time_scale
        self.patience = patience
        self.stop = stop or threading.Event()
        self.queue: list[dict] = []
        self.known: set[int] = set()

    def _add(self, items: list[dict]) -> None:
        for item in items:
            if item["id"] not in self.known:
                self.known.add(item["id"])
                self.queue.append(item)

    def _running(self) -> bool:
        return time.monotonic() < self.deadline and not self.stop.is_set()

    def _wait(self, seconds: float) -> None:
        self.stop.wait(max(0.0, min(seconds, self.deadline - time.monotonic())))

    def _answer(self, schema: list[dict], item: dict) -> tuple[dict, tuple[int, int] | None]:
        """The submission for ``item`` and its standing (None for a skip)."""
        seconds = think_seconds(self.profile, self.rng)
        submit = {"item": item["id"], "client_id": str(uuid.uuid4()), "seconds_on_item": seconds}
        try:
            seen = self.judge.see_item(item, self.client.media)
        except RatingRefused as exc:
            # What a person does when the picture does not load.
            self.result.refusals.append(f"item {item['id']}: {exc}")
            return {**submit, "answers": {}, "skipped": True, "skip_reason": MEDIA_FAILED}, None
        if self.rng.random() < self.profile.skip_rate:
            reason = self.rng.choice(SKIP_REASONS)
            return {**submit, "answers": {}, "skipped": True, "skip_reason": reason}, None
        given, truth = answer_sheet(schema, seen, self.profile, self.rng)
        return {**submit, "answers": given}, agreement(schema, given, truth)

    def run(self) -> RaterResult:
        try:
            self._run()
        except RatingRefused as exc:
            self.result.stopped = f"refused: {exc}"
        except requests.RequestException as exc:
            self.result.stopped = f"the server could not be reached: {type(exc).__name__}"
        return self.result

    def _run(self) -> None:
        config = self.client.config()
        if config["membership"]["status"] != "active" or config["campaign"]["status"] != "running":
            self.result.stopped = (
                f"membership {config['membership']['status']}, "
                f"campaign {config['campaign']['status']}"
            )
            return
        schema, prefetch = config["schema"], config["prefetch"]
        self._add(self.client.held())
        empty_since, empty_wait = None, 0.1
        while self._running():
            if not self.queue:
                data = self.client.step(fetch=prefetch)
                self._add(data["items"])
                if not self.queue:
                    if data["message"]:
                        self.result.stopped = data["message"]
                        return
                    empty_since = empty_since or time.monotonic()
                    if time.monotonic() - empty_since > self.patience:
                        self.result.stopped = f"no item came for {self.patience:g} s"
                        return
                    # Others hold the last leases: look again, less and less often.
                    self._wait(empty_wait)
                    empty_wait = min(1.0, empty_wait * 2)
                    continue
            empty_since, empty_wait = None, 0.1
            item = self.queue.pop(0)
            submit, standing = self._answer(schema, item)
            self._wait(submit["seconds_on_item"] * self.time_scale)
            if not self._submit(submit, standing, fetch=max(0, prefetch - len(self.queue))):
                return
            undo = standing is not None and self.rng.random() < self.profile.undo_rate
            if undo and not self._undo_and_answer_again(schema):
                return
        self.result.stopped = self.result.stopped or "deadline"

    def _submit(self, submit: dict, standing, *, fetch: int) -> bool:
        """Send one answer; False when the rater has to stop (campaign closed, paused)."""
        try:
            data = self.client.step(submit=submit, fetch=fetch)
        except RatingRefused as exc:
            self.result.refusals.append(f"item {submit['item']}: {exc}")
            if exc.status in (403, 409):
                self.result.stopped = f"refused: {exc}"
                return False
            return True
        if standing is None:
            self.result.skips += 1
        self.result.standing[submit["item"]] = standing
        self.result.last_at = time.monotonic()
        self._add(data["items"])
        return True

    def _undo_and_answer_again(self, schema: list[dict]) -> bool:
        """Take the last answer back and answer that item afresh (a person who changed their
        mind); False when the rater has to stop."""
        try:
            undone = self.client.undo()
        except RatingRefused as exc:
            self.result.refusals.append(f"undo: {exc}")
            return True
        self.result.undos += 1
        item = undone["item"]
        self.result.standing.pop(item["id"], None)
        submit, standing = self._answer(schema, item)
        return self._submit(submit, standing, fetch=0)
