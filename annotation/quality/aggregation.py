"""Label aggregation, agreement and pairwise ranking: thin adapters over well-kept libraries.

Django-free. Judgments arrive as compact numpy arrays (``Responses``) so a million of them fit in a
few tens of megabytes; results leave as arrays (``ConsensusTable``) that the storage layer copies
into PostgreSQL in bulk, or as ``ItemConsensus`` values for callers that want one item at a time.

Algorithms come from libraries: crowd-kit 1.4.2 (GLAD, MACE; Dawid–Skene is its algorithm
re-done on arrays in ``dawid_skene.py``, for 10,000,000 judgments), krippendorff 0.9.0
(alpha) and choix 0.4.1 (Bradley–Terry). What is ours: majority vote that reports ties as ties
(crowd-kit's breaks them arbitrarily), per-item mean and median, Fleiss' kappa (a few lines; no
library here provides it without pulling statsmodels), the bootstrap, and the bookkeeping.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAJORITY = "majority"
MEAN = "mean"
MEDIAN = "median"
DAWID_SKENE = "dawid_skene"
GLAD = "glad"
MACE = "mace"

CATEGORICAL_METHODS = (MAJORITY, DAWID_SKENE, GLAD, MACE)
SCALE_METHODS = (MEAN, MEDIAN)
ALL_METHODS = (MAJORITY, MEAN, MEDIAN, DAWID_SKENE, GLAD, MACE)

# Posteriors closer than this count as a tie: EM never lands exactly on a symmetric point, and a
# curator cannot act on a difference in the sixth decimal.
TIE_EPSILON = 1e-9


@dataclass(frozen=True)
class ItemConsensus:
    """The consensus of one item for one question under one method.

    ``label`` is None on a tie (``tied_labels`` then names the tied answers); ``confidence`` is the
    winning share of judgments for majority vote and the posterior probability of the label for
    the probabilistic models; ``mean`` and ``median`` are filled for scale (Likert) questions.
    """

    label: Any | None
    confidence: float
    n_judgments: int
    is_tie: bool
    mean: float | None = None
    median: float | None = None
    tied_labels: tuple = field(default=())


@dataclass(frozen=True)
class Responses:
    """The non-excluded answers to one question as parallel arrays, one entry per judgment.

    ``codes`` index ``labels`` (the question's options in schema order); ``values`` holds the
    numeric value of each answer for scale questions, else None.
    """

    item_ids: np.ndarray
    rater_ids: np.ndarray
    codes: np.ndarray
    labels: tuple
    values: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if len(self.rater_ids) != n or len(self.codes) != n:
            raise ValueError("item_ids, rater_ids and codes must have the same length")
        if self.values is not None and len(self.values) != n:
            raise ValueError("values must have one entry per judgment")
        if n and (self.codes.min() < 0 or self.codes.max() >= len(self.labels)):
            raise ValueError("codes must index labels")

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def k(self) -> int:
        return len(self.labels)


@dataclass
class ConsensusTable:
    """Per-item consensus as arrays, in ascending item id order.

    ``top`` marks, per item, the labels that share the best score (one for a clear winner, several
    on a tie); ``code`` is the winner's index into ``labels``, or -1 on a tie.
    """

    method: str
    labels: tuple
    item_ids: np.ndarray
    code: np.ndarray
    confidence: np.ndarray
    n_judgments: np.ndarray
    top: np.ndarray
    mean: np.ndarray | None = None
    median: np.ndarray | None = None
    posteriors: np.ndarray | None = None
    rater_ids: np.ndarray | None = None
    rater_reliability: np.ndarray | None = None
    iterations: int | None = None

    @property
    def is_tie(self) -> np.ndarray:
        return self.code < 0

    def __len__(self) -> int:
        return len(self.item_ids)

    def label_of(self, index: int) -> Any | None:
        code = int(self.code[index])
        return None if code < 0 else self.labels[code]

    def consensus(self, index: int) -> ItemConsensus:
        tie = bool(self.code[index] < 0)
        return ItemConsensus(
            label=self.label_of(index),
            confidence=float(self.confidence[index]),
            n_judgments=int(self.n_judgments[index]),
            is_tie=tie,
            mean=_float_or_none(self.mean, index),
            median=_float_or_none(self.median, index),
            tied_labels=tuple(self.labels[c] for c in np.flatnonzero(self.top[index]))
            if tie
            else (),
        )

    def as_dict(self) -> dict[int, ItemConsensus]:
        return {int(item): self.consensus(i) for i, item in enumerate(self.item_ids)}

    def lookup(self) -> ConsensusLookup:
        return ConsensusLookup(self)

    def accuracy(self, truth: dict[int, int]) -> float | None:
        """Accuracy against true label codes by item id; a tie among k labels that includes the
        truth counts 1/k, the expected accuracy of breaking the tie at random (the rule behind the
        published majority-vote figures of Snow et al. 2008 and Zhang et al. 2016)."""
        if not truth:
            return None
        index = {int(item): i for i, item in enumerate(self.item_ids)}
        rows = [(index[item], code) for item, code in truth.items() if item in index]
        if not rows:
            return None
        at = np.array([r for r, _ in rows])
        codes = np.array([c for _, c in rows])
        hits = self.top[at, codes] / self.top[at].sum(axis=1)
        return float(hits.mean())


class ConsensusLookup(Mapping):
    """A table's ``ItemConsensus`` by item id, each made when it is asked for.

    For a caller that reads many items once each: ``as_dict`` holds an ``ItemConsensus`` per
    item in a dict, 244 bytes an item (measured with tracemalloc), some 240 MB for a million
    items whose table's arrays take about 40 MB. A lookup is a binary search of the sorted
    item ids, and the value is made then."""

    def __init__(self, table: ConsensusTable):
        self._table = table
        self._ids = table.item_ids

    def __getitem__(self, item_id: int) -> ItemConsensus:
        at = int(self._ids.searchsorted(item_id))
        if at == len(self._ids) or self._ids[at] != item_id:
            raise KeyError(item_id)
        return self._table.consensus(at)

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids.tolist())

    def __len__(self) -> int:
        return len(self._ids)

    def as_dict(self) -> dict[int, ItemConsensus]:
        return self._table.as_dict()


def _float_or_none(array: np.ndarray | None, index: int) -> float | None:
    if array is None:
        return None
    value = float(array[index])
    return None if np.isnan(value) else value


# Grouping ----------------------------------------------------------------------------------------


def _item_index(responses: Responses) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique item ids and each judgment's position among them."""
    return np.unique(responses.item_ids, return_inverse=True)


def _count_votes(inverse: np.ndarray, codes: np.ndarray, n_items: int, k: int) -> np.ndarray:
    return np.bincount(inverse * k + codes, minlength=n_items * k).reshape(n_items, k)


def vote_counts(responses: Responses) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, counts) with counts[i, c] = judgments of item i answering label c."""
    items, inverse = _item_index(responses)
    return items, _count_votes(inverse, responses.codes, len(items), responses.k)


def _scale_stats(responses: Responses, inverse: np.ndarray, n_items: int):
    """Per-item mean and median of the numeric answers (NaN where a question has no scale)."""
    if responses.values is None:
        return None, None
    values = responses.values.astype(np.float64)
    n = np.bincount(inverse, minlength=n_items)
    mean = np.bincount(inverse, weights=values, minlength=n_items) / np.maximum(n, 1)
    order = np.lexsort((values, inverse))
    starts = np.concatenate(([0], np.cumsum(n)[:-1]))
    ordered = values[order]
    median = (ordered[starts + (n - 1) // 2] + ordered[starts + n // 2]) / 2
    mean[n == 0] = np.nan
    median[n == 0] = np.nan
    return mean, median


def _winner_codes(top: np.ndarray) -> np.ndarray:
    return np.where(top.sum(axis=1) == 1, top.argmax(axis=1), -1)


# Consensus ---------------------------------------------------------------------------------------


def majority_vote(responses: Responses) -> ConsensusTable:
    """Majority vote with ties reported as ties; confidence is the winning share of judgments."""
    items, inverse = _item_index(responses)
    k = responses.k
    counts = np.bincount(inverse * k + responses.codes, minlength=len(items) * k).reshape(-1, k)
    n = counts.sum(axis=1)
    best = counts.max(axis=1, initial=0)
    top = (counts == best[:, None]) & (best[:, None] > 0)
    mean, median = _scale_stats(responses, inverse, len(items))
    return ConsensusTable(
        method=MAJORITY,
        labels=responses.labels,
        item_ids=items,
        code=_winner_codes(top),
        confidence=best / np.maximum(n, 1),
        n_judgments=n,
        top=top,
        mean=mean,
        median=median,
    )


def scale_consensus(responses: Responses, *, method: str) -> ConsensusTable:
    """Mean or median of a scale question as the item's value.

    The label is the option nearest to the statistic (the lower one when exactly between two), so
    a mean of 3.4 on a 1–5 scale reads as 3. Confidence is one minus the mean absolute distance of
    the answers from the statistic, over half the scale's range: 1 when every rater gave the same
    answer, 0 when they sit at both ends.
    """
    if method not in SCALE_METHODS:
        raise ValueError(f"method must be one of {SCALE_METHODS}, not {method!r}")
    if responses.values is None:
        raise ValueError("mean and median need numeric answers")
    items, inverse = _item_index(responses)
    mean, median = _scale_stats(responses, inverse, len(items))
    stat = mean if method == MEAN else median
    scale = np.array([float(v) for v in responses.labels])
    nearest = np.abs(stat[:, None] - scale[None, :]).argmin(axis=1)
    top = np.zeros((len(items), responses.k), dtype=bool)
    top[np.arange(len(items)), nearest] = True
    n = np.bincount(inverse, minlength=len(items))
    spread = np.bincount(
        inverse, weights=np.abs(responses.values - stat[inverse]), minlength=len(items)
    ) / np.maximum(n, 1)
    half_range = max((scale.max() - scale.min()) / 2, 1e-12)
    return ConsensusTable(
        method=method,
        labels=responses.labels,
        item_ids=items,
        code=nearest,
        confidence=np.clip(1 - spread / half_range, 0.0, 1.0),
        n_judgments=n,
        top=top,
        mean=mean,
        median=median,
    )


@contextmanager
def _quiet_crowdkit():
    """crowd-kit 1.4.2 calls pandas APIs that pandas 3 deprecates (``inplace=``, ``copy=``);
    thousands of identical warnings per fit say nothing about our data."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(inplace|copy) keyword.*")
        yield


def _crowdkit_frame(responses: Responses):
    import pandas as pd

    items, inverse = _item_index(responses)
    raters, rater_inverse = np.unique(responses.rater_ids, return_inverse=True)
    frame = pd.DataFrame(
        {"task": inverse, "worker": rater_inverse, "label": responses.codes.astype(np.int64)}
    )
    return frame, items, inverse, raters


def _table_from_probas(
    *, responses: Responses, probas, items: np.ndarray, **rest
) -> ConsensusTable:
    """The table of a crowd-kit fit, whose ``probas`` frame is indexed by item position and
    label code."""
    posteriors = np.zeros((len(items), responses.k))
    columns = np.asarray(probas.columns, dtype=np.int64)
    rows = np.asarray(probas.index, dtype=np.int64)
    posteriors[np.ix_(rows, columns)] = probas.to_numpy(dtype=np.float64)
    return _table_from_posteriors(responses=responses, posteriors=posteriors, items=items, **rest)


def _table_from_posteriors(
    *,
    method: str,
    responses: Responses,
    posteriors: np.ndarray,
    items: np.ndarray,
    inverse: np.ndarray,
    raters: np.ndarray,
    reliability: np.ndarray,
    iterations: int | None,
) -> ConsensusTable:
    best = posteriors.max(axis=1)
    top = posteriors >= (best[:, None] - TIE_EPSILON)
    mean, median = _scale_stats(responses, inverse, len(items))
    return ConsensusTable(
        method=method,
        labels=responses.labels,
        item_ids=items,
        code=_winner_codes(top),
        confidence=best,
        n_judgments=np.bincount(inverse, minlength=len(items)),
        top=top,
        mean=mean,
        median=median,
        posteriors=posteriors,
        rater_ids=raters,
        rater_reliability=reliability,
        iterations=iterations,
    )


def dawid_skene(responses: Responses, *, n_iter: int = 100, tol: float = 1e-5) -> ConsensusTable:
    """Dawid–Skene EM, initialised by majority vote (crowd-kit's algorithm, on arrays: see
    ``dawid_skene.py``).

    Rater reliability is the probability a rater answers correctly under the fitted priors:
    sum over c of prior(c) · P(answer c | truth c).
    """
    from . import dawid_skene as ds

    items, inverse = _item_index(responses)
    raters, rater_inverse = np.unique(responses.rater_ids, return_inverse=True)
    fitted = ds.fit(
        inverse,
        rater_inverse,
        responses.codes.astype(np.int64),
        n_tasks=len(items),
        n_workers=len(raters),
        n_iter=n_iter,
        tol=tol,
    )
    posteriors = np.zeros((len(items), responses.k))
    posteriors[:, fitted.labels] = fitted.posteriors
    return _table_from_posteriors(
        method=DAWID_SKENE,
        responses=responses,
        posteriors=posteriors,
        items=items,
        inverse=inverse,
        raters=raters,
        reliability=fitted.reliability(),
        iterations=fitted.iterations,
    )


def glad(responses: Responses, *, n_iter: int = 100, tol: float = 1e-5) -> ConsensusTable:
    """GLAD (crowd-kit): per-rater ability alpha and per-item difficulty beta.

    Rater reliability is the logistic of alpha: the chance of a right answer on an item of
    average difficulty.
    """
    from crowdkit.aggregation import GLAD as CrowdkitGLAD

    frame, items, inverse, raters = _crowdkit_frame(responses)
    model = CrowdkitGLAD(n_iter=n_iter, tol=tol, silent=True)
    with _quiet_crowdkit():
        probas = model.fit_predict_proba(frame)
    alphas = model.alphas_
    reliability = np.zeros(len(raters))
    reliability[np.asarray(alphas.index, dtype=np.int64)] = 1 / (1 + np.exp(-alphas.to_numpy()))
    return _table_from_probas(
        method=GLAD,
        responses=responses,
        probas=probas,
        items=items,
        inverse=inverse,
        raters=raters,
        reliability=reliability,
        iterations=None,
    )


def mace(responses: Responses, *, n_iter: int = 50, n_restarts: int = 10, seed: int = 0):
    """MACE (crowd-kit): each rater is competent with some probability, else spams.

    Rater reliability is that competence. The seed is fixed so stored results are reproducible.
    """
    import pandas as pd
    from crowdkit.aggregation import MACE as CrowdkitMACE

    frame, items, inverse, raters = _crowdkit_frame(responses)
    model = CrowdkitMACE(n_iter=n_iter, n_restarts=n_restarts, random_state=seed, verbose=0)
    with _quiet_crowdkit():
        probas = model.fit_predict_proba(frame)
    # crowd-kit numbers raters in order of first appearance (pandas.factorize), not by id.
    _, appearance = pd.factorize(frame["worker"])
    reliability = np.zeros(len(raters))
    reliability[np.asarray(appearance, dtype=np.int64)] = model.spamming_[:, 1]
    return _table_from_probas(
        method=MACE,
        responses=responses,
        probas=probas,
        items=items,
        inverse=inverse,
        raters=raters,
        reliability=reliability,
        iterations=None,
    )


def consensus(responses: Responses, *, method: str) -> ConsensusTable:
    """Dispatch by method name; callers have already checked that the method fits the question."""
    if method == MAJORITY:
        return majority_vote(responses)
    if method in SCALE_METHODS:
        return scale_consensus(responses, method=method)
    if method == DAWID_SKENE:
        return dawid_skene(responses)
    if method == GLAD:
        return glad(responses)
    if method == MACE:
        return mace(responses)
    raise ValueError(f"unknown consensus method {method!r}")


# Agreement ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    alpha: float | None
    level: str
    alpha_interval: float | None
    fleiss_kappa: float | None
    fleiss_reason: str
    n_items: int
    n_judgments: int
    n_raters: int
    observed_agreement: float | None


def krippendorff_alpha(counts: np.ndarray, *, level: str, domain: Sequence | None = None):
    """Krippendorff's alpha from an items × values count matrix (krippendorff's ``value_counts``
    form: memory grows with items × values, not items × raters). None when undefined (fewer than
    two pairable values, or no variation at all)."""
    import krippendorff

    pairable = counts[counts.sum(axis=1) >= 2]
    if pairable.sum() < 2 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None
    kwargs = {"value_domain": list(domain)} if domain is not None else {}
    value = float(krippendorff.alpha(value_counts=pairable, level_of_measurement=level, **kwargs))
    return None if np.isnan(value) else value


def fleiss_kappa(counts: np.ndarray) -> tuple[float | None, str]:
    """Fleiss' kappa (Fleiss 1971) from an items × categories count matrix.

    Defined only when every item has the same number n ≥ 2 of ratings; otherwise (None, reason).
    """
    if counts.size == 0 or counts.shape[0] == 0:
        return None, "no items"
    per_item = counts.sum(axis=1)
    n = int(per_item[0])
    if not np.all(per_item == n):
        return None, "items have different numbers of judgments"
    if n < 2:
        return None, "fewer than two judgments per item"
    total = counts.shape[0] * n
    p_j = counts.sum(axis=0) / total
    p_i = ((counts * counts).sum(axis=1) - n) / (n * (n - 1))
    p_bar = p_i.mean()
    p_e = float((p_j * p_j).sum())
    if p_e >= 1:
        return None, "every judgment has the same answer"
    return float((p_bar - p_e) / (1 - p_e)), ""


def others_agreeing(responses: Responses) -> tuple[np.ndarray, np.ndarray]:
    """The one definition of agreement between raters that the quality figures share.

    Per judgment: the share of the *other* raters of the same item who gave the same answer
    (``(same answers - 1) / (judgments - 1)``), and whether it is defined (the item has at least
    two judgments). Averaged over an item's judgments it is the item's share of agreeing rater
    pairs; over items, "pairs agreeing" (``agreement``); over one rater's judgments, that
    rater's agreement with the others (``rater_agreement``). Where every item has the same
    number of judgments, the raters' figures weighted by their judgments average to the pairs
    figure exactly; two raters always get the pairs figure itself.
    """
    items, inverse = _item_index(responses)
    counts = _count_votes(inverse, responses.codes, len(items), responses.k)
    return _others_agreeing(counts, inverse, responses.codes)


def _others_agreeing(counts: np.ndarray, inverse: np.ndarray, codes: np.ndarray):
    n = counts.sum(axis=1)[inverse]
    same = counts[inverse, codes]
    shared = n >= 2
    share = np.zeros(len(codes), dtype=np.float64)
    share[shared] = (same[shared] - 1) / (n[shared] - 1)
    return share, shared


def agreement(responses: Responses, *, level: str, domain: Sequence | None = None) -> Agreement:
    """Alpha at the question's level (plus interval alpha for scales), Fleiss' kappa, and the
    share of agreeing rater pairs (the mean over items with two or more judgments of
    ``others_agreeing``)."""
    items, inverse = _item_index(responses)
    counts = _count_votes(inverse, responses.codes, len(items), responses.k)
    alpha = krippendorff_alpha(counts, level=level, domain=domain)
    alpha_interval = (
        krippendorff_alpha(counts, level="interval", domain=domain) if level == "ordinal" else None
    )
    kappa, reason = fleiss_kappa(counts)
    share, shared = _others_agreeing(counts, inverse, responses.codes)
    observed = None
    if shared.any():
        per_item = np.bincount(inverse[shared], weights=share[shared], minlength=len(items))
        judged = np.bincount(inverse[shared], minlength=len(items))
        observed = float((per_item[judged > 0] / judged[judged > 0]).mean())
    return Agreement(
        alpha=alpha,
        level=level,
        alpha_interval=alpha_interval,
        fleiss_kappa=kappa,
        fleiss_reason=reason,
        n_items=int(counts.shape[0]),
        n_judgments=int(len(responses)),
        n_raters=int(len(np.unique(responses.rater_ids))),
        observed_agreement=observed,
    )


def answer_distribution(responses: Responses) -> list[int]:
    """Judgments per label, in label order."""
    return np.bincount(responses.codes, minlength=responses.k).astype(int).tolist()


# Rater agreement with the other raters ------------------------------------------------------------


def rater_agreement(responses: Responses) -> dict[int, tuple[float, int]]:
    """Per rater: (mean over their judgments of ``others_agreeing``, judgments counted).

    Items the rater is alone on are left out: agreeing with yourself says nothing. Unlike a
    comparison with a consensus the rater's own answer helped to make, this neither rewards a
    rater for their own vote nor drops the items whose consensus is tied.
    """
    share, shared = others_agreeing(responses)
    ids, inverse = np.unique(responses.rater_ids[shared], return_inverse=True)
    counted = np.bincount(inverse, minlength=len(ids))
    agreed = np.bincount(inverse, weights=share[shared], minlength=len(ids))
    return {int(r): (float(a / c), int(c)) for r, a, c in zip(ids, agreed, counted, strict=True)}


# Pairwise ranking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparisons:
    """Pairwise outcomes: ``left``/``right`` index ``names``; ``outcome`` is 1 when the left side
    won, 0 when the right side won and 0.5 for a tie."""

    left: np.ndarray
    right: np.ndarray
    outcome: np.ndarray
    names: tuple

    def __len__(self) -> int:
        return len(self.left)


@dataclass
class Ranking:
    names: tuple
    strength: np.ndarray
    score: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    score_ci_low: np.ndarray
    score_ci_high: np.ndarray
    wins: np.ndarray
    ties: np.ndarray
    n_comparisons: int
    n_bootstrap: int
    regularization: float
    left_win_share: float | None
    left_win_share_decisive: float | None
    tie_share: float | None


def win_matrix(comparisons: Comparisons, weights: np.ndarray | None = None) -> np.ndarray:
    """m[i, j]: wins of i over j, a tie counting half a win for each side."""
    n = len(comparisons.names)
    w = np.ones(len(comparisons)) if weights is None else weights
    flat = np.zeros(n * n)
    np.add.at(flat, comparisons.left * n + comparisons.right, w * comparisons.outcome)
    np.add.at(flat, comparisons.right * n + comparisons.left, w * (1 - comparisons.outcome))
    return flat.reshape(n, n)


def _fit_bradley_terry(matrix: np.ndarray, *, alpha: float) -> np.ndarray:
    import choix

    return choix.ilsr_pairwise_dense(matrix, alpha=alpha, max_iter=10_000, tol=1e-10)


def _needs_prior(matrix: np.ndarray) -> bool:
    """The maximum-likelihood strengths are finite only when every model both wins and loses
    something and the comparison graph is connected; otherwise a small prior keeps them finite."""
    from scipy.sparse.csgraph import connected_components

    won = matrix.sum(axis=1)
    lost = matrix.sum(axis=0)
    if np.any(won <= 0) or np.any(lost <= 0):
        return True
    n_components, _ = connected_components((matrix + matrix.T) > 0, directed=False)
    strongly, _ = connected_components(matrix > 0, directed=True, connection="strong")
    return n_components > 1 or strongly > 1


def bradley_terry(
    comparisons: Comparisons,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    prior: float = 0.01,
) -> Ranking:
    """Bradley–Terry strengths (choix's iterative Luce spectral ranking, the exact ML estimate)
    with ties as half a win for each side, and percentile bootstrap 95% intervals.

    ``strength`` is the log-ability, centred to mean 0; ``score`` is exp(strength) normalised to
    sum to 1 (the scale evalica reports). Bootstrap samples resample comparisons with
    replacement; a sample whose graph lets some model run away gets the small ``prior``.
    """
    names = comparisons.names
    n = len(names)
    matrix = win_matrix(comparisons)
    regularization = prior if _needs_prior(matrix) else 0.0
    strength = _fit_bradley_terry(matrix, alpha=regularization)
    strength = strength - strength.mean()
    score = np.exp(strength) / np.exp(strength).sum()
    samples_s = np.empty((n_bootstrap, n))
    samples_p = np.empty((n_bootstrap, n))
    rng = np.random.default_rng(seed)
    for b in range(n_bootstrap):
        weights = np.bincount(
            rng.integers(0, len(comparisons), len(comparisons)), minlength=len(comparisons)
        ).astype(np.float64)
        m = win_matrix(comparisons, weights)
        s = _fit_bradley_terry(m, alpha=prior if _needs_prior(m) else 0.0)
        s = s - s.mean()
        samples_s[b] = s
        samples_p[b] = np.exp(s) / np.exp(s).sum()
    if n_bootstrap:
        ci_low, ci_high = np.percentile(samples_s, [2.5, 97.5], axis=0)
        p_low, p_high = np.percentile(samples_p, [2.5, 97.5], axis=0)
    else:
        ci_low = ci_high = strength
        p_low = p_high = score
    wins = np.zeros((n, n), dtype=np.int64)
    ties = np.zeros((n, n), dtype=np.int64)
    decisive = comparisons.outcome != 0.5
    winner = np.where(comparisons.outcome == 1, comparisons.left, comparisons.right)
    loser = np.where(comparisons.outcome == 1, comparisons.right, comparisons.left)
    np.add.at(wins, (winner[decisive], loser[decisive]), 1)
    np.add.at(ties, (comparisons.left[~decisive], comparisons.right[~decisive]), 1)
    ties = ties + ties.T
    total = len(comparisons)
    return Ranking(
        names=names,
        strength=strength,
        score=score,
        ci_low=ci_low,
        ci_high=ci_high,
        score_ci_low=p_low,
        score_ci_high=p_high,
        wins=wins,
        ties=ties,
        n_comparisons=total,
        n_bootstrap=n_bootstrap,
        regularization=regularization,
        left_win_share=float((comparisons.outcome == 1).mean()) if total else None,
        left_win_share_decisive=(
            float((comparisons.outcome[decisive] == 1).mean()) if decisive.any() else None
        ),
        tie_share=float((~decisive).mean()) if total else None,
    )


# Picks -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemPick:
    """Which candidate one item's judgments picked.

    ``winner`` is the candidate with the most credit, alone at the top; None when candidates tie
    for the top (``tied`` names them) or no judgment credited anyone. ``share`` is the top credit
    over ``n_judgments``, the judgments counted for the item.
    """

    winner: int | None
    share: float
    n_judgments: int
    tied: tuple[int, ...] = ()


def pick_winners(ballots: Iterable[tuple[int, dict[int, float]]]) -> dict[int, ItemPick]:
    """Per item, the candidate its judgments picked.

    Each ballot is one judgment: its item and the credit it gives candidates, summing to 1 or to
    nothing (a best-of-N pick: ``{candidate: 1.0}``; a pair answered tie: ``{left: 0.5, right:
    0.5}``; a judgment that picked none: ``{}``, which still counts in ``n_judgments``).
    """
    credit: dict[int, dict[int, float]] = {}
    counted: dict[int, int] = {}
    for item, votes in ballots:
        counted[item] = counted.get(item, 0) + 1
        tally = credit.setdefault(item, {})
        for candidate, weight in votes.items():
            tally[candidate] = tally.get(candidate, 0.0) + weight
    picks = {}
    for item, n in counted.items():
        tally = credit[item]
        top = max(tally.values(), default=0.0)
        # Credits are sums of halves and ones, so equal tallies compare equal exactly.
        leaders = tuple(sorted(c for c, v in tally.items() if v == top)) if top > 0 else ()
        picks[item] = ItemPick(
            winner=leaders[0] if len(leaders) == 1 else None,
            share=top / n,
            n_judgments=n,
            tied=leaders if len(leaders) > 1 else (),
        )
    return picks
