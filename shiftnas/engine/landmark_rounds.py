"""Multi-round landmark regularization (Yu et al., CVPR 2021, Fig. 2; methods.md §5.3).

After each round of regularised training the supernet's current best architectures are found
with the base search (a short NSGA-II on supernet error and parameters), their stand-alone
accuracy is obtained with the ground-truth table's own recipe (looked up when the table has them,
otherwise trained and appended to the table), and they join the landmark set for the next round.

:class:`LandmarkGrowth` is the ``after_epoch`` hook of :func:`~shiftnas.engine.training.train_supernet`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch.nn as nn

from ..config import EvalConfig
from ..data import DataSplits
from ..search_spaces import Arch, SearchSpace
from .archive import Archive
from .evaluation import SubnetEvaluator
from .groundtruth import GroundTruthTable, build_groundtruth
from .landmarks import Landmark, LandmarkRegularizer, round_boundaries
from .metrics import ArchitectureMetrics
from .objectives import needed_metrics, resolve_objectives
from .search import NSGA2Search, SearchSettings
from .standalone import StandaloneRecipe

Proposer = Callable[[nn.Module, int], list[Arch]]          # (supernet, epochs done) -> best first
GroundTruthFn = Callable[[Sequence[Arch]], list[float]]    # archs -> stand-alone accuracy (%)


def search_current_best(space: SearchSpace, data: DataSplits, eval_cfg: EvalConfig, pop_size: int,
                        generations: int, seed: int) -> Proposer:
    """A proposer that runs NSGA-II (supernet error, params) and returns every scored architecture, best first."""
    objectives = resolve_objectives(["error", "params"])

    def propose(supernet: nn.Module, epochs_done: int) -> list[Arch]:
        was_training = supernet.training
        evaluator = SubnetEvaluator(space, supernet, data, eval_cfg, seed=seed)
        metrics = ArchitectureMetrics(evaluator, None, needed_metrics(objectives, []))
        result = NSGA2Search(space, metrics, objectives, [], Archive(),
                             SearchSettings(pop_size, generations, seed * 1000 + epochs_done)).run()
        supernet.train(was_training)
        ranked = sorted(result.records, key=lambda r: (r["metrics"]["error"], r["metrics"]["mparams"], r["key"]))
        return [Arch.from_dict(r["arch"]) for r in ranked]

    return propose


def table_ground_truth(table_path: str | Path, space: SearchSpace, data: DataSplits) -> GroundTruthFn:
    """Stand-alone accuracy from the table at ``table_path``; missing architectures are trained with
    the table's recipe and seeds and appended to it (so a crash loses nothing and the table grows)."""
    def ground_truth(archs: Sequence[Arch]) -> list[float]:
        meta = GroundTruthTable(table_path).meta
        table = build_groundtruth(space, data, archs, StandaloneRecipe(**meta["recipe"]), meta["seeds"], table_path)
        return [table.accuracy(a.key()) for a in archs]

    return ground_truth


class LandmarkGrowth:
    """``after_epoch`` hook: at each round boundary, add the current best architectures as landmarks."""

    def __init__(self, space: SearchSpace, supernet: nn.Module, regularizer: LandmarkRegularizer, epochs: int,
                 propose: Proposer, ground_truth: GroundTruthFn,
                 on_round: Callable[[int, list[Landmark]], None] | None = None) -> None:
        self.space, self.supernet, self.regularizer = space, supernet, regularizer
        self.boundaries = round_boundaries(epochs, regularizer.cfg)
        self.propose, self.ground_truth, self.on_round = propose, ground_truth, on_round

    def __call__(self, epochs_done: int) -> None:
        if epochs_done not in self.boundaries:
            return
        known = {lm.arch.key() for lm in self.regularizer.landmarks}
        fresh = [a for a in self.propose(self.supernet, epochs_done) if a.key() not in known]
        fresh = fresh[:self.regularizer.cfg.per_round]
        accuracies = self.ground_truth(fresh) if fresh else []
        added = self.regularizer.grow([Landmark(a, acc) for a, acc in zip(fresh, accuracies)], epochs_done)
        if self.on_round is not None:
            self.on_round(epochs_done, added)
