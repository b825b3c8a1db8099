"""The array Dawid–Skene (``annotation/quality/dawid_skene.py``) against crowd-kit's, fit for fit.

Same posteriors, priors, error rates and iteration count, on simulated raters (always) and on
the published data sets the figure tests check (where ``../shared/crowd-data`` is present).
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene

from annotation.quality import crowd_formats
from annotation.quality.aggregation import Responses, dawid_skene
from annotation.quality.dawid_skene import fit


def crowdkit_fit(task, worker, codes):
    frame = pd.DataFrame({"task": task, "worker": worker, "label": codes})
    model = DawidSkene(n_iter=100, tol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probas = model.fit_predict_proba(frame)
    return model, probas


def assert_same_fit(task, worker, codes):
    n_tasks, n_workers = task.max() + 1, worker.max() + 1
    ours = fit(task, worker, codes, n_tasks=n_tasks, n_workers=n_workers)
    model, probas = crowdkit_fit(task, worker, codes)

    assert ours.iterations == len(model.loss_history_)
    assert ours.labels.tolist() == sorted(probas.columns.tolist())
    theirs = probas.sort_index()[ours.labels.tolist()].to_numpy()
    assert np.abs(ours.posteriors - theirs).max() < 1e-9
    assert np.abs(ours.priors - model.priors_[ours.labels].to_numpy()).max() < 1e-12
    for true_index, true_label in enumerate(ours.labels):
        for answer_index, answer in enumerate(ours.labels):
            rates = model.errors_[true_label].xs(answer, level="label")
            workers = rates.index.to_numpy()
            assert (
                np.abs(ours.errors[workers, answer_index, true_index] - rates.to_numpy()).max()
                < 1e-9
            )
    return ours


def simulated(n_items=600, n_raters=30, k=3, seed=4):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_items)
    skill = rng.uniform(0.3, 0.95, n_raters)
    task = np.repeat(np.arange(n_items), 5)
    worker = np.concatenate([rng.choice(n_raters, 5, replace=False) for _ in range(n_items)])
    right = rng.random(len(task)) < skill[worker]
    codes = np.where(right, truth[task], rng.integers(0, k, len(task)))
    return task, worker, codes, truth


def test_matches_crowdkit_on_simulated_raters():
    task, worker, codes, truth = simulated()

    ours = assert_same_fit(task, worker, codes)

    assert ours.iterations > 1
    assert (ours.posteriors.argmax(axis=1) == truth).mean() > 0.9


def test_matches_crowdkit_when_a_label_is_never_answered():
    task, worker, codes, _ = simulated(n_items=200, k=2, seed=7)
    # Label codes 1 and 3 of four: the fit runs over the answered ones only, as crowd-kit's.
    codes = codes * 2 + 1

    ours = assert_same_fit(task, worker, codes)

    assert ours.labels.tolist() == [1, 3]


def test_consensus_table_spreads_posteriors_over_the_question_labels():
    task, worker, codes, _ = simulated(n_items=50, k=2, seed=9)
    responses = Responses(
        item_ids=task + 100, rater_ids=worker + 7, codes=codes * 2, labels=("a", "b", "c")
    )

    table = dawid_skene(responses)

    assert table.item_ids.tolist() == list(range(100, 150))
    assert table.posteriors.shape == (50, 3)
    assert table.posteriors[:, 1].tolist() == [0.0] * 50
    assert np.allclose(table.posteriors.sum(axis=1), 1.0)
    assert table.rater_ids.tolist() == sorted(set((worker + 7).tolist()))
    assert ((table.rater_reliability > 0) & (table.rater_reliability <= 1)).all()


@pytest.mark.parametrize(
    ("path", "truth", "fmt"),
    [
        ("snow2008/rte.standardized.tsv", None, "long"),
        ("bluebirds/labels.yaml", "bluebirds/gt.yaml", "cubam"),
        ("zheng2017/d_jn-product/answer.csv", "zheng2017/d_jn-product/truth.csv", "long"),
        ("zheng2017/d_sentiment/answer.csv", "zheng2017/d_sentiment/truth.csv", "long"),
    ],
)
def test_matches_crowdkit_on_published_data(crowd_data, path, truth, fmt):
    labels = crowd_formats.read_labels(
        crowd_data / path, fmt=fmt, truth_path=crowd_data / truth if truth else None
    )
    _, task = np.unique(labels.items, return_inverse=True)
    _, worker = np.unique(labels.workers, return_inverse=True)
    _, codes = np.unique(labels.answers, return_inverse=True)

    assert_same_fit(task, worker, codes)
