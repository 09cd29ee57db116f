"""Benchmark: how close do the searchers get to the true Pareto front of a tabular benchmark? (issue 14)

On NAS-Bench-Macro (``table:nas-bench-macro``: 3,969 distinct networks trained on CIFAR-10 with three
seeds, so the true front is known), for the objective pairs (error, MACs) and (error, params), with
the clean oracle (mean accuracy) and the noisy one (one seed's accuracy per query), over many seeds:
the hypervolume of each method's front as a fraction of the true front's (objectives normalised by the
true front's ideal and nadir, reference point 1.1) and IGD+, after 50 / 100 / 200 / 400 unique
evaluations. Every method stops once it has evaluated the largest budget; the front at a smaller
budget is the non-dominated set of the first evaluations, chosen by the values the method saw (noisy
ones with the noisy oracle) and scored with the true ones.

Methods: shiftnas's NSGA-II (``NSGA2Search``, its default operators), NAT and NATv2 (``NATSearch``,
scaled to this budget), random search (uniform over the distinct networks), and pymoo's NSGA-III,
SMS-EMOA and AGE-MOEA with shiftnas's sampling, repair and variation operators; population 20.
Surrogates: the Kendall tau of every family on 1,000 held-out networks after fitting on 20 / 50 /
100 / 300 random ones.

Usage: python bench/bench_search.py --seeds 10 [--budgets 50,100,200,400] [--quick]
Writes bench/results/search.json and search.md (and search_partial.json while it runs: a restarted
benchmark skips the runs it has).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from pymoo.algorithms.moo.age import AGEMOEA
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.algorithms.moo.sms import SMSEMOA
from pymoo.core.problem import Problem
from pymoo.util.ref_dirs import get_reference_directions

from shiftnas.config import NATConfig
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.evaluation.table import TableMetrics
from shiftnas.engine.search.archive import Archive
from shiftnas.engine.search.base import ArchitectureSampling, SearchProblem, genome_operators, nondominated
from shiftnas.engine.search.nat import NATSearch
from shiftnas.engine.search.nsga2 import NSGA2Search
from shiftnas.engine.search.quality import hv_fraction, igd_plus, true_front
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.predictors.ranking import kendall_tau
from shiftnas.predictors.surrogate import make_surrogate
from shiftnas.search_spaces import get_space
from shiftnas.search_spaces.table import TableArch

RESULTS = Path(__file__).parent / "results"
PAIRS = {"error-macs": ["error", "macs"], "error-params": ["error", "params"]}
ORACLES = ("mean", "seed")
POP = 20
NAT_SCALE = dict(archive_size=20, oversample=2, candidates=10, top_n=10, aux_pop_size=40, aux_generations=15)
METHODS = ("nsga2", "nat", "natv2", "random", "nsga3", "smsemoa", "agemoea")


class LoggedOracle:
    """A metrics source (a table's ``TableMetrics``, a supernet's ``ArchitectureMetrics``) queried by
    genome; remembers the order of the unique evaluations."""

    def __init__(self, space, objectives, metrics) -> None:
        self.space, self.objectives, self.metrics = space, objectives, metrics
        self.seen: dict[str, np.ndarray] = {}  # key -> observed objective values, in evaluation order

    def __call__(self, genome: np.ndarray) -> np.ndarray:
        arch = self.space.decode(genome)
        key = arch.key()
        if key not in self.seen:
            m = self.metrics.metrics(arch)
            self.seen[key] = np.array([o.value(m) for o in self.objectives])
        return self.seen[key]


class OracleProblem(Problem):
    def __init__(self, oracle: LoggedOracle) -> None:
        lo, hi = oracle.space.bounds
        super().__init__(n_var=len(lo), n_obj=len(oracle.objectives), xl=lo, xu=hi, vtype=int)
        self.oracle = oracle

    def _evaluate(self, X, out, *args, **kwargs):
        out["F"] = np.array([self.oracle(x) for x in X])


def pymoo_run(name: str, oracle: LoggedOracle, budget: int, seed: int) -> list[str]:
    """A pymoo algorithm with shiftnas's operators, ask/tell until ``budget`` unique evaluations."""
    space = oracle.space
    kwargs = dict(pop_size=POP, sampling=ArchitectureSampling(space), **genome_operators(space))
    if name == "nsga3":
        algorithm = NSGA3(ref_dirs=get_reference_directions("das-dennis", 2, n_partitions=POP - 1), **kwargs)
    elif name == "smsemoa":
        algorithm = SMSEMOA(**kwargs)
    else:
        algorithm = AGEMOEA(**kwargs)
    problem = OracleProblem(oracle)
    algorithm.setup(problem, termination=("n_gen", 10**6), seed=seed, verbose=False)
    stall = 0
    while len(oracle.seen) < budget and stall < 200:  # stall: a converged population proposes nothing new
        before = len(oracle.seen)
        off = algorithm.ask()
        algorithm.evaluator.eval(problem, off)
        algorithm.tell(infills=off)
        stall = stall + 1 if len(oracle.seen) == before else 0
    return list(oracle.seen)


def shiftnas_run(name: str, oracle: LoggedOracle, budget: int, seed: int, **nat) -> list[str]:
    """shiftnas's own searchers (their record order is the evaluation order); ``nat``: NATConfig overrides."""
    problem = SearchProblem(oracle.space, oracle.metrics, oracle.objectives, [], Archive(), seed=seed)
    if name == "nsga2":  # generations to spare: repeats of archived networks cost nothing
        search = NSGA2Search(problem, POP, generations=budget)
    else:
        search = NATSearch(problem, NATConfig(policy=name, iterations=budget, **{**NAT_SCALE, **nat}))
    _run_until(search, problem.archive, budget)
    order = []
    for r in problem.archive:
        if r["key"] not in oracle.seen:
            oracle.seen[r["key"]] = np.array([o.value(r["metrics"]) for o in oracle.objectives])
        if r["key"] not in order:
            order.append(r["key"])
    return order


def _run_until(search, log: Archive, budget: int) -> None:
    """Step until ``budget`` distinct networks were evaluated (a search may re-propose ones it has seen)."""

    class Enough(Exception):
        pass

    def stop(it, total, stats):
        if len({r["key"] for r in log}) >= budget:
            raise Enough

    try:
        search.run(stop)
    except Enough:
        pass


def random_run(oracle: LoggedOracle, budget: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    space = oracle.space
    while len(oracle.seen) < min(budget, space.size()):
        oracle(space.encode(space.sample(rng)))
    return list(oracle.seen)


def quality(oracle: LoggedOracle, order: list[str], budget: int, truth: dict[str, np.ndarray], front: np.ndarray):
    """HV fraction and IGD+ (true values) of the front the method saw after its first ``budget`` evaluations."""
    keys = order[:budget]
    seen = np.array([oracle.seen[k] for k in keys])
    chosen = [keys[i] for i in nondominated(seen)]
    F = np.array([truth[k] for k in chosen])
    return {"hv_fraction": hv_fraction(F, front), "igd_plus": igd_plus(F, front), "evaluations": len(keys)}


def surrogate_taus(space, columns, sizes, seeds, families=("lgbm", "rbf", "gp", "as")) -> dict:
    F = space.objective_matrix(columns)
    X = np.array([r.genes for r in space.individuals], dtype=float)
    y = F[:, 0]
    out: dict = {f: {str(n): [] for n in sizes} for f in families}
    for seed in range(seeds):
        rng = np.random.default_rng([seed, 77])
        perm = rng.permutation(len(X))
        held = perm[:1000]
        for n in sizes:
            train = perm[1000 : 1000 + n]
            for f in families:
                pred = make_surrogate(f, seed).fit(X[train], y[train]).predict(X[held])
                out[f][str(n)].append(kendall_tau(-pred, -y[held]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budgets", default="50,100,200,400")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--surrogate-seeds", type=int, default=5)
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--quick", action="store_true", help="2 seeds, budgets 50,100: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.budgets, args.surrogate_seeds = 2, "50,100", 1
    budgets = [int(b) for b in args.budgets.split(",")]
    results = Path(args.results)
    partial_path = results / ("search_quick_partial.json" if args.quick else "search_partial.json")
    done = json.loads(partial_path.read_text()) if partial_path.exists() else {"runs": {}}
    space = get_space("table", path="nas-bench-macro")
    for pair, names in PAIRS.items():
        objectives = resolve_objectives(names)
        columns = [o.column for o in objectives]
        F = space.objective_matrix(columns)
        truth = {TableArch(r.genes).key(): f for r, f in zip(space.individuals, F)}
        front = true_front(F)
        for oracle_kind in ORACLES:
            for method in args.methods.split(","):
                for seed in range(args.seeds):
                    run_id = f"{pair}/{oracle_kind}/{method}/{seed}"
                    if run_id in done["runs"]:
                        continue
                    t0 = time.time()
                    table = TableMetrics(space, needed_metrics(objectives, []), oracle_kind, seed)
                    oracle = LoggedOracle(space, objectives, table)
                    if method == "random":
                        order = random_run(oracle, max(budgets), seed)
                    elif method in ("nsga2", "nat", "natv2"):
                        order = shiftnas_run(method, oracle, max(budgets), seed)
                    else:
                        order = pymoo_run(method, oracle, max(budgets), seed)
                    done["runs"][run_id] = {
                        str(b): quality(oracle, order, b, truth, front) for b in budgets if len(order) >= b
                    }
                    done["runs"][run_id]["seconds"] = time.time() - t0
                    done["runs"][run_id]["unique"] = len(order)
                    atomic_write_json(partial_path, done)
                    print(
                        f"{run_id}: {len(order)} unique, HV@{max(budgets)} "
                        f"{done['runs'][run_id].get(str(max(budgets)), {}).get('hv_fraction', float('nan')):.3f} "
                        f"({time.time() - t0:.0f} s)",
                        flush=True,
                    )
    if "surrogates" not in done:  # they predict the error, the same target for both pairs
        done["surrogates"] = surrogate_taus(space, ["error"], [20, 50, 100, 300], args.surrogate_seeds)
        atomic_write_json(partial_path, done)
    done["args"] = vars(args)
    done["true_front_size"] = {
        pair: len(true_front(space.objective_matrix([o.column for o in resolve_objectives(n)])))
        for pair, n in PAIRS.items()
    }
    name = "search_quick" if args.quick else "search"
    atomic_write_json(results / f"{name}.json", done)
    atomic_write_text(results / f"{name}.md", markdown(done, budgets, args))
    print(markdown(done, budgets, args))


def cell(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def markdown(done: dict, budgets: list[int], args) -> str:
    lines = [
        "# Search quality on NAS-Bench-Macro (the true front is known)",
        "",
        f"{args.seeds} seeds per cell, mean ± std (population std). HV fraction: hypervolume of the front "
        "a method found over the true front's (normalised by the true front's ideal and nadir, reference "
        "1.1; 1 = found); IGD+ (0 = found). The front after B unique evaluations is chosen by the values "
        "the method saw and scored with the true ones. Population 20; NAT/NATv2 at "
        f"{NAT_SCALE}.",
        "",
    ]
    methods = args.methods.split(",")
    for pair in PAIRS:
        for oracle_kind in ORACLES:
            lines += [
                f"## {pair}, {oracle_kind} oracle (true front: {done.get('true_front_size', {}).get(pair, '?')}"
                " networks)",
                "",
                "| method | "
                + " | ".join(f"HV @{b}" for b in budgets)
                + " | "
                + " | ".join(f"IGD+ @{b}" for b in budgets)
                + " |",
                "|---|" + "---|" * (2 * len(budgets)),
            ]
            for method in methods:
                runs = [v for k, v in done["runs"].items() if k.startswith(f"{pair}/{oracle_kind}/{method}/")]
                hv = [cell([r[str(b)]["hv_fraction"] for r in runs if str(b) in r]) for b in budgets]
                igd = [cell([r[str(b)]["igd_plus"] for r in runs if str(b) in r], 4) for b in budgets]
                lines.append(f"| {method} | " + " | ".join(hv) + " | " + " | ".join(igd) + " |")
            lines.append("")
    s = done.get("surrogates")
    if s:
        sizes = list(next(iter(s.values())))
        lines += [
            "## Surrogates: Kendall τ of predicted vs true (mean) error on 1,000 held-out networks, after fitting "
            f"on n random ones ({args.surrogate_seeds} seeds)",
            "",
            "| surrogate | " + " | ".join(f"n={n}" for n in sizes) + " |",
            "|---|" + "---|" * len(sizes),
        ]
        for fam, by_n in s.items():
            lines.append(f"| {fam} | " + " | ".join(cell(by_n[n]) for n in sizes) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
