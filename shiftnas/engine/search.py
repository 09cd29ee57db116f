"""NSGA-II over a search space's integer genome with pymoo (Problem / Algorithm / loop kept apart).

Genomes are sampled as random *architectures* (uniform depth per stage, as the supernet was
trained; the largest and smallest networks included), varied by pymoo's SBX crossover and
polynomial mutation, then rounded, clipped and canonicalised by the space's repair, so pymoo's
duplicate elimination removes genomes that decode to the same network. Constraints become pymoo
inequalities ``g <= 0``. The loop uses pymoo's ask/tell interface so that every generation is
recorded in the archive and the hypervolume history, and shown on a progress bar.

Resuming: the run is replayed with the same seed; every architecture already in the archive takes
its stored metrics instead of being re-evaluated, so a killed search continues where it stopped
and ends with exactly the result an uninterrupted run gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.indicators.hv import HV
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from ..search_spaces import Arch, SearchSpace
from .archive import Archive
from .metrics import ArchitectureMetrics
from .objectives import Constraint, Objective
from .shifting import NoShift, ShiftStrategy


class GenomeRepair(Repair):
    """Round, clip and canonicalise every genome (a skipped layer never leaves a hole)."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space

    def _do(self, problem, X, **kwargs):
        return np.stack([self.space.repair(x) for x in X]).astype(float)


class ArchitectureSampling(Sampling):
    """Initial population: the smallest and largest networks, then random architectures."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        rng = random_state if random_state is not None else np.random.default_rng()
        archs = [self.space.smallest(), self.space.largest()]
        archs += [self.space.sample(rng) for _ in range(max(0, n_samples - 2))]
        return np.stack([self.space.encode(a) for a in archs[:n_samples]]).astype(float)


class NASProblem(Problem):
    """pymoo problem: genome rows -> objective values F and constraint values G."""

    def __init__(self, space: SearchSpace, evaluate: Callable[[np.ndarray], tuple[list[float], list[float]]],
                 n_obj: int, n_constr: int) -> None:
        xl, xu = space.bounds
        super().__init__(n_var=space.n_var, n_obj=n_obj, n_ieq_constr=n_constr, xl=xl, xu=xu, vtype=int)
        self._evaluate_one = evaluate

    def _evaluate(self, X, out, *args, **kwargs):
        rows = [self._evaluate_one(x) for x in X]
        out["F"] = np.array([r[0] for r in rows], dtype=float)
        if self.n_ieq_constr:
            out["G"] = np.array([r[1] for r in rows], dtype=float)


@dataclass
class SearchSettings:
    pop_size: int = 24
    generations: int = 8
    seed: int = 0


@dataclass
class SearchResult:
    archive: Archive
    records: list[dict[str, Any]]                     # every architecture scored with the current supernet
    front: list[dict[str, Any]]                       # the non-dominated feasible ones among them
    hv_history: list[dict[str, float]] = field(default_factory=list)
    objectives: list[Objective] = field(default_factory=list)


GenerationCallback = Callable[[int, int, dict[str, Any]], None]  # (generation, total, stats)


class NSGA2Search:
    """Runs NSGA-II over ``space`` with metrics from ``metrics``; results recorded in ``archive``.

    ``shift`` (default: none) trains the supernet during the search; after every update the
    architectures that selection will compare are re-scored with the same weights (``reevaluate``).
    """

    def __init__(self, space: SearchSpace, metrics: ArchitectureMetrics, objectives: list[Objective],
                 constraints: list[Constraint], archive: Archive, settings: SearchSettings,
                 shift: ShiftStrategy | None = None, reevaluate: bool = True) -> None:
        self.space, self.metrics, self.objectives = space, metrics, objectives
        self.constraints, self.archive, self.settings = constraints, archive, settings
        self.shift = shift or NoShift()
        self.reevaluate = reevaluate
        self._generation = 0
        self._rescoring = False
        self._evaluated: list[Arch] = []          # new candidates scored in the current generation
        self._version_of: dict[str, int] = {}     # supernet version behind each architecture's current F
        ev, columns = metrics.evaluator, metrics.needed
        # records a resumed run may reuse: same starting weights, every metric it needs
        self._stored = {(r["key"], r["supernet_version"]): r for r in archive
                        if r.get("supernet_id") == ev.supernet_id and columns <= set(r["metrics"])}

    @property
    def version(self) -> int:
        return self.metrics.evaluator.version

    def values(self, arch: Arch) -> dict[str, Any]:
        """Metrics of ``arch`` under the current supernet version (from the archive if already there)."""
        key = (arch.key(), self.version)
        if key not in self._stored:
            values = self.metrics.metrics(arch)
            self._stored[key] = self.archive.add(arch, self.space.encode(arch), values, self.version,
                                                 self._generation, self.metrics.evaluator.supernet_id)
        self._version_of[arch.key()] = self.version
        return self._stored[key]["metrics"]

    def evaluate_genome(self, genome: np.ndarray) -> tuple[list[float], list[float]]:
        """pymoo's view: one genome -> (F, G)."""
        arch = self.space.decode(genome)
        if not self._rescoring:
            self.shift.before_candidate(arch)
            self._evaluated.append(arch)
        values = self.values(arch)
        return ([values[o.column] for o in self.objectives], [c.g(values) for c in self.constraints])

    def _rescore(self, algorithm, problem, pop) -> None:
        """Fair re-evaluation: give every individual of ``pop`` values from the current weights."""
        self._rescoring = True
        try:
            algorithm.evaluator.eval(problem, pop, skip_already_evaluated=False)
        finally:
            self._rescoring = False

    def run(self, on_generation: GenerationCallback | None = None) -> SearchResult:
        s = self.settings
        problem = NASProblem(self.space, self.evaluate_genome, len(self.objectives), len(self.constraints))
        algorithm = NSGA2(pop_size=s.pop_size, sampling=ArchitectureSampling(self.space),
                          crossover=SBX(prob=0.9, eta=15), mutation=PM(eta=20),
                          repair=GenomeRepair(self.space), eliminate_duplicates=True)
        algorithm.setup(problem, termination=("n_gen", s.generations), seed=s.seed, verbose=False)
        hv_history: list[dict[str, Any]] = []
        ref_point: np.ndarray | None = None
        while algorithm.has_next():
            self._generation = algorithm.n_gen if algorithm.n_gen is not None else 1
            self._evaluated = []
            version_before = self.version
            off = algorithm.ask()
            self.metrics.prefetch([self.space.decode(x) for x in off.get("X")])
            algorithm.evaluator.eval(problem, off)
            if self.reevaluate and self.shift.updates_during_evaluation and self.version != version_before:
                compared = off if algorithm.pop is None else Population.merge(algorithm.pop, off)
                self._rescore(algorithm, problem, compared)
            compared = off if algorithm.pop is None else Population.merge(algorithm.pop, off)
            versions = sorted({self._version_of[self.space.decode(x).key()] for x in compared.get("X")})
            algorithm.tell(infills=off)
            if algorithm.has_next():  # no update after the last generation: the front shares one version
                nondominated = self._nondominated(off)
                region = np.vstack([algorithm.pop.get("X"), off.get("X")]).astype(int)
                changed = self.shift.end_generation(list(self._evaluated), nondominated, region)
                if changed and self.reevaluate:
                    self._rescore(algorithm, problem, algorithm.pop)
                    algorithm.pop = algorithm.survival.do(problem, algorithm.pop, n_survive=len(algorithm.pop),
                                                          algorithm=algorithm, random_state=algorithm.random_state)
            F = algorithm.pop.get("F")
            feasible = _feasible_mask(algorithm.pop.get("G"), len(F))
            if ref_point is None:  # fixed at generation 1 so later values are comparable (methods §1.9)
                ref_point = 1.01 * F.max(axis=0)
            stats = {"generation": self._generation, "hypervolume": normalized_hypervolume(F[feasible], ref_point),
                     "evaluated": len(self.archive), "feasible": int(feasible.sum()),
                     "supernet_version": self.version, "versions_compared": versions,
                     "best_error": float(F[:, 0].min()) if self.objectives[0].name == "error" else None}
            hv_history.append(stats)
            if on_generation:
                on_generation(self._generation, s.generations, stats)
        current = [r for (key, v), r in self._stored.items() if v == self.version]
        return SearchResult(self.archive, current, pareto_records(current, self.objectives, self.constraints),
                            hv_history, self.objectives)

    def _nondominated(self, pop) -> list[Arch]:
        F = pop.get("F")
        if len(F) == 0:
            return []
        front = NonDominatedSorting().do(F, only_non_dominated_front=True)
        return [self.space.decode(pop[i].X) for i in front]


def _feasible_mask(G: np.ndarray | None, n: int) -> np.ndarray:
    if G is None or G.size == 0:
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


def pareto_records(records: list[dict[str, Any]], objectives: list[Objective],
                   constraints: list[Constraint]) -> list[dict[str, Any]]:
    """Non-dominated, feasible records among ``records`` (one per architecture, same supernet)."""
    records = [r for r in records if all(c.g(r["metrics"]) <= 0 for c in constraints)]
    if not records:
        return []
    F = np.array([[r["metrics"][o.column] for o in objectives] for r in records], dtype=float)
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    chosen = [records[i] for i in front]
    order = [objectives[1], objectives[0]] + objectives[2:]
    return sorted(chosen, key=lambda r: [r["metrics"][o.column] for o in order])
