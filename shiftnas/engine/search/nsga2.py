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

from typing import Any, Callable

import numpy as np
import torch.nn as nn
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.core.problem import Problem

from ... import records
from ...config import EvalConfig, RunConfig
from ...data import DataSplits
from ...search_spaces import Arch, SearchSpace, arch_from_dict
from ..evaluation.metrics import ArchitectureMetrics
from ..evaluation.objectives import needed_metrics, resolve_objectives
from ..evaluation.subnet import SubnetEvaluator
from .archive import Archive
from .base import (
    SEARCHERS,
    ArchitectureSampling,
    HistoryDuplicates,
    SearchProblem,
    SearchResult,
    StepCallback,
    feasible_mask,
    genome_operators,
    nondominated,
    normalized_hypervolume,
    pareto_records,
)


class NASProblem(Problem):
    """pymoo problem: genome rows -> objective values F and constraint values G."""

    def __init__(
        self,
        space: SearchSpace,
        evaluate: Callable[[np.ndarray], tuple[list[float], list[float]]],
        n_obj: int,
        n_constr: int,
    ) -> None:
        xl, xu = space.bounds
        super().__init__(n_var=space.n_var, n_obj=n_obj, n_ieq_constr=n_constr, xl=xl, xu=xu, vtype=int)
        self._evaluate_one = evaluate

    def _evaluate(self, X, out, *args, **kwargs):
        rows = [self._evaluate_one(x) for x in X]
        out["F"] = np.array([r[0] for r in rows], dtype=float)
        if self.n_ieq_constr:
            out["G"] = np.array([r[1] for r in rows], dtype=float)


class NSGA2Search:
    """NSGA-II over the problem's space; every evaluation is recorded in the problem's archive.

    The problem's ``shift`` trains the supernet during the search; after every update the
    architectures that selection will compare are re-scored with the same weights (``reevaluate``).
    """

    def __init__(self, problem: SearchProblem, pop_size: int, generations: int, reevaluate: bool = True) -> None:
        self.problem = problem
        self.space, self.metrics, self.objectives = problem.space, problem.metrics, problem.objectives
        self.constraints, self.archive, self.shift = problem.constraints, problem.archive, problem.shift
        self.pop_size, self.generations, self.seed = pop_size, generations, problem.seed
        self.reevaluate = reevaluate
        strategy = self.shift.describe().get("strategy", "none")
        self.label = "NSGA-II search" + ("" if strategy == "none" else f" + shifting ({strategy})")
        self.total_steps = generations
        self._generation = 0
        self._rescoring = False
        self._evaluated: list[Arch] = []  # new candidates scored in the current generation
        self._version_of: dict[str, int] = {}  # supernet version behind each architecture's current F
        self._seen: set[tuple[str, int]] = set()  # (key, version) proposed so far by this process's run
        ev, columns = self.metrics.evaluator, self.metrics.needed
        # records a resumed run may reuse: same starting weights, every metric it needs
        self._stored = {
            (r["key"], r["supernet_version"]): r
            for r in self.archive
            if r.get("supernet_id") == ev.supernet_id and columns <= set(r["metrics"])
        }

    def _seen_now(self) -> set[str]:
        return {key for key, version in self._seen if version == self.version}

    @property
    def version(self) -> int:
        return self.metrics.evaluator.version

    def values(self, arch: Arch) -> dict[str, Any]:
        """Metrics of ``arch`` under the current supernet version (from the archive if already there)."""
        key = (arch.key(), self.version)
        if key not in self._stored:
            values = self.metrics.metrics(arch)
            self._stored[key] = self.archive.add(
                arch,
                self.space.encode(arch),
                values,
                self.version,
                self._generation,
                self.metrics.evaluator.supernet_id,
            )
        self._version_of[arch.key()] = self.version
        return self._stored[key]["metrics"]

    def evaluate_genome(self, genome: np.ndarray) -> tuple[list[float], list[float]]:
        """pymoo's view: one genome -> (F, G)."""
        arch = self.space.decode(genome)
        if not self._rescoring:
            self.shift.before_candidate(arch)
            self._evaluated.append(arch)
            self._seen.add((arch.key(), self.version))
        values = self.values(arch)
        return ([values[o.column] for o in self.objectives], [c.g(values) for c in self.constraints])

    def _rescore(self, algorithm, problem, pop) -> None:
        """Fair re-evaluation: give every individual of ``pop`` values from the current weights."""
        self._rescoring = True
        try:
            self.metrics.prefetch([self.space.decode(x) for x in pop.get("X")])
            algorithm.evaluator.eval(problem, pop, skip_already_evaluated=False)
        finally:
            self._rescoring = False

    def run(self, on_step: StepCallback | None = None) -> SearchResult:
        problem = NASProblem(self.space, self.evaluate_genome, len(self.objectives), len(self.constraints))
        operators = genome_operators(self.space)
        # offspring are networks this run has not evaluated under the current weights (a resumed run replays
        # the same proposals, since ``_seen`` grows as it replays)
        operators["eliminate_duplicates"] = HistoryDuplicates(self.space, self._seen_now)
        algorithm = NSGA2(pop_size=self.pop_size, sampling=ArchitectureSampling(self.space), **operators)
        algorithm.setup(problem, termination=("n_gen", self.generations), seed=self.seed, verbose=False)
        hv_history: list[dict[str, Any]] = []
        ref_point: np.ndarray | None = None
        while algorithm.has_next():
            self._generation = algorithm.n_gen if algorithm.n_gen is not None else 1
            self._evaluated = []
            version_before = self.version
            off = algorithm.ask()
            if off is None or len(off) == 0:  # no network left that this run has not evaluated
                break
            self.metrics.prefetch(
                [self.space.decode(x) for x in off.get("X")], accuracy=not self.shift.updates_during_evaluation
            )
            algorithm.evaluator.eval(problem, off)
            if self.reevaluate and self.shift.updates_during_evaluation and self.version != version_before:
                compared = off if algorithm.pop is None else Population.merge(algorithm.pop, off)
                self._rescore(algorithm, problem, compared)
            compared = off if algorithm.pop is None else Population.merge(algorithm.pop, off)
            versions = sorted({self._version_of[self.space.decode(x).key()] for x in compared.get("X")})
            algorithm.tell(infills=off)
            if algorithm.has_next():  # no update after the last generation: the front shares one version
                best = self._nondominated(off)
                region = np.vstack([algorithm.pop.get("X"), off.get("X")]).astype(int)
                changed = self.shift.end_generation(list(self._evaluated), best, region)
                if changed and self.reevaluate:
                    self._rescore(algorithm, problem, algorithm.pop)
                    algorithm.pop = algorithm.survival.do(
                        problem,
                        algorithm.pop,
                        n_survive=len(algorithm.pop),
                        algorithm=algorithm,
                        random_state=algorithm.random_state,
                    )
            F = algorithm.pop.get("F")
            feasible = feasible_mask(algorithm.pop.get("G"), len(F))
            if ref_point is None:  # fixed at generation 1 so later values are comparable (methods §1.9)
                ref_point = 1.01 * F.max(axis=0)
            stats = {
                "generation": self._generation,
                "hypervolume": normalized_hypervolume(F[feasible], ref_point),
                "evaluated": len(self.archive),
                "feasible": int(feasible.sum()),
                "front_size": len(nondominated(F[feasible])),
                "supernet_version": self.version,
                "versions_compared": versions,
                "best_error": float(F[:, 0].min()) if self.objectives[0].name == "error" else None,
            }
            hv_history.append(stats)
            if on_step:
                on_step(self._generation, self.generations, stats)
        current = [r for (key, v), r in self._stored.items() if v == self.version]
        return SearchResult(
            self.archive,
            current,
            pareto_records(current, self.objectives, self.constraints),
            hv_history,
            self.objectives,
        )

    def _nondominated(self, pop) -> list[Arch]:
        return [self.space.decode(pop[i].X) for i in nondominated(pop.get("F"))]


@SEARCHERS.register("nsga2")
def nsga2_searcher(problem: SearchProblem, cfg: RunConfig) -> NSGA2Search:
    """``search.mode=nsga2``: plain NSGA-II through the supernet (``search.pop_size``, ``search.generations``)."""
    return NSGA2Search(problem, cfg.search.pop_size, cfg.search.generations, reevaluate=cfg.shift.reevaluate)


def current_best_proposer(
    space: SearchSpace, data: DataSplits, eval_cfg: EvalConfig, pop_size: int, generations: int, seed: int
) -> Callable[[nn.Module, int], list[Arch]]:
    """The multi-round landmark proposer: a short NSGA-II (supernet error, params) through the current
    supernet, returning every scored architecture, best first (``training.landmarks.LandmarkGrowth``)."""
    objectives = resolve_objectives(["error", "params"])

    def propose(supernet: nn.Module, epochs_done: int) -> list[Arch]:
        was_training = supernet.training
        evaluator = SubnetEvaluator(space, supernet, data, eval_cfg, seed=seed)
        metrics = ArchitectureMetrics(evaluator, None, needed_metrics(objectives, []))
        problem = SearchProblem(space, metrics, objectives, [], Archive(), seed=seed * 1000 + epochs_done)
        result = NSGA2Search(problem, pop_size, generations).run()
        supernet.train(was_training)
        ranked = sorted(
            result.records, key=lambda r: (r["metrics"][records.ERROR], r["metrics"][records.MPARAMS], r["key"])
        )
        return [arch_from_dict(r["arch"]) for r in ranked]

    return propose
