"""The loop, measured: the Style Tailoring and animated-sticker experiments, end to end in the
sticker world, through the platform's HTTP API and tasks like any client.

The driver starts the processes (a scratch database, ``manage.py build_default_models``, gunicorn,
a Celery worker on each of ``default``, ``gpu`` and ``train``), makes one account holding the
curator and engineer roles, and from then on only speaks HTTP to the site, and runs
``manage.py simulate_raters`` for the campaigns. Stages, in order:

1. ``generate``: a prompt set of held-in prompts (stream ``heldin``), one sticker batch of the
   default base ``sticker-base`` over it.
2. ``rate``: an alignment campaign over every sticker and a style campaign over the stickers of a
   few subjects only (the Style set is small and narrow in content, as in the paper), each worked
   by simulated raters; then the platform computes their quality and consensus.
3. ``curate``: two dataset rules (``aligned`` is yes; ``style_pass`` is yes), each version built
   (a draft, published in the next stage).
4. ``train``: per training seed, a pipeline is declared (``POST /api/pipelines/create/``): a
   dataset stage per rule (``alignment-set``, ``style-set``), then the four arms as training
   stages with equal steps and batch size, each naming the sets it trains on (``inputs``):
   ``finetune`` on the Alignment set, ``finetune`` on the Style set, ``sequential`` (Alignment
   then Style) and ``style_tailoring`` (content Alignment, style Style). Each draft is
   published once every pipeline's stage for its rule waits for it; the publish fires the
   stages through the platform's triggers, and the ``train`` worker runs the jobs while the
   ``gpu`` worker animates. The driver never creates a job.
5. ``teachers``: ``anim-teacher-a`` and ``anim-teacher-b`` animate held-in stickers in one
   animation batch; a best-of-N campaign of their two animations per sticker is worked by
   simulated raters.
6. ``distill``: a teacher-selection rule keeps the picked animations; a pipeline (ensemble →
   student) waits for its version, then runs ``distill_student`` on ``anim-student`` per training
   seed at half the teachers' inference steps. ``jobs`` then waits for every pipeline to
   succeed, over the API, and reads the jobs and model versions from their stages.
7. ``evaluate_images``: only now is the held-out prompt set (stream ``heldout``) imported and
   the oracle loaded. Per training seed, one image experiment: the base, the prompt-engineered
   base (a template arm) and the four trained arms, on the same held-out prompts and seeds. The
   oracle judges every arm's stickers (alignment and style pass rates) and its figures go in
   through the experiment scores API; diversity and latency are the platform's own.
8. ``evaluate_animations``: one animation experiment (the two teachers and the three students)
   animates stickers of held-out prompts (the base arm's); the oracle's motion pass rate goes in
   through the scores API, latency per 8-frame animation is the platform's.

The evaluations are not pipeline stages: an evaluation stage compares trained models with a
base, but the prompt-engineered base is a template arm, the oracle's figures go in after the
experiment generates, and the held-out prompt set would have to exist before training starts.

Held-out prompts and the oracle never reach stages 1 to 6: the held-out prompt set does not exist
in the database until every pipeline has ended, and ``tests/test_loop_driver.py`` checks that no
function of ``TRAINING_PATH`` (nor what it calls in this module) names the held-out stream or
the oracle, and that ``main`` loads the oracle after the last of them.

Sizes (``SIZES`` below; full / ``--quick``):

| | full | quick |
|---|---|---|
| held-in prompts × seeds (stickers) | 96 × 2 (192) | 16 × 2 (32) |
| style subjects (Style set content) | 3 | 4 |
| raters, overlap | 12, 3 | 6, 1 |
| training seeds | 1, 2, 3 | 1 |
| steps per arm (batch 4, learning rate 1e-4) | 100 | 4 |
| held-out prompts × seeds | 24 × 2 | 4 × 2 |
| teacher sources (held-in stickers) | 32 | 3 |
| student steps (batch 2) | 50 | 4 |
| held-out animation sources | 8 | 2 |

    python bench/loop.py [--quick] [--out DIR]        # make loop / make bench BENCH_ARGS=--quick

Why these sizes: on the shared 2-core machine under load (load average 5 to 8) a sticker training
step took 0.65 to 0.75 s and a student step 1.9 s, each job about 30 s more to start, load and
save, and a sticker about 0.7 s to generate. 12 sticker jobs of 100 steps and 3 student jobs of
50 steps are then about 26 minutes, the experiments' 3 × 6 × 48 stickers about 10, generation,
rating and the teachers (beside the training) about 6: some 42 minutes under that load.
The full run is meant to take at most 45 minutes on 2 cores, ``--quick`` at most 5;
``--quick`` exits non-zero unless every stage ran and every arm was evaluated. Prints a table, saves
``loop.svg`` under ``--out``; the last line is one JSON object of figures.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import ROOT, emit, free_port, setup_django, start_worker, stop_worker, wait_until
from _common import start_site as common_start_site

IMAGE_ARMS = ("alignment", "style", "sequential", "style_tailoring")
TEMPLATE = "{prompt}, white outline, transparent background, flat colours"
ALIGNMENT_QUESTION = "aligned"
STYLE_QUESTION = "style_pass"
# Functions that generate, rate, curate or train: tests/test_loop_driver.py checks that none of
# them (nor what they call in this module) names the held-out stream or the oracle.
TRAINING_PATH = (
    "stage_generate",
    "stage_rate",
    "stage_curate",
    "stage_train",
    "stage_teachers",
    "stage_distill",
    "pipelines_ended",
)


@dataclass(frozen=True)
class Sizes:
    heldin_prompts: int
    heldin_seeds: tuple[int, ...]
    style_subjects: int
    raters: int
    overlap: int
    training_seeds: tuple[int, ...]
    steps: int
    heldout_prompts: int
    heldout_seeds: tuple[int, ...]
    teacher_sources: int
    student_steps: int
    animation_sources: int
    rating_seconds: float


SIZES = {
    "full": Sizes(96, (0, 1), 3, 12, 3, (1, 2, 3), 100, 24, (1, 2), 32, 50, 8, 600.0),
    # --quick: enough stickers that the narrow Style set is not empty by chance (about a quarter of
    # the base's stickers pass style).
    "quick": Sizes(16, (0, 1), 4, 6, 1, (1,), 4, 4, (1, 2), 3, 4, 2, 120.0),
}


class LoopError(RuntimeError):
    """A stage did not do what it should; the message names the stage."""


class Client:
    """The operator's HTTP client: token auth, JSON, every call checked."""

    def __init__(self, base_url: str, token: str) -> None:
        import requests

        self.base = base_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, expect=(200, 201), **kwargs):
        response = self.http.request(method, f"{self.base}{path}", timeout=120, **kwargs)
        if response.status_code not in expect:
            raise LoopError(f"{method} {path}: {response.status_code} {response.text[:600]}")
        return response.json() if response.content else None

    def get(self, path: str, **params):
        return self.call("GET", path, params=params)

    def post(self, path: str, body: dict | None = None):
        return self.call("POST", path, json=body or {})

    def all(self, path: str, **params) -> list[dict]:
        """Every row of a paginated list."""
        rows, offset = [], 0
        while True:
            page = self.get(path, limit=200, offset=offset, **params)
            rows.extend(page["results"])
            if not page.get("next"):
                return rows
            offset += 200

    def media(self, url: str) -> bytes:
        response = self.http.get(url if url.startswith("http") else f"{self.base}{url}", timeout=60)
        if response.status_code != 200:
            raise LoopError(f"GET {url}: {response.status_code}")
        return response.content


def wait_for(what: str, fetch, done, *, timeout: float, interval: float = 2.0):
    """Poll ``fetch()`` until ``done(row)``; raise LoopError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        row = fetch()
        if done(row):
            return row
        if time.monotonic() > deadline:
            raise LoopError(f"{what}: not done within {timeout:.0f} s (last: {row})")
        time.sleep(interval)


# Stages ------------------------------------------------------------------------------------------


def model_versions(api: Client) -> dict[str, dict]:
    return {row["name"]: row for row in api.all("/api/model-versions/")}


def batch_done(api: Client, batch_id: int, what: str, timeout: float) -> list[dict]:
    """Wait for a batch to end; its candidates (a batch that failed for all raises)."""
    ended = ("succeeded", "failed", "cancelled", "partial")
    batch = wait_for(
        what,
        lambda: api.get(f"/api/batches/{batch_id}/"),
        lambda b: b["status"] in ended,
        timeout=timeout,
    )
    candidates = api.all("/api/candidates/", batch=batch_id)
    if not candidates:
        raise LoopError(f"{what}: batch {batch_id} ended {batch['status']} with no candidates")
    return candidates


def stage_generate(api: Client, sizes: Sizes, base: dict) -> tuple[list[dict], list]:
    """Held-in prompts, and the base's stickers of them."""
    from generation.world import sampling

    prompts, seen = [], set()
    for prompt in sampling.prompts("heldin", sizes.heldin_prompts * 2):
        if prompt.text not in seen and len(prompts) < sizes.heldin_prompts:
            seen.add(prompt.text)
            prompts.append(prompt)
    imported = api.post(
        "/api/prompt-sets/import/",
        {"name": "loop: held-in prompts", "content": "\n".join(p.text for p in prompts)},
    )
    batch = api.post(
        "/api/batches/create/",
        {
            "name": "loop: held-in stickers",
            "kind": "sticker",
            "model_versions": [base["id"]],
            "prompt_set": imported["prompt_set"]["id"],
            "seeds": list(sizes.heldin_seeds),
        },
    )
    return batch_done(api, batch["id"], "generate", timeout=1800), prompts


def run_campaign(
    api: Client, *, name: str, kind: str, preset: str, groups, sizes: Sizes, seed: int, site: str
) -> dict:
    """A running campaign of ``groups`` worked by simulated raters through the rating API, its
    quality computed by the platform (``simulate_raters`` asks for it at the end)."""
    campaign = api.post(
        "/api/campaigns/create/",
        {"name": name, "kind": kind, "preset": preset, "overlap": sizes.overlap},
    )
    api.post(
        f"/api/campaigns/{campaign['id']}/items/add/",
        {"candidate_groups": groups, "seed": seed},
    )
    api.post(f"/api/campaigns/{campaign['id']}/start/")
    raters = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "simulate_raters",
            *("--campaign", str(campaign["id"]), "--raters", str(sizes.raters)),
            *("--seconds", str(sizes.rating_seconds), "--seed", str(seed)),
            *("--base-url", site, "--patience", "5", "--quality-timeout", "300", "--json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if raters.returncode != 0:
        raise LoopError(f"simulate_raters on {name}: {raters.stderr[-1500:]}")
    report = json.loads(raters.stdout)
    progress = api.get(f"/api/campaigns/{campaign['id']}/progress/")
    return {"id": campaign["id"], "judgments": report["judgments"], "progress": progress}


def stage_rate(
    api: Client, sizes: Sizes, stickers: list[dict], prompts: list, site: str
) -> dict[str, dict]:
    """The alignment campaign over every sticker; the style campaign over the stickers of the
    ``style_subjects`` most frequent subjects of the held-in prompts (narrow content)."""
    counts: dict[str, int] = {}
    for prompt in prompts:
        counts[prompt.subject] = counts.get(prompt.subject, 0) + 1
    narrow = sorted(counts, key=lambda s: (-counts[s], s))[: sizes.style_subjects]
    narrow_texts = {p.text for p in prompts if p.subject in narrow}
    alignment = run_campaign(
        api,
        name="loop: alignment",
        kind="single",
        preset="alignment",
        groups=[[c["id"]] for c in stickers],
        sizes=sizes,
        seed=101,
        site=site,
    )
    style = run_campaign(
        api,
        name="loop: style",
        kind="single",
        preset="style",
        groups=[[c["id"]] for c in stickers if c["raw_prompt"] in narrow_texts],
        sizes=sizes,
        seed=102,
        site=site,
    )
    style["subjects"] = narrow
    return {"alignment": alignment, "style": style}


def curate(api: Client, *, name: str, purpose: str, campaign: int, conditions: list) -> dict:
    """A dataset rule and its first version, built (a draft: ``publish_into`` publishes it)."""
    rule = api.post(
        "/api/dataset-rules/create/",
        {"name": name, "purpose": purpose, "campaigns": [campaign], "conditions": conditions},
    )
    built = api.post(f"/api/dataset-rules/{rule['id']}/build/")
    return {"rule": rule["id"], **built["version"]}


def stage_curate(api: Client, campaigns: dict[str, dict]) -> dict[str, dict]:
    return {
        "alignment": curate(
            api,
            name="loop: Alignment set",
            purpose="alignment",
            campaign=campaigns["alignment"]["id"],
            conditions=[{"question": ALIGNMENT_QUESTION, "labels": [True]}],
        ),
        "style": curate(
            api,
            name="loop: Style set",
            purpose="style",
            campaign=campaigns["style"]["id"],
            conditions=[{"question": STYLE_QUESTION, "labels": [True]}],
        ),
    }


def declare(api: Client, name: str, stages: list[dict]) -> dict:
    """Declare a pipeline; the platform starts it at once."""
    return api.post("/api/pipelines/create/", {"name": name, "stages": stages})


def pipeline_get(api: Client, pipeline_id: int) -> dict:
    """A pipeline with its stages; raises if it failed (the message names the stage)."""
    pipeline = api.get(f"/api/pipelines/{pipeline_id}/")
    if pipeline["status"] == "failed":
        raise LoopError(f"pipeline {pipeline_id} ({pipeline['name']}) failed: {pipeline['error']}")
    return pipeline


def publish_into(api: Client, pipelines: list[dict], stage: str, version: dict) -> dict:
    """Publish a draft once the dataset stage ``stage`` of every pipeline waits for its rule's
    next publish (a version published earlier would not complete it); the published version.
    The publish moves each pipeline on through the platform's events and triggers."""
    for pipeline in pipelines:
        wait_for(
            f"pipeline {pipeline['id']}: stage {stage} waiting",
            lambda p=pipeline: pipeline_get(api, p["id"]),
            lambda p: next(s for s in p["stages"] if s["name"] == stage)["status"] == "waiting",
            timeout=300,
            interval=0.5,
        )
    published = api.post(f"/api/dataset-versions/{version['id']}/publish/")
    return {"rule": version["rule"], **published}


def training_stage(recipe: str, base: int, inputs: dict[str, str], params: dict) -> dict:
    return {
        "kind": "training",
        "recipe": recipe,
        "base_model_version": base,
        "inputs": inputs,
        "params": params,
        "evaluate": False,
    }


def stage_train(
    api: Client, sizes: Sizes, base: dict, drafts: dict
) -> tuple[dict[str, dict], dict[int, dict]]:
    """Per training seed, a pipeline: the two sets' dataset stages, then the four arms with equal
    steps, batch size and learning rate; the drafts published into them. Returns the published
    versions and ``{seed: pipeline}``; the ``train`` worker runs the jobs while the teachers
    animate."""
    arms = {
        "alignment": ("finetune", {"train": "alignment-set"}),
        "style": ("finetune", {"train": "style-set"}),
        "sequential": ("sequential", {"first": "alignment-set", "second": "style-set"}),
        "style_tailoring": ("style_tailoring", {"content": "alignment-set", "style": "style-set"}),
    }
    pipelines = {}
    for seed in sizes.training_seeds:
        params = {
            "seed": seed,
            "max_train_steps": sizes.steps,
            "train_batch_size": 4,
            "learning_rate": 1e-4,
            "validation_samples": 0,
            "checkpointing_steps": max(sizes.steps, 1),
        }
        pipelines[seed] = declare(
            api,
            f"loop: stickers, seed {seed}",
            [
                {
                    "name": "alignment-set",
                    "kind": "dataset",
                    "rule": drafts["alignment"]["rule"],
                    "role": "content",
                },
                {
                    "name": "style-set",
                    "kind": "dataset",
                    "rule": drafts["style"]["rule"],
                    "role": "style",
                },
            ]
            + [
                {"name": arm, **training_stage(recipe, base["id"], inputs, params)}
                for arm, (recipe, inputs) in arms.items()
            ],
        )
    declared = list(pipelines.values())
    versions = {
        "alignment": publish_into(api, declared, "alignment-set", drafts["alignment"]),
        "style": publish_into(api, declared, "style-set", drafts["style"]),
    }
    return versions, pipelines


def pipelines_ended(api: Client, pipelines: dict) -> dict:
    """Wait for every pipeline (``{key: pipeline}``) to succeed; ``{key: {stage name: job}}``
    for their training stages, raising if one failed."""
    ended = {}
    for key, pipeline in pipelines.items():
        done = wait_for(
            f"pipeline {pipeline['id']} ({pipeline['name']})",
            lambda p=pipeline: pipeline_get(api, p["id"]),
            lambda p: p["status"] == "succeeded",
            timeout=3600,
        )
        ended[key] = {
            stage["name"]: api.get(f"/api/training-jobs/{stage['job']}/")
            for stage in done["stages"]
            if stage["kind"] == "training"
        }
    return ended


def stage_teachers(
    api: Client, sizes: Sizes, stickers: list[dict], teachers: list[dict], site: str
) -> tuple[dict, dict]:
    """The teachers animate held-in stickers; a best-of-N campaign of their animations of each
    sticker, worked by simulated raters."""
    from generation.world import factors

    sources = stickers[: sizes.teacher_sources]
    words = [motion.words[0] for motion in factors.MOTIONS]
    batch = api.post(
        "/api/batches/create/",
        {
            "name": "loop: teachers on held-in stickers",
            "kind": "animation",
            "model_versions": [t["id"] for t in teachers],
            "sources": [c["id"] for c in sources],
            "seeds": [0],
            "motion_prompts": [
                {"source": c["id"], "motion_prompt": words[i % len(words)]}
                for i, c in enumerate(sources)
            ],
        },
    )
    animations = batch_done(api, batch["id"], "animate: teachers", timeout=1800)
    by_source: dict[int, list[int]] = {}
    for animation in animations:
        by_source.setdefault(animation["source"], []).append(animation["id"])
    groups = [ids for ids in by_source.values() if len(ids) == len(teachers)]
    campaign = run_campaign(
        api,
        name="loop: teachers, best of N",
        kind="best_of_n",
        preset="teacher_selection",
        groups=groups,
        sizes=sizes,
        seed=103,
        site=site,
    )
    return {"batch": batch["id"], "animations": len(animations)}, campaign


def stage_distill(
    api: Client, sizes: Sizes, campaign: dict, student: dict, teacher_steps: int
) -> tuple[dict, dict]:
    """A teacher-selection version from the picks, published into a pipeline (ensemble →
    student) that runs ``distill_student`` per training seed (stage ``student-<seed>``) at half
    the teachers' inference steps. Returns the published version and the pipeline."""
    draft = curate(
        api,
        name="loop: teacher selection from picks",
        purpose="teacher_selection",
        campaign=campaign["id"],
        conditions=[{"question": "best", "min_agreement": 0.5}],
    )
    pipeline = declare(
        api,
        "loop: student",
        [
            {
                "name": "teacher-selection",
                "kind": "dataset",
                "rule": draft["rule"],
                "role": "teacher_selection",
            }
        ]
        + [
            {
                "name": f"student-{seed}",
                **training_stage(
                    "distill_student",
                    student["id"],
                    {"teacher_selection": "teacher-selection"},
                    {
                        "seed": seed,
                        "max_train_steps": sizes.student_steps,
                        "train_batch_size": 2,
                        "inference_steps": teacher_steps // 2,
                        "validation_samples": 0,
                        "checkpointing_steps": max(sizes.student_steps, 1),
                    },
                ),
            }
            for seed in sizes.training_seeds
        ],
    )
    return publish_into(api, [pipeline], "teacher-selection", draft), pipeline


# Evaluation --------------------------------------------------------------------------------------


def import_heldout(api: Client, sizes: Sizes) -> dict:
    """The held-out prompt set: imported only once every image job has ended."""
    from generation.world import sampling

    texts = list(dict.fromkeys(p.text for p in sampling.prompts("heldout", sizes.heldout_prompts)))
    return api.post(
        "/api/prompt-sets/import/",
        {"name": "loop: held-out prompts", "content": "\n".join(texts), "is_held_out": True},
    )["prompt_set"]


def experiment_run(api: Client, body: dict) -> dict:
    created = api.post("/api/experiments/create/", body)
    return wait_for(
        f"evaluate: experiment {created['id']}",
        lambda: api.get(f"/api/experiments/{created['id']}/"),
        lambda e: e["status"] in ("rating", "failed"),
        timeout=3600,
        interval=3.0,
    )


def oracle_pass_rates(api: Client, judge, batch: int, criteria: tuple[str, ...]) -> dict:
    """Per criterion, the share of the batch's candidates the oracle passes, and their count."""
    candidates = api.all("/api/candidates/", batch=batch)
    passes = dict.fromkeys(criteria, 0)
    for candidate in candidates:
        shown = {
            "kind": candidate["kind"],
            "url": candidate["file_url"],
            "frames": [],
            "position": 0,
            "prompt": candidate["raw_prompt"],
            "motion_prompt": candidate["motion_prompt"],
        }
        seen = judge.see_item({"candidates": [shown]}, api.media)[0]
        for criterion in criteria:
            passes[criterion] += bool(seen.holds[criterion])
    n = len(candidates)
    return {c: (passes[c] / n if n else 0.0) for c in criteria} | {"n": n}


def score_and_compute(
    api: Client, experiment: dict, judge, axes: dict[str, str]
) -> tuple[dict, dict]:
    """Oracle pass rates per arm posted as ``oracle`` scores; then the platform's results.
    ``axes``: experiment axis → oracle criterion. Returns (oracle per arm label, platform
    results per arm label and axis)."""
    from training_bridge.experiments.metrics import wilson_interval

    oracle, scores = {}, []
    for arm in experiment["arms"]:
        rates = oracle_pass_rates(api, judge, arm["batch"], tuple(axes.values()))
        oracle[arm["label"]] = rates
        for axis, criterion in axes.items():
            # The rate is passes / n, so rounding recovers the count exactly.
            low, high = wilson_interval(round(rates[criterion] * rates["n"]), rates["n"])
            scores.append(
                {
                    "arm": arm["id"],
                    "axis": axis,
                    "source": "oracle",
                    "value": rates[criterion],
                    "low": low,
                    "high": high,
                    "n": rates["n"],
                    "method": "oracle pass rate",
                }
            )
    api.post(f"/api/experiments/{experiment['id']}/scores/", {"scores": scores})
    results = api.post(f"/api/experiments/{experiment['id']}/results/compute/")
    platform: dict[str, dict[str, float]] = {}
    for row in results["rows"]:
        if row.get("source") == "platform":
            platform.setdefault(row["arm"], {})[row["axis"]] = row["value"]
    return oracle, platform


def stage_evaluate_images(
    api: Client, sizes: Sizes, base: dict, trained: dict[int, dict], judge
) -> tuple[dict, list[dict]]:
    prompt_set = import_heldout(api, sizes)
    figures: dict[int, dict] = {}
    experiments = []
    for seed, jobs in trained.items():
        arms = [
            {"model_version": base["id"], "label": "base", "is_base": True},
            {"model_version": base["id"], "label": "prompt-engineered base", "template": TEMPLATE},
        ] + [
            {"model_version": jobs[arm]["output_model_version"], "label": arm} for arm in IMAGE_ARMS
        ]
        experiment = experiment_run(
            api,
            {
                "name": f"loop: stickers, training seed {seed}",
                "arms": arms,
                "prompt_set": prompt_set["id"],
                "seeds": list(sizes.heldout_seeds),
                "overlap": 1,
            },
        )
        if experiment["status"] != "rating":
            raise LoopError(f"evaluate: experiment {experiment['id']}: {experiment['error']}")
        oracle, platform = score_and_compute(
            api, experiment, judge, {"alignment": "alignment", "style": "style"}
        )
        figures[seed] = {label: oracle[label] | platform.get(label, {}) for label in oracle}
        experiments.append(experiment)
    return figures, experiments


def stage_evaluate_animations(
    api: Client, sizes: Sizes, teachers: list[dict], students: dict[int, dict], sources, judge
) -> tuple[dict, dict]:
    arms = [
        {"model_version": teachers[0]["id"], "label": teachers[0]["name"], "is_base": True},
        {"model_version": teachers[1]["id"], "label": teachers[1]["name"]},
    ] + [
        {"model_version": job["output_model_version"], "label": f"student seed {seed}"}
        for seed, job in students.items()
    ]
    experiment = experiment_run(
        api,
        {
            "name": "loop: student against the teachers",
            "arms": arms,
            "sources": [c["id"] for c in sources[: sizes.animation_sources]],
            "seeds": [0],
            "overlap": 1,
        },
    )
    if experiment["status"] != "rating":
        raise LoopError(f"evaluate: experiment {experiment['id']}: {experiment['error']}")
    oracle, platform = score_and_compute(api, experiment, judge, {"motion": "motion"})
    return {label: oracle[label] | platform.get(label, {}) for label in oracle}, experiment


# Figures -----------------------------------------------------------------------------------------


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and spread (max - min) over seeds."""
    return statistics.fmean(values), (max(values) - min(values)) if values else 0.0


def summarise(images: dict[int, dict], animations: dict, teacher_steps: int, student_steps: int):
    labels = ["base", "prompt-engineered base", *IMAGE_ARMS]
    axes = ("alignment", "style", "diversity", "latency_ms")
    table: dict[str, dict[str, dict[str, float]]] = {}
    for label in labels:
        table[label] = {}
        for axis in axes:
            values = [images[s][label].get(axis) for s in images]
            values = [v for v in values if v is not None]
            if values:
                mean, spread = mean_spread(values)
                table[label][axis] = {
                    "mean": round(mean, 4),
                    "spread": round(spread, 4),
                    "low": round(min(values), 4),
                    "high": round(max(values), 4),
                }

    def m(label, axis):
        return table[label].get(axis, {}).get("mean", float("nan"))

    def sp(label, axis):
        return table[label].get(axis, {}).get("spread", 0.0)

    # The axes each arm was trained for: its set's, and both for the arms trained on both sets.
    trained_for = {
        "alignment": ("alignment",),
        "style": ("style",),
        "sequential": ("alignment", "style"),
        "style_tailoring": ("alignment", "style"),
    }
    beats = {
        f"{arm}_beats_base_on_{axis}": m(arm, axis) - m("base", axis)
        > max(sp(arm, axis), sp("base", axis))
        for arm, axes in trained_for.items()
        for axis in axes
    }
    st, seq = "style_tailoring", "sequential"
    targets = beats | {
        "st_alignment_ge_sequential_plus_0.05": m(st, "alignment") >= m(seq, "alignment") + 0.05,
        "st_style_within_0.02_of_sequential": m(st, "style") >= m(seq, "style") - 0.02,
        "st_both_above_base": m(st, "alignment") > m("base", "alignment")
        and m(st, "style") > m("base", "style"),
        "st_diversity_not_below_base_by_0.05": m(st, "diversity") >= m("base", "diversity") - 0.05,
    }
    students = [v for k, v in animations.items() if k.startswith("student")]
    teachers = {k: v for k, v in animations.items() if not k.startswith("student")}
    student_motion, student_spread = mean_spread([s["motion"] for s in students])
    best_teacher = max(t["motion"] for t in teachers.values())
    targets |= {
        "student_motion_ge_best_teacher": student_motion >= best_teacher,
        "student_steps_le_half": student_steps * 2 <= teacher_steps,
    }
    anim = {
        label: {
            "motion": round(v["motion"], 4),
            "motion_low": round(v["motion"], 4),
            "motion_high": round(v["motion"], 4),
            "latency_ms": v.get("latency_ms"),
        }
        for label, v in teachers.items()
    } | {
        "student": {
            "motion": round(student_motion, 4),
            "motion_spread": round(student_spread, 4),
            "motion_low": round(min(s["motion"] for s in students), 4),
            "motion_high": round(max(s["motion"] for s in students), 4),
            "latency_ms": round(statistics.fmean(s.get("latency_ms") or 0 for s in students), 1),
            "steps": student_steps,
        }
    }
    return table, anim, targets


def print_table(table: dict, anim: dict, targets: dict) -> None:
    print(f"{'arm':<24}{'alignment':>18}{'style':>18}{'diversity':>18}{'latency ms':>14}")
    for label, axes in table.items():
        cells = []
        for axis in ("alignment", "style", "diversity"):
            f = axes.get(axis)
            cells.append(f"{f['mean']:.3f} ± {f['spread']:.3f}" if f else "-")
        latency = axes.get("latency_ms", {}).get("mean")
        print(
            f"{label:<24}{cells[0]:>18}{cells[1]:>18}{cells[2]:>18}"
            f"{(f'{latency:.1f}' if latency is not None else '-'):>14}"
        )
    print()
    print(f"{'animation model':<24}{'motion pass':>18}{'latency ms / 8 frames':>24}")
    for label, f in anim.items():
        motion = f"{f['motion']:.3f}" + (
            f" ± {f['motion_spread']:.3f}" if "motion_spread" in f else ""
        )
        latency = f.get("latency_ms")
        print(f"{label:<24}{motion:>18}{(f'{latency:.1f}' if latency else '-'):>24}")
    print()
    for name, held in targets.items():
        print(f"{'yes' if held else 'NO ':<4} {name}")


def save_plot(table: dict, anim: dict, out: Path) -> Path:
    """``loop.svg``: per axis, each arm's mean over training seeds as a dot and the seeds'
    range as its bar, drawn by the platform's own interval chart (the experiment pages')."""
    import re

    from annotation.quality.svg import interval_chart

    charts = []
    for axis in ("alignment", "style", "diversity"):
        rows = []
        for label, axes in table.items():
            figure = axes.get(axis)
            if figure is not None:
                low, high = figure["low"], figure["high"]
                rows.append((label, figure["mean"], low, high))
        charts.append(
            interval_chart(rows, title=f"Stickers, {axis} (held-out prompts)", domain=(0.0, 1.0))
        )
    charts.append(
        interval_chart(
            [(label, f["motion"], f["motion_low"], f["motion_high"]) for label, f in anim.items()],
            title="Animations, oracle motion pass rate",
            domain=(0.0, 1.0),
        )
    )
    body, y, width = [], 0, 0
    for chart in charts:
        w, h = (int(v) for v in re.search(r'width="(\d+)" height="(\d+)"', chart).groups())
        body.append(
            f'<g transform="translate(0,{y + 18})"><text y="-4" font-size="12" '
            f'font-family="system-ui, sans-serif">{chart.split("<title>")[1].split("</title>")[0]}'
            f"</text>{chart}</g>"
        )
        y, width = y + h + 26, max(width, w)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "loop.svg"
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
        f'viewBox="0 0 {width} {y}">{"".join(body)}</svg>\n',
        encoding="utf-8",
    )
    return path


# Processes ---------------------------------------------------------------------------------------


def start_site(env: dict, port: int, log: Path) -> subprocess.Popen:
    return common_start_site(
        env, port, log, *("--workers", "3", "--worker-class", "sync", "--timeout", "300")
    )


def operator_token() -> str:
    """The one account the driver works as, holding the curator and engineer roles."""
    from stickerloop.services import token_issue, user_create_with_roles

    user = user_create_with_roles(
        username="loop-operator", password=None, roles=["curator", "ml_engineer"]
    )
    return token_issue(user=user).key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI (< 5 minutes)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "loop")
    args = parser.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    # A SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C, so the processes below stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("loop: terminated"))
    started = time.perf_counter()
    timings: dict[str, float] = {}

    env = setup_django("bench_loop")
    work = Path(tempfile.mkdtemp(prefix="stickerloop-loop-"))
    env |= {
        "STICKERLOOP_MODELS_DIR": str(work / "models"),
        "STICKERLOOP_TRAINING_DIR": str(work / "training"),
        "STICKERLOOP_TRAINING_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    os.environ.update(env)
    subprocess.run(
        [sys.executable, "manage.py", "build_default_models", "--root", str(work / "models")],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    from django.db import connection

    token = operator_token()
    connection.close()
    port = free_port()
    site_url = f"http://127.0.0.1:{port}"
    site = start_site(env, port, work / "gunicorn.log")
    default_worker = start_worker("default", env, work / "worker-default.log")
    # Generation and training in workers of their own: the teachers animate while the sticker
    # arms train.
    gpu_worker = start_worker("gpu", env, work / "worker-gpu.log")
    train_worker = start_worker("train", env, work / "worker-train.log")
    ran: dict[str, bool] = {}
    try:

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(up, timeout=60, interval=0.2)
        api = Client(site_url, token)
        models = model_versions(api)
        base = models["sticker-base"]
        teachers = [models["anim-teacher-a"], models["anim-teacher-b"]]
        student = models["anim-student"]
        teacher_steps = int(teachers[0]["default_params"].get("num_inference_steps", 12))

        def timed(name, fn, *a):
            tick = time.perf_counter()
            result = fn(*a)
            timings[name] = round(time.perf_counter() - tick, 1)
            ran[name] = True
            print(f"[loop] {name}: {timings[name]} s", file=sys.stderr, flush=True)
            return result

        stickers, prompts = timed("generate", stage_generate, api, sizes, base)
        campaigns = timed("rate", stage_rate, api, sizes, stickers, prompts, site_url)
        drafts = timed("curate", stage_curate, api, campaigns)
        versions, pipelines = timed("train", stage_train, api, sizes, base, drafts)
        anim_batch, bon = timed(
            "teachers", stage_teachers, api, sizes, stickers, teachers, site_url
        )
        selection, student_pipeline = timed(
            "distill", stage_distill, api, sizes, bon, student, teacher_steps
        )
        ended = timed("jobs", pipelines_ended, api, pipelines | {"student": student_pipeline})
        trained = {seed: ended[seed] for seed in sizes.training_seeds}
        students = {seed: ended["student"][f"student-{seed}"] for seed in sizes.training_seeds}
        # Evaluation starts only here: the oracle is loaded and the held-out prompts imported
        # after every training and curation path (every pipeline) has ended.
        from generation.world.oracle import Oracle
        from simulation.judge import Judge

        judge = Judge(Oracle.load())
        images, experiments = timed(
            "evaluate_images", stage_evaluate_images, api, sizes, base, trained, judge
        )
        # One sticker per held-out prompt (the base arm's first seed), as the animation sources.
        base_stickers = api.all("/api/candidates/", batch=experiments[0]["arms"][0]["batch"])
        heldout_stickers = list(
            {c["raw_prompt"]: c for c in sorted(base_stickers, key=lambda c: -c["seed"])}.values()
        )
        animations, anim_experiment = timed(
            "evaluate_animations",
            stage_evaluate_animations,
            api,
            sizes,
            teachers,
            students,
            heldout_stickers,
            judge,
        )
    finally:
        stop_worker(train_worker)
        stop_worker(gpu_worker)
        stop_worker(default_worker)
        stop_worker(site)

    student_steps = teacher_steps // 2
    table, anim, targets = summarise(images, animations, teacher_steps, student_steps)
    print_table(table, anim, targets)
    plot = save_plot(table, anim, args.out)
    # Every arm of every experiment, with an oracle figure on each of its axes.
    image_labels = {"base", "prompt-engineered base", *IMAGE_ARMS}
    missing = sorted(
        f"seed {seed}: {label}"
        for seed in sizes.training_seeds
        for label in image_labels
        if not {"alignment", "style"} <= set(images.get(seed, {}).get(label, {}))
    ) + sorted(
        label
        for label in [t["name"] for t in teachers]
        + [f"student seed {seed}" for seed in sizes.training_seeds]
        if "motion" not in animations.get(label, {})
    )
    figures = {
        "bench": "loop",
        "quick": args.quick,
        "sizes": vars(sizes) | {"heldin_seeds": list(sizes.heldin_seeds)},
        "stages": ran,
        "stage_seconds": timings,
        "stickers": len(stickers),
        "judgments": {k: v["judgments"] for k, v in campaigns.items()},
        "style_subjects": campaigns["style"]["subjects"],
        "dataset_versions": {
            k: {"id": v["id"], "entries": v.get("entry_count")} for k, v in versions.items()
        }
        | {"teacher_selection": {"id": selection["id"], "entries": selection.get("entry_count")}},
        "teacher_animations": anim_batch["animations"],
        "experiments": [e["id"] for e in experiments] + [anim_experiment["id"]],
        "images": table,
        "animations": anim,
        "targets": targets,
        "plot": str(plot),
        "seconds": round(time.perf_counter() - started, 1),
    }
    emit(figures)
    stages = ("generate", "rate", "curate", "train", "teachers", "distill", "jobs")
    stages += ("evaluate_images",)
    if missing or not all(ran.get(s) for s in stages + ("evaluate_animations",)):
        sys.exit(f"loop: not every stage ran or arm was evaluated (missing arms: {missing})")


if __name__ == "__main__":
    main()
