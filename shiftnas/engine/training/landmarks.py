"""Landmark regularization of supernet training (Yu, Ranftl, Salzmann, CVPR 2021; methods.md §5).

A few *landmark* architectures with known stand-alone accuracy are kept sorted from worst to
best. During training, after the warm-up fraction of the epochs, every step draws landmark pairs
(a, b) with b better than a and adds the zero-margin pairwise hinge

    λ_e · φ(ℓ_B(α_b) − ℓ_B(α_a)),   φ(z) = max(0, z)

on a held-out batch B, i.e. it penalises the better landmark having the *higher* supernet loss
(C1: losses, not accuracies, because accuracy has no gradient). λ_e rises per epoch from 0 to
λ0 along a cosine ("cosine_increase" in the official code). Its gradients accumulate into the
same optimizer step as the sandwich loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ...config import LandmarkConfig
from ...data import DataSplits
from ...errors import ConfigError
from ...search_spaces import Arch, SearchSpace, arch_from_dict
from ..tensors import resize


@dataclass(frozen=True)
class Landmark:
    """A landmark architecture and its stand-alone ground-truth accuracy (%)."""

    arch: Arch
    accuracy: float


def regularizer_batch_source(data: DataSplits, source: str) -> TensorDataset:
    """The split the landmark loss draws its batches from.

    ``holdout`` (default): training-pool images the supernet is not trained on (``data.train_size``
    below the pool), so the regulariser sees neither the val split the search scores on nor the
    training batches. ``val`` is the landmark code's choice and leaks the search's own split.
    """
    if source == "holdout":
        if data.holdout is None or len(data.holdout) == 0:
            raise ConfigError(
                f"landmarks.batch_source=holdout needs training images held out of train: set "
                f"data.train_size below the {len(data.train)} of {data.name}'s training pool "
                "(or landmarks.batch_source=val, which draws on the split the search scores on)"
            )
        return data.holdout
    return data.val if source == "val" else data.train


def sort_landmarks(landmarks: Sequence[Landmark]) -> list[Landmark]:
    """Ascending by accuracy (worst first); ties broken by arch key so the order is stable."""
    return sorted(landmarks, key=lambda lm: (lm.accuracy, lm.arch.key()))


def select_landmarks(
    candidates: Sequence[tuple[Arch, float]],
    m: int,
    method: Literal["random", "fixed"] = "random",
    rng: np.random.Generator | None = None,
) -> list[Landmark]:
    """``m`` landmarks out of (arch, stand-alone accuracy) candidates, sorted ascending by accuracy.

    ``random``: ``m`` candidates uniformly without replacement. ``fixed``: evenly spaced ground-truth
    ranks ``range(N − (m−1)·step − 1, N, step)`` with ``step = N // m``, which always includes the best.
    """
    pool = sort_landmarks([Landmark(arch, float(acc)) for arch, acc in candidates])
    n = len(pool)
    if not 1 <= m <= n:
        raise ValueError(f"cannot select {m} landmarks out of {n} candidates")
    if method == "random":
        if rng is None:
            raise ValueError("random landmark selection needs an rng")
        ids = sorted(rng.choice(n, size=m, replace=False).tolist())
    elif method == "fixed":
        step = n // m
        ids = list(range(n - (m - 1) * step - 1, n, step))
    else:
        raise ValueError(f"unknown landmark selection method {method!r}; use 'random' or 'fixed'")
    return [pool[i] for i in ids]


def add_landmarks(landmarks: Sequence[Landmark], new: Sequence[Landmark]) -> list[Landmark]:
    """Grow the landmark set (multi-round training): new archs are added, known ones kept as they are."""
    seen = {lm.arch.key() for lm in landmarks}
    merged = list(landmarks)
    for lm in new:
        if lm.arch.key() not in seen:
            seen.add(lm.arch.key())
            merged.append(lm)
    return sort_landmarks(merged)


def landmark_keys(training: dict) -> set[str]:
    """Keys of every landmark of a training checkpoint's ``training`` entry: initial and added by rounds."""
    identity = (training or {}).get("identity") or {}
    keys = {key for key, _ in (identity.get("landmarks") or {}).get("landmarks", [])}
    for entry in (training or {}).get("landmark_rounds", []):
        keys.update(a["key"] for a in entry["added"])
    return keys


def round_boundaries(epochs: int, cfg: LandmarkConfig) -> list[int]:
    """Epoch counts after which landmarks are added: ``rounds`` equal shares of the regularised epochs.

    The first round starts with the ranking loss (after the warm-up T_w); round k ends after
    T_w + round(k·(E − T_w)/R) epochs, k = 1..R−1 (the last round ends with training).
    """
    if cfg.rounds < 1:
        raise ValueError(f"landmark rounds must be >= 1, got {cfg.rounds}")
    t_w = warmup_epochs(epochs, cfg)
    if cfg.rounds > epochs - t_w:
        raise ValueError(
            f"{cfg.rounds} landmark rounds need at least as many epochs after the warm-up ({epochs - t_w} of {epochs})"
        )
    return [t_w + round(k * (epochs - t_w) / cfg.rounds) for k in range(1, cfg.rounds)]


def exclude_landmarks(archs: Sequence[Arch], landmarks: Sequence[Landmark]) -> list[Arch]:
    """``archs`` without the landmarks (evaluation pools must not contain them)."""
    keys = {lm.arch.key() for lm in landmarks}
    return [a for a in archs if a.key() not in keys]


def warmup_epochs(epochs: int, cfg: LandmarkConfig) -> int:
    """T_w: the number of epochs without ranking loss."""
    if not 0.0 <= cfg.warmup_fraction <= 1.0:
        raise ValueError(f"warmup_fraction must lie in [0, 1], got {cfg.warmup_fraction}")
    return int(math.floor(cfg.warmup_fraction * epochs))


def landmark_weight(epoch: int, epochs: int, cfg: LandmarkConfig) -> float:
    """λ_e: 0 before T_w, then λ0·½(1 + cos(π((e − T_w + 1)/(E − T_w) + 1))), reaching λ0 at e = E − 1."""
    t_w = warmup_epochs(epochs, cfg)
    if epoch < t_w:
        return 0.0
    progress = min(1.0, (epoch - t_w + 1) / (epochs - t_w))
    return cfg.coef * 0.5 * (1.0 + math.cos(math.pi * (progress + 1.0)))


def sample_pairs(m: int, n: int, method: str, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``n`` landmark index pairs (a, b) with a < b, i.e. b is the better one.

    ``code``: a ~ U{0..m−2}, then b ~ U{a+1..m−1} (the official code; *not* uniform over pairs: pairs
    with a large a are favoured). ``uniform_pairs``: uniform over the m(m−1)/2 pairs.
    """
    if m < 2:
        raise ValueError(f"landmark pairs need at least 2 landmarks, got {m}")
    pairs = []
    for _ in range(n):
        if method == "code":
            a = int(rng.integers(0, m - 1))
            b = int(rng.integers(a + 1, m))
        elif method == "uniform_pairs":
            a, b = sorted(int(i) for i in rng.choice(m, size=2, replace=False))
        else:
            raise ValueError(f"unknown pair sampling {method!r}; use 'code' or 'uniform_pairs'")
        pairs.append((a, b))
    return pairs


def pairwise_hinge(
    loss_worse: torch.Tensor, loss_better: torch.Tensor, kind: str = "relu", beta: float = 5.0
) -> torch.Tensor:
    """φ(ℓ(better) − ℓ(worse)): positive when the better architecture has the higher loss.

    ``relu`` is exactly zero when the order is respected; ``softplus`` (``beta``) is a smooth version.
    """
    z = loss_better - loss_worse
    if kind == "relu":
        return F.relu(z)
    if kind == "softplus":
        return F.softplus(z, beta=beta)
    raise ValueError(f"unknown landmark loss {kind!r}; use 'relu' or 'softplus'")


class LandmarkRegularizer:
    """The landmark ranking term of one training run: landmarks, config, pair rng and held-out batches.

    ``train_supernet`` calls :meth:`begin_epoch` at the start of every epoch (so a resumed run draws
    the same pairs and batches) and :meth:`step` once per training step.
    """

    def __init__(
        self, landmarks: Sequence[Landmark], data: DataSplits, cfg: LandmarkConfig | None = None, seed: int = 0
    ):
        self.landmarks = sort_landmarks(landmarks)
        self._initial = list(self.landmarks)
        self.rounds: list[dict] = []  # landmarks added by the multi-round variant, per epoch
        if len(self.landmarks) < 2:
            raise ValueError("landmark regularization needs at least 2 landmarks")
        if len({lm.arch.key() for lm in self.landmarks}) != len(self.landmarks):
            raise ValueError("duplicate landmark architectures")
        self.cfg = cfg or LandmarkConfig()
        # validate the options early rather than at the first step after warm-up
        pairwise_hinge(torch.zeros(()), torch.zeros(()), self.cfg.loss, self.cfg.softplus_beta)
        sample_pairs(2, 1, self.cfg.pair_sampling, np.random.default_rng(0))
        self.images, self.labels = regularizer_batch_source(data, self.cfg.batch_source).tensors
        self.seed = seed
        self.epoch: int | None = None
        self.rng = np.random.default_rng(0)
        self._batches: Iterator[torch.Tensor] = iter(())

    def identity(self) -> dict:
        """What the regulariser contributes to the training identity (initial landmarks and config)."""
        return {"landmarks": [[lm.arch.key(), lm.accuracy] for lm in self._initial], "config": asdict(self.cfg)}

    def grow(self, new: Sequence[Landmark], epoch: int) -> list[Landmark]:
        """Add ``new`` landmarks after ``epoch`` epochs (multi-round variant); returns those added.

        Architectures that already are landmarks are skipped. The additions are recorded in
        :attr:`rounds` (saved with the training checkpoint, so a resumed run has them too).
        """
        known = {lm.arch.key() for lm in self.landmarks}
        self.landmarks = add_landmarks(self.landmarks, new)
        added = [lm for lm in self.landmarks if lm.arch.key() not in known]
        self.rounds.append(
            {
                "epoch": epoch,
                "added": [{"key": lm.arch.key(), "arch": lm.arch.to_dict(), "accuracy": lm.accuracy} for lm in added],
            }
        )
        return added

    def load_rounds(self, rounds: Sequence[dict]) -> None:
        """Restore the landmarks added by earlier rounds (from a checkpoint's ``landmark_rounds``)."""
        self.landmarks, self.rounds = list(self._initial), []
        for entry in rounds:
            self.grow(
                [Landmark(arch_from_dict(a["arch"]), float(a["accuracy"])) for a in entry["added"]], int(entry["epoch"])
            )

    def begin_epoch(self, epoch: int, seed: int | None = None) -> None:
        """Re-derive the pair rng and the held-out batch order from (seed, epoch)."""
        if seed is not None:
            self.seed = seed
        self.epoch = epoch
        self.rng = np.random.default_rng([self.seed, epoch, 1])
        self._batches = self._cycle(np.random.default_rng([self.seed, epoch, 2]))

    def _cycle(self, rng: np.random.Generator) -> Iterator[torch.Tensor]:
        """Endless shuffled passes over the held-out split in full batches (BN needs > 1 image)."""
        n = len(self.labels)
        size = min(self.cfg.batch_size, n)
        while True:
            order = torch.from_numpy(rng.permutation(n))
            for start in range(0, n - size + 1, size):
                yield order[start : start + size]

    def step(self, space: SearchSpace, supernet: nn.Module, epoch: int, epochs: int) -> float:
        """Backpropagate λ_e·Σ φ(ℓ(α_b) − ℓ(α_a)) over the sampled pairs on one held-out batch.

        Gradients accumulate into whatever is in ``.grad`` already; returns the term's value. No
        forward pass at all when λ_e is 0 (warm-up). Pairs of landmarks with equal accuracy carry
        no order and are skipped.
        """
        if self.epoch != epoch:
            self.begin_epoch(epoch)
        weight = landmark_weight(epoch, epochs, self.cfg)
        if weight == 0.0:
            return 0.0
        pairs = [
            (a, b)
            for a, b in sample_pairs(len(self.landmarks), self.cfg.pairs_per_step, self.cfg.pair_sampling, self.rng)
            if self.landmarks[a].accuracy < self.landmarks[b].accuracy
        ]
        idx = next(self._batches)
        if not pairs:
            return 0.0
        images, labels = self.images[idx], self.labels[idx]
        losses: dict[int, torch.Tensor] = {}

        def loss_of(i: int) -> torch.Tensor:
            if i not in losses:
                arch = self.landmarks[i].arch
                space.activate(supernet, arch)
                losses[i] = F.cross_entropy(supernet(resize(images, arch.resolution)), labels)
            return losses[i]

        total = weight * sum(
            pairwise_hinge(loss_of(a), loss_of(b), self.cfg.loss, self.cfg.softplus_beta) for a, b in pairs
        )
        total.backward()
        return float(total.item())


# ----------------------------------------------------------------------------- multi-round growth

Proposer = Callable[[nn.Module, int], list[Arch]]  # (supernet, epochs done) -> current best first
GroundTruthFn = Callable[[Sequence[Arch]], list[float]]  # archs -> stand-alone accuracy (%)


class LandmarkGrowth:
    """``after_epoch`` hook of the multi-round variant (paper Fig. 2): at each round boundary the
    supernet's current best architectures (``propose``, a short search through the supernet) get
    their stand-alone accuracy (``ground_truth``: the table's recipe) and join the landmarks."""

    def __init__(
        self,
        space: SearchSpace,
        supernet: nn.Module,
        regularizer: LandmarkRegularizer,
        epochs: int,
        propose: Proposer,
        ground_truth: GroundTruthFn,
        on_round: Callable[[int, list[Landmark]], None] | None = None,
    ) -> None:
        self.space, self.supernet, self.regularizer = space, supernet, regularizer
        self.boundaries = round_boundaries(epochs, regularizer.cfg)
        self.propose, self.ground_truth, self.on_round = propose, ground_truth, on_round

    def __call__(self, epochs_done: int) -> None:
        if epochs_done not in self.boundaries:
            return
        known = {lm.arch.key() for lm in self.regularizer.landmarks}
        fresh = [a for a in self.propose(self.supernet, epochs_done) if a.key() not in known]
        fresh = fresh[: self.regularizer.cfg.per_round]
        accuracies = self.ground_truth(fresh) if fresh else []
        added = self.regularizer.grow([Landmark(a, acc) for a, acc in zip(fresh, accuracies)], epochs_done)
        if self.on_round is not None:
            self.on_round(epochs_done, added)
