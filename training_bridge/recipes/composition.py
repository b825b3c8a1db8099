"""How micro-batches are composed from the datasets' roles, and the seeds they draw from.

What the recipes change is only which samples and timesteps make up each micro-batch:

- finetune and distill_student: the batch comes from the one dataset, timesteps from
  [0, num_train_timesteps);
- sequential: from ``first`` for the first ``first_stage_steps`` steps, then from ``second``;
- style_tailoring: a ``content_ratio`` share of every batch from ``content`` with timesteps in
  [timestep_split, num_train_timesteps), the rest from ``style`` with timesteps in
  [0, timestep_split).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import SEQUENTIAL, STYLE_TAILORING


class RoleSampler:
    """Entry indices of one dataset in a seeded order: a fresh permutation every epoch.

    ``take(start, count)`` returns the entries at positions ``start`` .. ``start + count - 1``
    of the endless sequence perm(epoch 0) + perm(epoch 1) + ..., so any position can be
    reached without replaying the ones before it.
    """

    def __init__(self, size: int, *, seed: int, salt: int) -> None:
        self.size = size
        self.seed = seed
        self.salt = salt
        self._epoch = -1
        self._perm: np.ndarray | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, self.salt, epoch])
            self._perm = rng.permutation(self.size)
            self._epoch = epoch
        return self._perm

    def take(self, start: int, count: int) -> list[int]:
        out = []
        for position in range(start, start + count):
            epoch, index = divmod(position, self.size)
            out.append(int(self.permutation(epoch)[index]))
        return out


@dataclass(frozen=True)
class Part:
    """One role's share of a micro-batch: ``count`` entries from position ``start``, with
    timesteps drawn from [low, high)."""

    role: str
    start: int
    count: int
    low: int
    high: int


class Composition:
    """Which roles, dataset positions and timestep ranges make up micro-batch ``m``.

    Micro-batches are numbered across optimizer steps, accumulation steps and processes:
    ``m = (step * gradient_accumulation_steps + accumulation_index) * num_processes + rank``.
    """

    def __init__(
        self,
        recipe: str,
        params: dict[str, Any],
        *,
        num_train_timesteps: int,
        roles: list[str],
        micro_per_step: int,
    ) -> None:
        self.recipe = recipe
        self.batch = params["train_batch_size"]
        self.timesteps = num_train_timesteps
        self.roles = roles
        self.micro_per_step = micro_per_step
        self.first_micro = params.get("first_stage_steps", 0) * micro_per_step
        self.ratio = params.get("content_ratio", 1.0)
        self.split = params.get("timestep_split", 0)

    def _content_before(self, m: int) -> int:
        # Error diffusion: the first m micro-batches hold round(m * B * ratio) content samples
        # in total, so the mix is exact over any run length and needs no state.
        return math.floor(m * self.batch * self.ratio + 0.5)

    def parts(self, m: int) -> list[Part]:
        b, t = self.batch, self.timesteps
        if self.recipe == STYLE_TAILORING:
            before, after = self._content_before(m), self._content_before(m + 1)
            content = after - before
            parts = []
            if content:
                parts.append(Part("content", before, content, self.split, t))
            if b - content:
                parts.append(Part("style", m * b - before, b - content, 0, self.split))
            return parts
        if self.recipe == SEQUENTIAL:
            if m < self.first_micro:
                return [Part("first", m * b, b, 0, t)]
            return [Part("second", (m - self.first_micro) * b, b, 0, t)]
        return [Part(self.roles[0], m * b, b, 0, t)]

    def positions_until(self, micro_count: int) -> dict[str, int]:
        """Samples taken from each role by the first ``micro_count`` micro-batches."""
        b = self.batch
        if self.recipe == STYLE_TAILORING:
            content = self._content_before(micro_count)
            return {"content": content, "style": micro_count * b - content}
        if self.recipe == SEQUENTIAL:
            first = min(micro_count, self.first_micro)
            return {"first": first * b, "second": max(0, micro_count - self.first_micro) * b}
        return {self.roles[0]: micro_count * b}


def micro_seed(seed: int, micro: int) -> int:
    return (seed * 1_000_003 + micro) % (2**63 - 1)


def teacher_samples_seen(
    entries: list, composition: Composition, *, role: str, seed: int, micro_count: int
) -> dict[str, int]:
    """Samples drawn per teacher from ``role``'s ``entries`` (sampled with salt 0, as the first
    role is) by the first ``micro_count`` micro-batches: a function of the seed, not of resumes."""
    taken = composition.positions_until(micro_count)
    total = taken[role]
    sampler = RoleSampler(len(entries), seed=seed, salt=0)
    teachers = [e.teacher or "none" for e in entries]
    names = sorted(set(teachers))
    codes = np.array([names.index(t) for t in teachers])
    counts = np.zeros(len(names), dtype=np.int64)
    full_epochs, rest = divmod(total, len(entries))
    if full_epochs:
        counts += np.bincount(codes, minlength=len(names)) * full_epochs
    if rest:
        counts += np.bincount(codes[sampler.permutation(full_epochs)[:rest]], minlength=len(names))
    return {name: int(c) for name, c in zip(names, counts, strict=True)}
