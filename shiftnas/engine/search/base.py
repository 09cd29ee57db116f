"""What every searcher shares: the contract, the genome operators, Pareto sorting and hypervolume.

A searcher is built by a factory registered in :data:`SEARCHERS` (``search.mode``) from a
:class:`SearchProblem` (what to search and how to score it) and the run's config, and runs with
``run(on_step)``, returning a :class:`SearchResult`. ``on_step(step, total, stats)`` is called
after every generation / iteration with at least ``hypervolume``, ``evaluated`` and
``supernet_version`` in ``stats``.

The genome operators are pymoo's: architectures sampled as the supernet was trained (uniform depth
per stage, the smallest and largest networks included), SBX crossover and polynomial mutation,
then the space's repair (round, clip, canonicalise), so duplicate elimination sees networks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pymoo.core.duplicate import DefaultDuplicateElimination
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.indicators.hv import HV
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from ...config import RunConfig
from ...registry import Registry
from ...search_spaces import SearchSpace
from ..evaluation.metrics import ArchitectureMetrics
from ..evaluation.objectives import Constraint, Objective
from .archive import Archive
from .shifting import NoShift, ShiftStrategy

StepCallback = Callable[[int, int, dict[str, Any]], None]  # (step, total steps, stats)


@dataclass(frozen=True)
class SearchFiles:
    """Where a searcher keeps its resumable state (the run directory decides the names)."""

    state: Path  # the searcher's own state (NAT: archive, iteration, history)
    weights: Path  # the supernet weights and optimiser state that go with it


@dataclass
class SearchProblem:
    """What a searcher searches and how it scores: the same for every searcher."""

    space: SearchSpace
    metrics: ArchitectureMetrics  # accuracy through the supernet, cost metrics exactly
    objectives: list[Objective]
    constraints: list[Constraint]
    archive: Archive  # every evaluation, append-only (what a resumed search replays)
    seed: int = 0
    shift: ShiftStrategy = field(default_factory=NoShift)  # trains the supernet while searching
    files: SearchFiles | None = None  # None: nothing is saved, a crash is not resumable


@dataclass
class SearchResult:
    archive: Archive
    records: list[dict[str, Any]]  # every architecture scored with the final supernet weights
    front: list[dict[str, Any]]  # the non-dominated feasible ones among them
    hv_history: list[dict[str, Any]] = field(default_factory=list)
    objectives: list[Objective] = field(default_factory=list)


class Searcher(Protocol):
    label: str  # what the progress bar calls it, e.g. "NSGA-II search"
    total_steps: int  # generations or iterations

    def run(self, on_step: StepCallback | None = None) -> SearchResult:
        """Search; resumable from the problem's archive / run directory."""


SearcherFactory = Callable[[SearchProblem, RunConfig], Searcher]
SEARCHERS: Registry[SearcherFactory] = Registry("search mode")


# ----------------------------------------------------------------------------- genome operators


def sample_genomes(space: SearchSpace, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` genomes: the smallest and largest networks, then random architectures (as trained)."""
    archs = [space.smallest(), space.largest()]
    archs += [space.sample(rng) for _ in range(max(0, n - 2))]
    return np.stack([space.encode(a) for a in archs[:n]]).astype(float) if n > 0 else np.empty((0, space.n_var))


class GenomeRepair(Repair):
    """Round, clip and canonicalise every genome (a skipped layer never leaves a hole)."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space

    def _do(self, problem, X, **kwargs):
        return np.stack([self.space.repair(x) for x in X]).astype(float)


class HistoryDuplicates(DefaultDuplicateElimination):
    """pymoo's duplicate elimination, and an offspring whose network is in ``seen()`` (already evaluated
    by this search under the current weights) is a duplicate too: mating keeps drawing until the
    offspring are new networks, instead of spending a generation's slots on networks it knows."""

    def __init__(self, space: SearchSpace, seen: Callable[[], set[str]]) -> None:
        super().__init__()
        self.space, self.seen = space, seen

    def _do(self, pop, other, is_duplicate):
        is_duplicate = super()._do(pop, other, is_duplicate)
        if other is None:  # the pass of the offspring against themselves: check them against the history
            known = self.seen()
            is_duplicate |= np.array([self.space.decode(x).key() in known for x in pop.get("X")], dtype=bool)
        return is_duplicate


class ArchitectureSampling(Sampling):
    """pymoo's view of :func:`sample_genomes`."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        return sample_genomes(
            self.space, n_samples, random_state if random_state is not None else np.random.default_rng()
        )


def genome_operators(space: SearchSpace) -> dict[str, Any]:
    """The variation operators every pymoo algorithm of shiftnas takes (keyword arguments)."""
    return dict(
        crossover=SBX(prob=0.9, eta=15), mutation=PM(eta=20), repair=GenomeRepair(space), eliminate_duplicates=True
    )


# ----------------------------------------------------------------------------- Pareto and hypervolume


def nondominated(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``F`` (every column minimised)."""
    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        return np.empty(0, dtype=int)
    return np.asarray(NonDominatedSorting().do(F, only_non_dominated_front=True), dtype=int)


def feasible_mask(G: np.ndarray | None, n: int) -> np.ndarray:
    """Rows whose every constraint value is ``<= 0`` (all of them when there are no constraints)."""
    if G is None or np.asarray(G).size == 0:
        return np.ones(n, dtype=bool)
    return (np.asarray(G).reshape(n, -1) <= 0).all(axis=1)


def normalized_hypervolume(F: np.ndarray, ref_point: np.ndarray) -> float:
    """HV of ``F`` (minimised) w.r.t. ``ref_point``, divided by the reference box volume."""
    if len(F) == 0:
        return 0.0
    F = F[(F < ref_point).all(axis=1)]
    if len(F) == 0:
        return 0.0
    return float(HV(ref_point=ref_point)(F) / np.prod(ref_point))


def objective_matrix(records: list[dict[str, Any]], columns: list[str]) -> np.ndarray:
    """Records x objective columns (all minimised)."""
    return np.array([[r["metrics"][c] for c in columns] for r in records], dtype=float)


def pareto_records(
    records: list[dict[str, Any]], objectives: list[Objective], constraints: list[Constraint]
) -> list[dict[str, Any]]:
    """Non-dominated, feasible records among ``records`` (one per architecture, same supernet),
    sorted by the second objective, then the first."""
    records = [r for r in records if all(c.g(r["metrics"]) <= 0 for c in constraints)]
    if not records:
        return []
    chosen = [records[i] for i in nondominated(objective_matrix(records, [o.column for o in objectives]))]
    order = [objectives[1], objectives[0]] + objectives[2:]
    return sorted(chosen, key=lambda r: [o.value(r["metrics"]) for o in order])
