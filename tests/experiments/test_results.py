"""An experiment's figures, checked against values computed here independently: Wilson
intervals from scipy, Bradley–Terry win rates from their closed form for two sides (the
maximum-likelihood win probability is the win share, ties counting half), diversity from the
pictures' known pixels, and the seeded percentile bootstraps replayed with numpy."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from annotation.models import Item
from stickerloop.errors import ServiceConflict
from tests import factories
from tests.experiments.conftest import GREEN, RED, flat, half_red, item_keys
from training_bridge.experiments.models import Axis, ExperimentScore
from training_bridge.experiments.services.experiments import ArmSpec, experiment_create
from training_bridge.experiments.services.results import experiment_results_compute

pytestmark = pytest.mark.django_db

BASE, ARM = "sticker-a + template", "sticker-b"
# The base draws the same picture for both seeds of a prompt; sticker-b draws red then, per
# prompt, green (distance sqrt(0.5)), half red (0.5) and red again (0).
SECOND = {0: flat(GREEN), 1: half_red(), 2: flat(RED)}
DISTANCES = [math.sqrt(0.5), 0.5, 0.0]
ARM_MS = {0: 20.0, 1: 30.0, 2: 40.0}


def draw(label, key):
    position, seed = key
    if label == BASE:
        return flat(RED), 10.0
    return (flat(RED) if seed == 0 else SECOND[position]), ARM_MS[position]


# (prompt position, seed) -> the three raters' answers: aligned per arm, and the pair
# campaign's overall verdict from sticker-b's side.
ALIGNED = {
    BASE: {
        (0, 0): [True, True, True],
        (0, 1): [True, True, False],
        (1, 0): [False, False, True],
        (1, 1): [True, False, True],
        (2, 0): [True, False],  # two judgments that disagree: a tie, left out
        (2, 1): [False, False, False],
    },
    ARM: {
        (0, 0): [True, True, True],
        (0, 1): [True, True, True],
        (1, 0): [True, True, True],
        (1, 1): [True, True, True],
        (2, 0): [True, True, True],
        (2, 1): [False, False, True],
    },
}
OVERALL = {
    (0, 0): ["win", "win", "win"],
    (0, 1): ["win", "win", "tie"],
    (1, 0): ["win", "tie", "loss"],
    (1, 1): ["win", "win", "loss"],
    (2, 0): ["tie", "tie", "win"],
    (2, 1): ["loss", "loss", "tie"],
}
SHARE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def _wilson(k: int, n: int) -> tuple[float, float]:
    interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def _bootstrap_mean(values, seed: int, samples: int = 1000) -> tuple[float, float]:
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(samples, len(data)))].mean(axis=1)
    return tuple(np.percentile(means, [2.5, 97.5]))


def _bootstrap_win_share(shares: list[float], seed: int, samples: int = 200):
    """The percentile interval of the two-sided Bradley–Terry win probability over judgments
    resampled as ``annotation.quality.aggregation.bradley_terry`` draws them."""
    data = np.asarray(shares)
    rng = np.random.default_rng(seed)
    fits = []
    for _ in range(samples):
        weights = np.bincount(rng.integers(0, len(data), len(data)), minlength=len(data))
        fits.append(float(weights @ data) / len(data))
    return tuple(np.percentile(fits, [2.5, 97.5]))


def _rate(experiment, raters):
    """Answer the rating campaign (aligned, and style_pass: only the first prompt passes) and
    the pair campaign (overall, and alignment: all ties) as the tables above say."""
    for item_id, [(label, key)] in item_keys(experiment.rating_campaign).items():
        item = Item.objects.get(pk=item_id)
        for rater, aligned in zip(raters, ALIGNED[label][key], strict=False):
            factories.judge(item, rater, {"aligned": aligned, "style_pass": key[0] == 0})
    for item_id, shown in item_keys(experiment.pair_campaign).items():
        item = Item.objects.get(pk=item_id)
        (first, key), _ = shown
        for rater, verdict in zip(raters, OVERALL[key], strict=True):
            side = {"tie": "tie", "win": "left", "loss": "right"}[verdict]
            if first == BASE and side != "tie":
                side = {"left": "right", "right": "left"}[side]
            factories.judge(item, rater, {"overall": side, "alignment": "tie"})


def _scores(experiment) -> dict[tuple[str, str], ExperimentScore]:
    return {
        (s.arm.label, s.axis): s
        for s in ExperimentScore.objects.filter(arm__experiment=experiment).select_related("arm")
    }


def test_pass_rates_win_rates_diversity_and_latency_are_exact(image_experiment, raters):
    experiment = image_experiment(draw)
    _rate(experiment, raters)
    # when
    experiment_results_compute(experiment=experiment)
    scores = _scores(experiment)
    # then: pass rates, Wilson intervals (ties left out)
    for label, passed, decided, tied in [(BASE, 3, 5, 1), (ARM, 5, 6, 0)]:
        score = scores[(label, Axis.ALIGNMENT)]
        assert (score.value, score.n, score.method, score.source) == (
            passed / decided,
            decided,
            "wilson",
            "human",
        )
        assert (score.low, score.high) == pytest.approx(_wilson(passed, decided), abs=1e-12)
        assert score.details == {
            "question": "aligned",
            "consensus": "majority",
            "passed": passed,
            "items": decided,
            "ties": tied,
            "judgments": 17 if label == BASE else 18,
        }
        assert score.campaign == experiment.rating_campaign
        style = scores[(label, Axis.STYLE)]
        assert (style.value, style.n) == (2 / 6, 6)
        assert (style.low, style.high) == pytest.approx(_wilson(2, 6), abs=1e-12)
    # win rate of sticker-b against the base: 9 wins, 5 ties, 4 losses of 18
    win = scores[(ARM, Axis.WIN_OVERALL)]
    shares = [SHARE[OVERALL[key][index]] for (_, index), key in sorted(_pair_order(experiment))]
    assert win.value == pytest.approx((9 + 5 / 2) / 18, abs=1e-9)
    assert (win.low, win.high) == pytest.approx(
        _bootstrap_win_share(shares, seed=experiment.pk), abs=1e-8
    )
    assert (win.n, win.method, win.campaign) == (18, "bradley_terry", experiment.pair_campaign)
    assert win.details == {
        "question": "overall",
        "against": BASE,
        "wins": 9,
        "losses": 4,
        "ties": 5,
        "n_bootstrap": 200,
        "regularization": 0.0,
    }
    tie = scores[(ARM, Axis.WIN_ALIGNMENT)]
    assert (tie.value, tie.low, tie.high) == pytest.approx((0.5, 0.5, 0.5), abs=1e-9)
    assert (BASE, Axis.WIN_OVERALL) not in scores
    assert (ARM, Axis.WIN_STYLE) not in scores  # nobody answered it
    # diversity: identical samples give 0; sticker-b's prompts give the known distances
    assert (scores[(BASE, Axis.DIVERSITY)].value, scores[(BASE, Axis.DIVERSITY)].low) == (0.0, 0.0)
    diversity = scores[(ARM, Axis.DIVERSITY)]
    assert (diversity.value, diversity.n, diversity.source) == (
        pytest.approx(np.mean(DISTANCES), abs=1e-7),
        3,
        "platform",
    )
    assert (diversity.low, diversity.high) == pytest.approx(
        _bootstrap_mean(DISTANCES, seed=experiment.pk), abs=1e-7
    )
    # latency: the mean inference time per candidate
    assert (scores[(BASE, Axis.LATENCY_MS)].value, scores[(BASE, Axis.LATENCY_MS)].high) == (
        10.0,
        10.0,
    )
    latency = scores[(ARM, Axis.LATENCY_MS)]
    per_candidate = [ARM_MS[p] for p in (0, 1, 2) for _ in (0, 1)]
    assert (latency.value, latency.n) == (30.0, 6)
    assert (latency.low, latency.high) == pytest.approx(
        _bootstrap_mean(per_candidate, seed=experiment.pk), abs=1e-9
    )
    assert latency.details == {"devices": ["cpu"], "frames": [1], "steps": [4]}


def _pair_order(experiment):
    """The pair judgments as the results read them, by item then rater: ((item, rater index),
    key) for each."""
    rows = []
    for item_id, shown in item_keys(experiment.pair_campaign).items():
        key = shown[0][1]
        for index in range(3):
            rows.append(((item_id, index), key))
    return rows


def test_computing_again_replaces_the_platforms_scores_and_keeps_the_instruments(
    image_experiment, raters
):
    experiment = image_experiment(draw)
    arm = experiment.arms.get(label=ARM)
    ExperimentScore.objects.create(
        arm=arm, axis=Axis.ALIGNMENT, source="oracle", value=0.9, recorded_at=arm.batch.created_at
    )
    before = set(ExperimentScore.objects.values_list("pk", flat=True))
    experiment_results_compute(experiment=experiment)
    after = ExperimentScore.objects.all()
    assert sorted(after.values_list("arm__label", "axis", "source")) == [
        (BASE, Axis.DIVERSITY, "platform"),
        (BASE, Axis.LATENCY_MS, "platform"),
        (ARM, Axis.ALIGNMENT, "oracle"),
        (ARM, Axis.DIVERSITY, "platform"),
        (ARM, Axis.LATENCY_MS, "platform"),
    ]
    kept = after.get(source="oracle").pk
    assert kept in before and not (before - {kept}) & set(after.values_list("pk", flat=True))


def test_results_wait_for_the_arms_to_generate(engineer):
    experiment = experiment_create(
        name="still generating",
        arms=[
            ArmSpec(model_version=factories.model_version("m1")),
            ArmSpec(model_version=factories.model_version("m2")),
        ],
        prompt_set=factories.prompt_set(["a cat"], held_out=True),
        seeds=[0, 1],
        created_by=engineer,
    )
    with pytest.raises(ServiceConflict) as error:
        experiment_results_compute(experiment=experiment)
    assert str(error.value) == (
        f"Experiment {experiment.pk} is generating with every arm: its results come once every "
        "arm has generated and its campaigns are open."
    )
    assert not ExperimentScore.objects.exists()
