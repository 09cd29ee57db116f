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
    """Runs NSGA-II over ``space`` with metrics from ``metrics``; results recorded in ``archive``."""

    def __init__(self, space: SearchSpace, metrics: ArchitectureMetrics, objectives: list[Objective],
                 constraints: list[Constraint], archive: Archive, settings: SearchSettings) -> None:
        self.space, self.metrics, self.objectives = space, metrics, objectives
        self.constraints, self.archive, self.settings = constraints, archive, settings
        self._generation = 0
        ev, columns = metrics.evaluator, metrics.needed
        # records a resumed run may reuse: same weights, same version, every metric it needs
        self._stored = {r["key"]: r for r in archive
                        if r["supernet_version"] == ev.version and r.get("supernet_id") == ev.supernet_id
                        and columns <= set(r["metrics"])}

    # one architecture -> (F, G), re-using stored values on a resumed run
    def evaluate_genome(self, genome: np.ndarray) -> tuple[list[float], list[float]]:
        arch = self.space.decode(genome)
        key, version = arch.key(), self.metrics.evaluator.version
        stored = self._stored.get(key)
        if stored is not None:
            values = stored["metrics"]
        else:
            values = self.metrics.metrics(arch)
            record = self.archive.add(arch, self.space.encode(arch), values, version, self._generation,
                                      self.metrics.evaluator.supernet_id)
            self._stored[key] = record
        return ([values[o.column] for o in self.objectives], [c.g(values) for c in self.constraints])

    def run(self, on_generation: GenerationCallback | None = None) -> SearchResult:
        s = self.settings
        problem = NASProblem(self.space, self.evaluate_genome, len(self.objectives), len(self.constraints))
        algorithm = NSGA2(pop_size=s.pop_size, sampling=ArchitectureSampling(self.space),
                          crossover=SBX(prob=0.9, eta=15), mutation=PM(eta=20),
                          repair=GenomeRepair(self.space), eliminate_duplicates=True)
        algorithm.setup(problem, termination=("n_gen", s.generations), seed=s.seed, verbose=False)
        hv_history: list[dict[str, float]] = []
        ref_point: np.ndarray | None = None
        while algorithm.has_next():
            self._generation = algorithm.n_gen if algorithm.n_gen is not None else 1
            pop = algorithm.ask()
            algorithm.evaluator.eval(problem, pop)
            algorithm.tell(infills=pop)
            F = algorithm.pop.get("F")
            feasible = _feasible_mask(algorithm.pop.get("G"), len(F))
            if ref_point is None:  # fixed at generation 1 so later values are comparable (methods §1.9)
                ref_point = 1.01 * F.max(axis=0)
            hv = normalized_hypervolume(F[feasible], ref_point)
            stats = {"generation": self._generation, "hypervolume": hv, "evaluated": len(self.archive),
                     "feasible": int(feasible.sum()),
                     "best_error": float(F[:, 0].min()) if self.objectives[0].name == "error" else None}
            hv_history.append(stats)
            if on_generation:
                on_generation(self._generation, s.generations, stats)
        current = list(self._stored.values())
        return SearchResult(self.archive, current, pareto_records(current, self.objectives, self.constraints),
                            hv_history, self.objectives)


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
