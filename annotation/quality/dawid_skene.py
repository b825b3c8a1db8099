"""Dawid–Skene EM over flat arrays: crowd-kit 1.4.2's algorithm without its pandas joins.

crowd-kit's ``DawidSkene`` joins a pandas frame of every judgment with the error matrices on each
E and M step. At 10,000,000 judgments that costs minutes per fit and several copies of the frame
in memory. Here each step is a handful of ``np.bincount`` calls over the judgment arrays, so a fit
holds the inputs, the per-item posteriors and a few judgment-length temporaries.

It is the same algorithm, step for step: majority-vote initialisation, the same floor of 1e-10
on error rates (only on answers a rater gave), priors and posteriors, the evidence lower bound
per judgment as the stopping rule (stop when it gains less than ``tol``), and the final
posteriors and priors floored as crowd-kit leaves them. Only the order of floating-point sums
differs; ``tests/quality/test_dawid_skene.py`` compares the two on the published data sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-10


@dataclass(frozen=True)
class Fit:
    """A fitted model. Label axes run over ``labels``, the answer codes that occur in the data."""

    labels: np.ndarray
    posteriors: np.ndarray  # (items, labels)
    priors: np.ndarray  # (labels,)
    errors: np.ndarray  # (raters, answered label, true label); 0 where a rater never answered
    iterations: int

    def reliability(self) -> np.ndarray:
        """Per rater, the probability of answering correctly under the fitted priors."""
        diagonal = np.diagonal(self.errors, axis1=1, axis2=2)
        return diagonal @ self.priors


def fit(
    task: np.ndarray,
    worker: np.ndarray,
    codes: np.ndarray,
    *,
    n_tasks: int,
    n_workers: int,
    n_iter: int = 100,
    tol: float = 1e-5,
) -> Fit:
    """Fit on judgments (``task[j]``, ``worker[j]``, ``codes[j]``), indices from 0."""
    labels, label = np.unique(codes, return_inverse=True)
    k = len(labels)
    pair = worker.astype(np.int64) * k + label
    answered = np.bincount(pair, minlength=n_workers * k) > 0

    counts = np.bincount(task * k + label, minlength=n_tasks * k).reshape(n_tasks, k)
    posteriors = counts / counts.sum(axis=1, keepdims=True)
    priors = posteriors.mean(axis=0)
    errors = _m_step(posteriors, task, pair, answered, n_workers, k)
    loss = -np.inf
    iterations = 0
    for _ in range(n_iter):
        posteriors = _e_step(priors, errors, task, pair, n_tasks, k)
        priors = posteriors.mean(axis=0)
        errors = _m_step(posteriors, task, pair, answered, n_workers, k)
        priors = np.maximum(priors, EPS)
        new_loss = _lower_bound(posteriors, priors, errors, task, pair, k) / len(task)
        iterations += 1
        if new_loss - loss < tol:
            break
        loss = new_loss
    return Fit(labels, posteriors, priors, errors.reshape(n_workers, k, k), iterations)


def _m_step(posteriors, task, pair, answered, n_workers, k) -> np.ndarray:
    """(raters × answers, true labels): P(answer | true label) per rater."""
    errors = np.stack(
        [np.bincount(pair, weights=posteriors[task, c], minlength=n_workers * k) for c in range(k)],
        axis=1,
    )
    errors[answered] = np.maximum(errors[answered], EPS)
    per_rater = errors.reshape(n_workers, k, k)
    per_rater /= per_rater.sum(axis=1, keepdims=True)
    return errors


def _e_step(priors, errors, task, pair, n_tasks, k) -> np.ndarray:
    with np.errstate(divide="ignore"):
        log_errors = np.log2(errors)
    log_likelihood = np.stack(
        [np.bincount(task, weights=log_errors[pair, c], minlength=n_tasks) for c in range(k)],
        axis=1,
    )
    log_likelihood += np.log2(np.maximum(priors, EPS))
    # Shifted so each item's largest log-likelihood is 0 before exponentiating, as crowd-kit does.
    likelihood = np.exp2(log_likelihood - log_likelihood.max(axis=1, keepdims=True))
    return likelihood / likelihood.sum(axis=1, keepdims=True)


def _lower_bound(posteriors, priors, errors, task, pair, k) -> float:
    """The evidence lower bound. Floors ``posteriors`` in place before their entropy, as
    crowd-kit does, so the posteriors a fit returns are floored too."""
    with np.errstate(divide="ignore"):
        log_errors = np.log(errors)
    joint = sum(
        float(posteriors[task, c] @ (log_errors[pair, c] + np.log(priors[c]))) for c in range(k)
    )
    np.maximum(posteriors, EPS, out=posteriors)
    entropy = -float((np.log(posteriors) * posteriors).sum())
    return joint + entropy
