"""A validation pass over fewer images that estimates the full accuracy without bias (issue 16).

Most validation images are classified the same way by every subnet of a supernet: all of them get
it right (or, for a few ambiguous images, all get it wrong). Those images add nearly the same count
to every architecture's accuracy and cost most of the validation forward. ``stratified_subset``
splits the validation split into three strata by what a few *pilot* subnets did with each image
(all right, all wrong, disagreement), keeps every image of the disagreement stratum and a seeded
random ``fraction`` of each of the other two, and weights each kept image by the size of its stratum
over the number kept. The weighted accuracy is an unbiased estimate of the full-split accuracy for
*any* architecture (stratified sampling; the pilots only decide how small its variance is), and
every architecture is scored on the same images, so differences between architectures keep most
of their precision. ``bench/results/eval_budget.md`` measures what it costs in ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...search_spaces import Arch, SearchSpace


@dataclass(frozen=True)
class ValidationSubset:
    """The validation images a score runs on (``indices``) and how many images each stands for."""

    indices: torch.Tensor  # int64, ascending
    weights: torch.Tensor  # float64, one per index; they sum to ``total``
    total: int  # images of the full validation split

    def accuracy(self, correct: torch.Tensor) -> float:
        """Estimated full-split accuracy (percent) from the correctness of the ``indices`` images, in order."""
        return 100.0 * float((self.weights * correct.to(torch.float64)).sum()) / self.total

    @property
    def share(self) -> float:
        """Fraction of the split that is run."""
        return len(self.indices) / self.total


def pilot_architectures(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` pilots: the space's smallest and largest subnets, then seeded uniform samples (no repeats)."""
    pilots = {a.key(): a for a in (space.smallest(), space.largest())}
    rng = np.random.default_rng(seed)
    for _ in range(100 * n):
        if len(pilots) >= n:
            break
        arch = space.sample(rng)
        pilots.setdefault(arch.key(), arch)
    return list(pilots.values())[:n]


def stratified_subset(correct: np.ndarray, fraction: float, seed: int) -> ValidationSubset:
    """The weighted subset from the pilots' per-image correctness (pilots x images, bool).

    Images the pilots disagree on are all kept (weight 1); of those every pilot got right, and of
    those every pilot got wrong, ``ceil(fraction * size)`` are drawn (seeded) and weighted
    ``size / drawn``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2 or correct.shape[0] < 1 or correct.shape[1] < 1:
        raise ValueError("correct must be a (pilots x images) matrix with at least one pilot and one image")
    right = correct.sum(0)
    n_pilots, total = correct.shape
    rng = np.random.default_rng(seed)
    weights = np.zeros(total)
    weights[(right > 0) & (right < n_pilots)] = 1.0
    for stratum in (np.flatnonzero(right == n_pilots), np.flatnonzero(right == 0)):
        if len(stratum):
            drawn = rng.choice(stratum, int(np.ceil(fraction * len(stratum))), replace=False)
            weights[drawn] = len(stratum) / len(drawn)
    kept = np.flatnonzero(weights)
    return ValidationSubset(torch.from_numpy(kept), torch.from_numpy(weights[kept]), total)
