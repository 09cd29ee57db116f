"""``--mode nat``: the surrogate-assisted NAT / NATv2 search (methods.md §4.3-4.4).

Per iteration: fit the surrogate on the archive (genome -> validation error); NSGA-II (NSGA-III
beyond two objectives) on (predicted error, exactly computed cheap objectives), seeded with the
archive's non-dominated genomes; pick ``K`` new candidates that keep the front evenly spread;
evaluate them through the supernet (logging the surrogate's RMSE / r / rho / tau on them); update
the archive (``grow`` or ``bounded``); adapt the supernet on architectures sampled from per-gene
distributions fitted to the top of the archive, with distillation from the largest subnet;
re-evaluate the whole archive with the adapted weights; hypervolume against a reference point
fixed at iteration 0.

The adaptation is one SGD run spread over the whole search, as NAT's: momentum carries over between
iterations and the learning rate follows one warm-up + cosine schedule over ``iterations x
adapt_steps`` steps, so the last iterations change the weights least.

A shift strategy (``--shift``, methods.md §2-3) can run beside the adaptation: ``per_candidate``
steps before each candidate is scored (archive and candidates are then re-scored with one version
before the update compares them); ``per_iteration`` trains on the iteration's candidates (or the
archive's non-dominated members with ``shift_on=nondominated``) and ``region`` on paths sampled
from the archive, both after the archive update. Any change of the weights is followed by the
re-evaluation of the whole archive.

Deviations, with reasons (docs/architecture.md): per-gene distributions are categorical (the genes
are small integers; NAT fits every scipy continuous distribution and rounds), subset selection is
greedy on NAT's uniformity criterion (deterministic, no inner GA), and the adaptation uses the
sandwich step, whose largest subnet is the in-place teacher.

State (archive, iteration, supernet) is saved atomically after every iteration; re-running resumes.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

import numpy as np
import torch
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.optimize import minimize
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from pymoo.util.ref_dirs import get_reference_directions

from ... import records
from ...config import NATConfig, RunConfig
from ...errors import ConfigError
from ...io import atomic_torch_save, atomic_write_json
from ...predictors.surrogate import fit_quality, make_surrogate
from ...search_spaces import Arch, SearchSpace
from ..evaluation.objectives import Constraint
from ..tensors import channels_last
from ..training.optim import OptimizerSettings, clipped_step, make_optimizer, set_lr
from ..training.supernet import sandwich_step
from .base import (
    SEARCHERS,
    SearchProblem,
    SearchResult,
    StepCallback,
    feasible_mask,
    genome_operators,
    nondominated,
    normalized_hypervolume,
    objective_matrix,
    pareto_records,
    sample_genomes,
)
from .nat_archive import initial_archive, preprocess, survive, update_archive

# ----------------------------------------------------------------------------- pieces


def gene_distributions(genomes: np.ndarray, lo: np.ndarray, hi: np.ndarray, prior: float = 0.5) -> list[np.ndarray]:
    """Per gene, the categorical distribution over ``lo..hi`` of ``genomes`` (add-``prior`` smoothing)."""
    out = []
    for j in range(len(lo)):
        counts = np.bincount(genomes[:, j] - lo[j], minlength=hi[j] - lo[j] + 1).astype(float) + prior
        out.append(counts / counts.sum())
    return out


def sample_from(dists: list[np.ndarray], lo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One genome drawn gene by gene from ``dists``."""
    return np.array([lo[j] + rng.choice(len(p), p=p) for j, p in enumerate(dists)], dtype=int)


def spread(values: np.ndarray) -> float:
    """NAT's uniformity criterion of one objective: the std of the gaps between sorted values."""
    v = np.sort(np.asarray(values, float))
    return float(np.std(np.diff(v))) if len(v) > 2 else 0.0


def select_subset(front_costs: np.ndarray, cand_costs: np.ndarray, k: int, fallback: np.ndarray) -> list[int]:
    """``k`` candidate indices that keep the front evenly spread (greedy on NAT's criterion).

    Criterion of a subset S: max over cost objectives j of spread(front_j U cand_j[S]) (lower is
    better). Each step adds the candidate that lowers it most; ties go to the lower ``fallback``
    (the predicted error). With no cost objectives, the ``k`` lowest ``fallback`` are taken.
    """
    n = len(cand_costs)
    if k >= n:
        return list(range(n))
    if cand_costs.shape[1] == 0:
        return [int(i) for i in np.argsort(fallback, kind="stable")[:k]]
    chosen: list[int] = []
    for _ in range(k):
        best, best_val = None, None
        for i in np.argsort(fallback, kind="stable"):
            if i in chosen:
                continue
            rows = cand_costs[chosen + [int(i)]]
            val = max(spread(np.concatenate([front_costs[:, j], rows[:, j]])) for j in range(cand_costs.shape[1]))
            if best_val is None or val < best_val - 1e-12:
                best, best_val = int(i), val
        chosen.append(best)
    return chosen


class _AuxProblem(Problem):
    """Genomes -> (predicted error, exact cheap objectives); cheap constraints as ``g <= 0``."""

    def __init__(
        self,
        space: SearchSpace,
        predict: Callable[[np.ndarray], np.ndarray],
        costs: Callable[[Arch], dict[str, Any]],
        cost_columns: list[str],
        constraints: list[Constraint],
    ):
        lo, hi = space.bounds
        super().__init__(
            n_var=space.n_var,
            n_obj=1 + len(cost_columns),
            n_ieq_constr=len(constraints),
            xl=lo.astype(float),
            xu=hi.astype(float),
        )
        self.space, self.predict, self.costs = space, predict, costs
        self.cost_columns, self.cons = cost_columns, constraints
        self.seen: dict[str, tuple[Arch, np.ndarray]] = {}  # every feasible network scored, first F kept

    def _evaluate(self, X, out, *args, **kwargs):
        archs = [self.space.decode(x) for x in X]
        genomes = np.array([self.space.encode(a) for a in archs])
        pred = self.predict(genomes)
        metrics = [self.costs(a) for a in archs]
        out["F"] = np.column_stack([pred] + [[m[c] for m in metrics] for c in self.cost_columns])
        if self.cons:
            out["G"] = np.array([[c.g(m) for c in self.cons] for m in metrics])
        feasible = feasible_mask(out.get("G"), len(archs))
        for arch, f, ok in zip(archs, out["F"], feasible):
            if ok:
                self.seen.setdefault(arch.key(), (arch, f))


# ----------------------------------------------------------------------------- the loop


class NATSearch:
    """The NAT / NATv2 loop: the problem's expensive objective (validation error through the supernet)
    is predicted by the surrogate, its cheap objectives are computed exactly."""

    def __init__(self, problem: SearchProblem, cfg: NATConfig) -> None:
        expensive = [o.name for o in problem.objectives if not o.cheap]
        if expensive != ["error"]:
            raise ConfigError(
                "--mode nat predicts the validation error with a surrogate: exactly one objective "
                f"must be measured through the supernet ('error'), got {expensive or 'none'}"
            )
        self.space, self.metrics, self.objectives = problem.space, problem.metrics, problem.objectives
        self.constraints, self.seed, self.files = problem.constraints, problem.seed, problem.files
        self.cfg = cfg.resolved()
        self.log = problem.archive  # every evaluation, append-only (also what a crash leaves behind)
        self.columns = [o.column for o in self.objectives]
        self.error_index = next(i for i, o in enumerate(self.objectives) if not o.cheap)
        self.cost_index = [i for i, o in enumerate(self.objectives) if o.cheap]
        self.cost_columns = [self.columns[i] for i in self.cost_index]
        self.aux_constraints = [c for c in self.constraints if c.cheap]
        self.evaluator = self.metrics.evaluator
        self.shift = problem.shift
        c = self.cfg
        self.optim = OptimizerSettings(
            c.adapt_lr, c.adapt_momentum, c.adapt_weight_decay, c.adapt_grad_clip, c.adapt_warmup_steps
        )
        # a table space has no supernet: nothing to adapt, the loop is the surrogate search alone
        self.supernet = self.evaluator.supernet
        self.optimizer = make_optimizer(self.supernet, self.optim) if self.supernet is not None else None
        self.label = f"{c.policy.upper()} search ({c.surrogate} surrogate)"
        strategy = self.shift.describe().get("strategy", "none")
        if strategy != "none":
            self.label += f" + shifting ({strategy})"
        self.total_steps = c.iterations
        self._iteration = 0
        self._evaluations = 0  # of this search, resumed runs included (the log also keeps what a crash redid)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, arch: Arch) -> dict[str, Any]:
        """A fresh record of ``arch`` under the current supernet."""
        self._evaluations += 1
        return self.log.add(
            arch,
            self.space.encode(arch),
            self.metrics.metrics(arch),
            self.evaluator.version,
            self._iteration,
            self.evaluator.supernet_id,
        )

    def evaluate_all(self, archs: list[Arch]) -> list[dict[str, Any]]:
        """Fresh records of ``archs`` under the current supernet (scored as one batch where possible)."""
        self.metrics.prefetch(archs)
        return [self.evaluate(arch) for arch in archs]

    def reevaluate(self, archive: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.evaluate_all([self.space.decode(np.asarray(r["genome"])) for r in archive])

    # -- state --------------------------------------------------------------------------------
    def _state_paths(self) -> tuple[Any, Any] | None:
        return (self.files.state, self.files.weights) if self.files else None

    def _save(self, archive, history, ref_point) -> None:
        paths = self._state_paths()
        if paths:
            weights = {"version": self.evaluator.version, "shift": self.shift.state_dict()}
            if self.supernet is not None:
                weights.update(state_dict=self.supernet.state_dict(), optimizer=self.optimizer.state_dict())
            atomic_torch_save(paths[1], weights)
            atomic_write_json(
                paths[0],
                {
                    "iteration": self._iteration,
                    "evaluations": self._evaluations,
                    "archive": archive,
                    "history": history,
                    "ref_point": ref_point.tolist(),
                    "config": asdict(self.cfg),
                    "seed": self.seed,
                    "shift": self.shift.describe(),
                    "supernet_id": self.evaluator.supernet_id,
                },
            )

    def _load(self):
        paths = self._state_paths()
        if not paths or not paths[0].is_file() or not paths[1].is_file():
            return None
        import json

        state = json.loads(paths[0].read_text())
        if state["config"] != asdict(self.cfg) or state["seed"] != self.seed:
            raise ConfigError(f"{paths[0]} was made with other nat settings; use another --out")
        if state.get("shift", {"strategy": "none"}) != self.shift.describe():
            raise ConfigError(f"{paths[0]} was made with other shift settings; use another --out")
        if state.get("supernet_id") != self.evaluator.supernet_id:
            raise ConfigError(
                f"{paths[0]} was made from another supernet (its weights differ) or scored 'val' on other images "
                "(eval.val_images, eval.pilots, eval.easy_fraction); use another --out"
            )
        saved = torch.load(paths[1], map_location="cpu", weights_only=True)
        if self.supernet is not None:
            self.supernet.load_state_dict(saved["state_dict"])
            self.optimizer.load_state_dict(saved["optimizer"])
        self.shift.load_state_dict(saved["shift"])
        while self.evaluator.version < saved["version"]:
            self.evaluator.bump_version()
        self._iteration, self._evaluations = state["iteration"], state["evaluations"]
        return state["archive"], state["history"], np.array(state["ref_point"])

    # -- steps --------------------------------------------------------------------------------
    def start(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        c = self.cfg
        if c.preprocess:
            archive = preprocess(
                self.space, c.archive_size, c.oversample, c.init, self.evaluate, self.columns, rng, self.seed
            )
        else:
            archive = initial_archive(self.space, c.archive_size, c.init, self.evaluate_all, rng)
        return archive

    def propose(self, archive: list[dict[str, Any]], surrogate, iteration: int) -> list[Arch]:
        """Candidates from NSGA-II/III on the surrogate, not yet in the archive, subset-selected to K."""
        c = self.cfg
        problem = _AuxProblem(
            self.space, surrogate.predict, self.metrics.cost_metrics, self.cost_columns, self.aux_constraints
        )
        F = objective_matrix(archive, self.columns)
        nd = nondominated(F)
        seeds = np.array([archive[i]["genome"] for i in nd][: c.aux_pop_size], dtype=float)
        rng = np.random.default_rng([self.seed, iteration, 1])
        sampled = (
            sample_genomes(self.space, c.aux_pop_size - len(seeds), rng)
            if len(seeds) < c.aux_pop_size
            else np.empty((0, self.space.n_var))
        )
        X0 = Population.new("X", np.vstack([seeds, sampled]))
        kwargs = dict(pop_size=c.aux_pop_size, sampling=X0, **genome_operators(self.space))
        if problem.n_obj > 2:
            ref_dirs = get_reference_directions("energy", problem.n_obj, c.aux_pop_size, seed=42)
            algorithm = NSGA3(ref_dirs=ref_dirs, **kwargs)
        else:
            algorithm = NSGA2(**kwargs)
        res = minimize(problem, algorithm, ("n_gen", c.aux_generations), seed=self.seed + iteration, verbose=False)
        pop = res.pop
        # never propose a network evaluated before (what a crashed attempt at this iteration left in the
        # log is left out, so a resumed run proposes what an uninterrupted one does)
        known = {r["key"] for r in archive} | {r["key"] for r in self.log if r["generation"] < iteration}
        cands: dict[str, tuple[Arch, np.ndarray]] = {}
        for x, f in zip(pop.get("X"), pop.get("F")):
            arch = self.space.decode(x)
            if arch.key() not in known:
                cands.setdefault(arch.key(), (arch, f))
        if len(cands) < c.candidates:  # a converged final population: top up from what the search scored
            rest = [(k, v) for k, v in problem.seen.items() if k not in known and k not in cands]
            if rest:
                ranks = NonDominatedSorting().do(np.array([f for _, (_, f) in rest]), return_rank=True)[1]
                for i in np.lexsort((np.array([f[0] for _, (_, f) in rest]), ranks))[: c.candidates - len(cands)]:
                    cands[rest[i][0]] = rest[i][1]
        if not cands:
            return []
        archs = [a for a, _ in cands.values()]
        Fc = np.array([f for _, f in cands.values()])
        front_costs = F[nd][:, self.cost_index]
        chosen = select_subset(front_costs, Fc[:, 1:], c.candidates, Fc[:, 0])
        return [archs[i] for i in chosen]

    def adapt(self, archive: list[dict[str, Any]], iteration: int) -> bool:
        """Train the supernet on subnets sampled from the top of the archive; True if it changed.

        Iteration ``iteration`` (1-based) takes steps ``(iteration - 1) x adapt_steps ...`` of the
        search-long warm-up + cosine schedule.
        """
        c = self.cfg
        if c.adapt_steps <= 0 or self.supernet is None:
            return False
        top = survive(archive, min(c.top_n, len(archive)), self.columns, self.seed)
        lo, hi = self.space.bounds
        dists = gene_distributions(np.array([r["genome"] for r in top], dtype=int), lo, hi)
        rng = np.random.default_rng([self.seed, iteration, 2])
        gen = torch.Generator().manual_seed(self.seed * 1009 + iteration)
        net = self.evaluator.supernet
        images, labels = self.evaluator.data.train.tensors
        total = c.iterations * c.adapt_steps
        net.train()
        with channels_last(net):  # as supernet training (engine.tensors.channels_last)
            for i in range(c.adapt_steps):
                set_lr(self.optimizer, (iteration - 1) * c.adapt_steps + i, total, self.optim)
                idx = torch.randint(len(labels), (c.adapt_batch_size,), generator=gen)
                archs = [self.space.largest()] + [
                    self.space.decode(sample_from(dists, lo, rng)) for _ in range(c.adapt_subnets)
                ]
                self.optimizer.zero_grad(set_to_none=True)
                x = images[idx].contiguous(memory_format=torch.channels_last)
                sandwich_step(self.space, net, x, labels[idx], archs, c.kd_ratio)
                clipped_step(self.optimizer, net, self.optim)
        net.eval()
        self.evaluator.bump_version()
        return True

    # -- run ----------------------------------------------------------------------------------
    def run(self, on_step: StepCallback | None = None) -> SearchResult:
        c = self.cfg
        loaded = self._load()
        if loaded is None:
            archive = self.start(np.random.default_rng([self.seed, 0]))
            ref_point = 1.01 * objective_matrix(archive, self.columns).max(axis=0)  # fixed at iteration 0
            history = [self._stats(archive, ref_point, None, None)]
            self._save(archive, history, ref_point)
        else:
            archive, history, ref_point = loaded
        if on_step:
            on_step(self._iteration, c.iterations, history[-1])
        while self._iteration < c.iterations:
            it = self._iteration + 1
            X = np.array([r["genome"] for r in archive], dtype=float)
            y = np.array([r["metrics"][records.ERROR] for r in archive], dtype=float)
            surrogate = make_surrogate(c.surrogate, self.seed).fit(X, y)
            self._iteration = it
            candidates = self.propose(archive, surrogate, it)
            version_before = self.evaluator.version
            self.metrics.prefetch(candidates, accuracy=not self.shift.updates_during_evaluation)
            new = []
            for arch in candidates:
                self.shift.before_candidate(arch)
                new.append(self.evaluate(arch))
            if self.evaluator.version != version_before:  # per_candidate shifting: compare with one version
                archive, new = self.reevaluate(archive), self.reevaluate(new)
            quality = None
            if len(new) >= 2:
                pred = surrogate.predict(np.array([r["genome"] for r in new], dtype=float))
                quality = fit_quality(pred, np.array([r["metrics"][records.ERROR] for r in new]))
            archive = update_archive(archive, new, c.update, c.archive_size, self.columns, self.seed)
            shifted = self.shift.end_generation(
                candidates, self._nondominated(archive), np.array([r["genome"] for r in archive], dtype=int)
            )
            if self.adapt(archive, it) or shifted:
                archive = self.reevaluate(archive)
            history.append(self._stats(archive, ref_point, surrogate.describe(), quality, len(new)))
            self._save(archive, history, ref_point)
            if on_step:
                on_step(it, c.iterations, history[-1])
        front = pareto_records(archive, self.objectives, self.constraints)
        return SearchResult(self.log, archive, front, history, self.objectives)

    def _nondominated(self, archive: list[dict[str, Any]]) -> list[Arch]:
        nd = nondominated(objective_matrix(archive, self.columns))
        return [self.space.decode(np.asarray(archive[i]["genome"])) for i in nd]

    def _stats(self, archive, ref_point, surrogate, quality, n_new: int = 0) -> dict[str, Any]:
        F = objective_matrix(archive, self.columns)
        nd = nondominated(F)
        return {
            "generation": self._iteration,
            "iteration": self._iteration,
            "hypervolume": normalized_hypervolume(F, ref_point),
            "archive_size": len(archive),
            "candidates": n_new,
            "evaluated": self._evaluations,
            "supernet_version": self.evaluator.version,
            "surrogate": surrogate,
            "surrogate_quality": quality,
            "best_error": float(F[:, self.error_index].min()),
            "front_size": len(nd),
            "front": F[nd].tolist(),
        }


@SEARCHERS.register("nat")
def nat_searcher(problem: SearchProblem, cfg: RunConfig) -> NATSearch:
    """``search.mode=nat``: the NAT / NATv2 surrogate loop (``nat.*``)."""
    return NATSearch(problem, cfg.nat)
