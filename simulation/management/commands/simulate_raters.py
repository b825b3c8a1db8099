"""Simulated raters work a running campaign through the site's HTTP rating API.

    python manage.py simulate_raters --campaign 12 --raters 40 --seconds 120 [--seed 7]
        [--base-url http://127.0.0.1:8000] [--profiles reliable=20,spammer=4,...]
        [--time-scale 0] [--quality-timeout 120] [--json]

It makes the rater accounts (``sim-<seed>-<index>``, token only) and their memberships, runs
the raters in threads against the site at ``--base-url`` until ``--seconds`` pass or no item
is left, asks the platform for the campaign's quality results as the quality page does (a
Celery worker on the ``default`` queue computes them), and prints judgments/s and, per rater,
its hidden profile, its accuracy against the oracle and the quality the platform computed.
"""

import json
import threading
import time

import requests
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation.quality import selectors as quality_selectors
from annotation.quality.models import AggregationRun, RunStatus
from annotation.quality.services.runs import aggregation_run_request
from simulation import profiles
from simulation.client import RatingClient
from simulation.judge import Judge
from simulation.rater import RaterResult, SimulatedRater
from simulation.report import build_report, format_report
from simulation.services import simulated_raters_enrol, simulation_campaign_check


def _messages(exc: ValidationError) -> str:
    return " ".join(m for ms in exc.message_dict.values() for m in ms)


class Command(BaseCommand):
    help = "Run simulated raters with hidden profiles against a campaign over the HTTP API."

    def add_arguments(self, parser):
        parser.add_argument("--campaign", type=int, required=True, help="The campaign's id.")
        parser.add_argument("--raters", type=int, default=40)
        parser.add_argument("--seconds", type=float, default=120.0, help="How long they rate.")
        parser.add_argument("--seed", type=int, default=0, help="Profiles, answers and names.")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="The site.")
        parser.add_argument(
            "--profiles",
            help="Raters per profile, e.g. reliable=20,sloppy=6,spammer=4 (adding up to "
            f"--raters); default shares: {profiles.DEFAULT_MIX}.",
        )
        parser.add_argument(
            "--time-scale",
            type=float,
            default=0.0,
            help="Wait this share of each rater's simulated seconds on an item (0: no wait).",
        )
        parser.add_argument(
            "--patience",
            type=float,
            default=10.0,
            help="A rater given no item for this many seconds stops.",
        )
        parser.add_argument(
            "--quality-timeout",
            type=float,
            default=120.0,
            help="Seconds to wait for the platform's quality computation (0: skip it).",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, **options):
        count, seed = options["raters"], options["seed"]
        if not 1 <= count <= 500:
            raise CommandError(f"--raters must be from 1 to 500, not {count}.")
        for name in ("seconds", "patience"):
            if not options[name] > 0:
                raise CommandError(f"--{name} must be more than 0, not {options[name]:g}.")
        if not options["time_scale"] >= 0:
            raise CommandError(f"--time-scale must be 0 or more, not {options['time_scale']:g}.")
        try:
            counts = (
                profiles.parse_mix(options["profiles"], raters=count)
                if options["profiles"]
                else profiles.mix_counts(count)
            )
            campaign = simulation_campaign_check(campaign_id=options["campaign"])
        except profiles.ProfileError as exc:
            raise CommandError(f"--profiles: {exc}") from exc
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc
        base_url = options["base_url"].rstrip("/")
        self._check_site(base_url)
        # Loaded before any account exists: a missing oracle leaves nothing behind.
        from generation.world.oracle import Oracle, OracleError

        try:
            judge = Judge(Oracle.load())
        except OracleError as exc:
            raise CommandError(f"The oracle cannot be loaded: {exc}") from exc
        try:
            enrolled = simulated_raters_enrol(campaign=campaign, seed=seed, count=count)
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc
        names = profiles.assign_profiles(seed=seed, counts=counts)
        results, started, ended = self._rate(
            enrolled, names, judge=judge, campaign_id=campaign.pk, seed=seed, options=options
        )
        rows, note = self._quality(campaign, options["quality_timeout"])
        report = build_report(
            campaign_id=campaign.pk,
            seed=seed,
            results=results,
            started=started,
            ended=ended,
            quality_rows=rows,
            quality_note=note,
        )
        self.stdout.write(json.dumps(report) if options["json"] else format_report(report))

    def _check_site(self, base_url: str) -> None:
        try:
            response = requests.get(f"{base_url}/api/rate/ping/", timeout=10)
        except requests.RequestException as exc:
            raise CommandError(f"No site answers at {base_url}: {type(exc).__name__}.") from exc
        if response.status_code not in (401, 403):
            raise CommandError(
                f"{base_url} does not look like the platform: /api/rate/ping/ answered "
                f"{response.status_code} to a caller without a token."
            )

    def _rate(self, enrolled, names, *, judge, campaign_id, seed, options):
        """Run every rater in its own thread; return their results, and when they started and
        the last stopped (``time.monotonic()``)."""
        stop = threading.Event()
        started = time.monotonic()
        deadline = started + options["seconds"]
        raters = []
        for index, ((user, token), name) in enumerate(zip(enrolled, names, strict=True)):
            result = RaterResult(index=index, username=user.get_username(), profile=name)
            client = RatingClient(
                base_url=options["base_url"], token=token, campaign_id=campaign_id
            )
            raters.append(
                SimulatedRater(
                    client=client,
                    judge=judge,
                    profile=profiles.PROFILES[name],
                    rng=profiles.rater_rng(seed=seed, index=index),
                    result=result,
                    deadline=deadline,
                    time_scale=options["time_scale"],
                    patience=options["patience"],
                    stop=stop,
                )
            )
        threads = [threading.Thread(target=rater.run, daemon=True) for rater in raters]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        return [rater.result for rater in raters], started, time.monotonic()

    def _quality(self, campaign, timeout: float) -> tuple[dict[str, dict], str]:
        """The platform's rater table by username after a fresh computation, as the quality
        page's Compute button asks for it; empty, with the reason, when none finished."""
        if timeout <= 0:
            return {}, "Platform quality not computed (--quality-timeout 0)."
        run = aggregation_run_request(campaign=campaign)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, error = AggregationRun.objects.values_list("status", "error").get(pk=run.pk)
            if status == RunStatus.SUCCEEDED:
                rows = quality_selectors.rater_table(campaign=campaign)
                return {row["username"]: row for row in rows}, ""
            if status == RunStatus.FAILED:
                return {}, f"The platform's quality computation {run.pk} failed: {error}"
            time.sleep(0.5)
        return {}, (
            f"The platform's quality computation {run.pk} did not finish within {timeout:g} s "
            "(is a Celery worker on the default queue running?)."
        )
