"""Keeping the supernet honest during the search: Supernet Shifting and region fine-tuning.

A :class:`ShiftStrategy` decides what the supernet is trained on while NSGA-II runs
(methods.md §2–§3):

``none``
    The supernet is never touched (the weights stay bit-identical).
``per_iteration`` (Supernet Shifting, the paper's wording; default of the strategies that train)
    The architectures a generation evaluated (all of them, or only the non-dominated ones with
    ``shift_on=nondominated``) are scored first; then their training loss on ``batches_per_arch``
    training batches each is accumulated into one gradient and the supernet takes ``steps``
    optimizer steps at the end of the generation.
``per_candidate`` (the official code's behaviour)
    ``candidate_steps`` SGD steps on each new candidate's own path right before it is scored.
``region`` (Yuan et al., GECCO 2023)
    At the end of a generation, ``region_steps`` SGD steps on paths sampled from the current
    search region (parents and offspring): ``uniform_members`` picks a member,
    ``gene_marginals`` samples every gene from its frequency in the region.

Every update bumps the supernet version; the search then re-scores everything it will compare
with the same weights (fair re-evaluation, ``ShiftConfig.reevaluate``) and the archive records
which version produced each value. With ``keep_checkpoints`` each version is saved in the run.
Every update follows the one optimisation policy (``engine.training.optim``) with the ``shift.*``
numbers; ``trainable=classifier`` optimises (and clips) the classifier only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import ShiftConfig
from ...data import DataSplits
from ...registry import Registry
from ...search_spaces import Arch, SearchSpace
from ..checkpoint import save_supernet
from ..evaluation.subnet import SubnetEvaluator
from ..tensors import channels_last, resize
from ..training.optim import OptimizerSettings, clipped_step, make_optimizer

VersionPath = Callable[[int], Path]  # supernet version -> where its weights are kept


class ShiftStrategy:
    """What the supernet is trained on during the search, and when (the base trains nothing)."""

    #: True when weights change while a generation's candidates are being scored
    updates_during_evaluation: bool = False

    def before_candidate(self, arch: Arch) -> bool:
        """Called before a new candidate is scored; returns True if the weights changed."""
        return False

    def end_generation(self, evaluated: list[Arch], nondominated: list[Arch], region: np.ndarray) -> bool:
        """Called after survival; ``region`` holds the genomes of parents and offspring.

        Returns True if the weights changed.
        """
        return False

    def describe(self) -> dict:
        """The strategy and its settings (a resumed search must be continued with the same)."""
        return {"strategy": "none"}

    def state_dict(self) -> dict:
        """What a resumed search needs to continue exactly (optimizer, batch stream, counters)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""


class NoShift(ShiftStrategy):
    """The supernet is left bit-identical."""

    updates = 0
    passes = 0


class _Trainer(ShiftStrategy):
    """Shared machinery: an SGD optimizer over the supernet and a seeded stream of training batches."""

    def __init__(
        self,
        space: SearchSpace,
        evaluator: SubnetEvaluator,
        data: DataSplits,
        cfg: ShiftConfig,
        seed: int = 0,
        version_path: VersionPath | None = None,
    ) -> None:
        self.space, self.evaluator, self.cfg = space, evaluator, cfg
        self.supernet: nn.Module = evaluator.supernet
        self.images, self.labels = data.train.tensors
        self.num_classes = data.num_classes
        self.trained: nn.Module = self.supernet.classifier if cfg.trainable == "classifier" else self.supernet
        self.optim = OptimizerSettings.of(cfg)
        self.optimizer = make_optimizer(self.trained, self.optim)
        self._gen = torch.Generator().manual_seed(seed + 7919)
        self.rng = np.random.default_rng([seed, 7919])
        self._order = torch.empty(0, dtype=torch.long)
        self.version_path = version_path
        self.updates = 0
        self.passes = 0  # forward/backward passes of one path over one batch (the compute spent shifting)

    def describe(self) -> dict:
        return asdict(self.cfg)

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "generator": self._gen.get_state(),
            "rng": self.rng.bit_generator.state,
            "order": self._order.clone(),
            "updates": self.updates,
            "passes": self.passes,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self._gen.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
        self._order = state["order"].clone()
        self.updates, self.passes = state["updates"], state["passes"]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self._order) < self.cfg.batch_size:
            self._order = torch.randperm(len(self.labels), generator=self._gen)
        idx, self._order = self._order[: self.cfg.batch_size], self._order[self.cfg.batch_size :]
        return self.images[idx], self.labels[idx]

    def path_loss(self, arch: Arch) -> torch.Tensor:
        """Cross-entropy of ``arch``'s path on the next training batch (supernet in train mode)."""
        x, y = self.next_batch()
        self.passes += 1
        self.space.activate(self.supernet, arch)
        x = resize(x, arch.resolution).contiguous(memory_format=torch.channels_last)
        return F.cross_entropy(self.supernet(x), y)

    def sgd_step(self, archs: list[Arch], batches_per_arch: int = 1) -> None:
        """One optimizer step on the mean loss of ``archs`` over ``batches_per_arch`` batches each."""
        was_training = self.supernet.training
        self.supernet.train()
        self.supernet.zero_grad(set_to_none=True)  # also the frozen part's, so nothing accumulates there
        scale = 1.0 / (len(archs) * batches_per_arch)
        with channels_last(self.supernet):  # as supernet training (engine.tensors.channels_last)
            for arch in archs:
                for _ in range(batches_per_arch):
                    (self.path_loss(arch) * scale).backward()
            clipped_step(self.optimizer, self.trained, self.optim)
        self.supernet.train(was_training)

    def committed(self) -> bool:
        """Bump the supernet version after an update (and keep its checkpoint)."""
        self.updates += 1
        version = self.evaluator.bump_version()
        if self.version_path is not None and self.cfg.keep_checkpoints:
            save_supernet(self.version_path(version), self.supernet, self.space, self.num_classes, version)
        return True


class PerIterationShift(_Trainer):
    """Supernet Shifting as the paper words it: accumulate the generation's losses, update once."""

    def end_generation(self, evaluated: list[Arch], nondominated: list[Arch], region: np.ndarray) -> bool:
        archs = nondominated if self.cfg.shift_on == "nondominated" else evaluated
        if not archs:
            return False
        for _ in range(self.cfg.steps):
            self.sgd_step(archs, self.cfg.batches_per_arch)
        return self.committed()


class PerCandidateShift(_Trainer):
    """Supernet Shifting as the official code does it: k SGD steps on a candidate before scoring it."""

    updates_during_evaluation = True

    def before_candidate(self, arch: Arch) -> bool:
        for _ in range(self.cfg.candidate_steps):
            self.sgd_step([arch])
        return self.committed()


class RegionShift(_Trainer):
    """Fine-tune on paths sampled from the current search region (parents and offspring)."""

    def end_generation(self, evaluated: list[Arch], nondominated: list[Arch], region: np.ndarray) -> bool:
        if len(region) == 0:
            return False
        for _ in range(self.cfg.region_steps):
            self.sgd_step([self.sample_region(region)])
        return self.committed()

    def sample_region(self, region: np.ndarray) -> Arch:
        """One path from the region: a member, or every gene drawn from its frequency in the region."""
        if self.cfg.region_sampler == "uniform_members":
            return self.space.decode(region[self.rng.integers(len(region))])
        genome = np.array([self.rng.choice(region[:, j]) for j in range(region.shape[1])])
        return self.space.decode(genome)


SHIFT_STRATEGIES: Registry[type[ShiftStrategy]] = Registry("shift strategy")
SHIFT_STRATEGIES.add("none", NoShift)
SHIFT_STRATEGIES.add("per_iteration", PerIterationShift)
SHIFT_STRATEGIES.add("per_candidate", PerCandidateShift)
SHIFT_STRATEGIES.add("region", RegionShift)


def make_shift_strategy(
    space: SearchSpace,
    evaluator: SubnetEvaluator,
    data: DataSplits,
    cfg: ShiftConfig,
    seed: int = 0,
    version_path: VersionPath | None = None,
) -> ShiftStrategy:
    """The strategy named by ``cfg.strategy`` (``version_path``: where each updated supernet is kept)."""
    cls = SHIFT_STRATEGIES.get(cfg.strategy)
    if cls is NoShift:
        return NoShift()
    return cls(space, evaluator, data, cfg, seed=seed, version_path=version_path)
