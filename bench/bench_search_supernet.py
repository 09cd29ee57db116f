"""Benchmark: NSGA-II vs NAT / NATv2 vs random search through a real supernet on Fashion-MNIST (issue 14).

The tabular benchmark (``bench_search.py``) knows the true front; this one asks the same question where
a user's search runs: through a compact-mbv3 supernet trained on Fashion-MNIST (10,000 training images,
resolutions 20 / 24 / 28, the supernet ``bench_nat.py`` trains for its seed 0, shared), with (error,
MMACs) as objectives and the supernet's own validation error (2,000 images, BN recalibrated on 500) as
the oracle. Every method sees the same frozen supernet (NAT / NATv2 without their supernet adaptation,
which ``bench_nat.py`` measures), so they differ only in which architectures they ask about.

No true front is known here: the reference front is the non-dominated set of every architecture any
method evaluated on any seed, and a method's HV fraction / IGD+ after B unique evaluations is that of
the non-dominated set of its first B against this reference (objectives normalised by its ideal and
nadir, reference point 1.1, as in ``bench_search.py``). The reference is built from the methods'
own finds, so a method that contributed most of it is favoured; the best error found and the error at
fixed MACs are reported beside it.

Usage: python bench/bench_search_supernet.py --seeds 0,1,2 [--budgets 50,100,200] [--smoke DIR]
Writes bench/results/search_supernet.json and .md (search_supernet_partial.json while it runs; a
restarted benchmark skips the runs it has and resumes the supernet's training from its checkpoint).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from bench_nat import DATASETS, timed
from bench_search import NAT_SCALE, LoggedOracle, cell, random_run, shiftnas_run

from shiftnas.config import EvalConfig, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.evaluation.metrics import ArchitectureMetrics
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.search.base import nondominated
from shiftnas.engine.search.quality import hv_fraction, igd_plus, true_front
from shiftnas.engine.training.supernet import train_supernet
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"
DATA = "fashion-mnist"
SUPERNET = Path("runs/bench_nat") / DATA / "seed0"  # bench_nat.py's seed-0 supernet: same data, space, recipe
METHODS = ("nsga2", "natv2", "nat", "random")


def supernet_metrics(workdir: Path, epochs: int, smoke: bool) -> tuple:
    """The trained supernet (resumed from its checkpoint) behind an ``ArchitectureMetrics``."""
    spec = DATASETS[DATA]
    load = dict(spec["load"], train_size=600, val_fraction=300 / 60_000) if smoke else spec["load"]
    torch.manual_seed(0)
    data = load_dataset(DATA, seed=0, **load)
    space = get_space("compact-mbv3", resolutions=spec["resolutions"])
    net = space.build_supernet(data.num_classes)
    workdir.mkdir(parents=True, exist_ok=True)
    _, seconds = timed(
        workdir / "supernet.seconds",
        lambda: train_supernet(space, net, data, TrainConfig(epochs=epochs, batch_size=64), workdir / "supernet.pt"),
    )
    net.eval()
    objectives = resolve_objectives(["error", "macs"])
    calib = 64 if smoke else spec["calib_size"]
    evaluator = SubnetEvaluator(space, net, data, EvalConfig(calib_size=calib, val_images="all"), seed=0)
    return space, objectives, ArchitectureMetrics(evaluator, None, needed_metrics(objectives, [])), seconds


def quality(values: np.ndarray, budget: int, reference: np.ndarray, macs_cap: float) -> dict[str, float]:
    """HV fraction and IGD+ of the front of the first ``budget`` evaluations, its best error, and its best
    error among networks of at most ``macs_cap`` MMACs."""
    seen = values[:budget]
    F = seen[nondominated(seen)]
    small = seen[seen[:, 1] <= macs_cap]
    return {
        "hv_fraction": hv_fraction(F, reference),
        "igd_plus": igd_plus(F, reference),
        "best_error": float(seen[:, 0].min()),
        "best_error_small": float(small[:, 0].min()) if len(small) else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budgets", default="50,100,200")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=8, help="supernet training epochs (bench_nat.py's default)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", metavar="DIR", help="a minute-long run at a tiny scale, written to DIR")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = [int(b) for b in args.budgets.split(",")]
    if args.smoke:
        budgets, args.epochs = [12, 24], 1
    results, workdir = (Path(args.smoke), Path(args.smoke) / "work") if args.smoke else (RESULTS, SUPERNET)
    partial_path = results / "search_supernet_partial.json"
    done = json.loads(partial_path.read_text()) if partial_path.exists() else {"runs": {}}
    space, objectives, metrics, done["train_seconds"] = supernet_metrics(workdir, args.epochs, bool(args.smoke))
    for seed in seeds:
        for method in args.methods.split(","):
            run_id = f"{method}/{seed}"
            if run_id in done["runs"]:
                continue
            t0 = time.time()
            oracle = LoggedOracle(space, objectives, metrics)  # one metrics cache: a network is scored once
            if method == "random":
                order = random_run(oracle, max(budgets), seed)
            else:
                order = shiftnas_run(method, oracle, max(budgets), seed, adapt_steps=0)  # the oracle stays fixed
            assert metrics.evaluator.version == 0, f"{run_id} changed the supernet"
            done["runs"][run_id] = {
                "order": order,
                "values": [oracle.seen[k].tolist() for k in order],
                "seconds": time.time() - t0,
            }
            atomic_write_json(partial_path, done)
            best = min(v[0] for v in done["runs"][run_id]["values"])
            print(f"{run_id}: {len(order)} unique, best error {best:.2f} ({time.time() - t0:.0f} s)", flush=True)
    every = np.array([v for r in done["runs"].values() for v in r["values"]])
    reference = true_front(every)
    macs_cap = float(np.median(every[:, 1]))
    for r in done["runs"].values():
        values = np.array(r["values"])
        r["quality"] = {str(b): quality(values, b, reference, macs_cap) for b in budgets if len(values) >= b}
    done.update(
        args=vars(args),
        budgets=budgets,
        reference_front=reference.tolist(),
        distinct_evaluated=len({k for r in done["runs"].values() for k in r["order"]}),
        macs_cap=macs_cap,
    )
    atomic_write_json(results / "search_supernet.json", done)
    atomic_write_text(results / "search_supernet.md", markdown(done, args.methods.split(","), seeds))
    print(markdown(done, args.methods.split(","), seeds))


def markdown(done: dict, methods: list[str], seeds: list[int]) -> str:
    budgets = done["budgets"]
    lines = [
        "# Search quality through a real supernet (compact-mbv3 on Fashion-MNIST, error vs MMACs)",
        "",
        f"Seeds {seeds}, mean ± std (population std). Oracle: the frozen supernet's validation error (no "
        "true front is known). Reference front: the non-dominated set of all "
        f"{done['distinct_evaluated']} distinct networks any run evaluated ({len(done['reference_front'])} "
        "networks); HV fraction (1 = the reference) and IGD+ (0) of each method's front after B unique "
        f"evaluations. Best error: overall, and among networks of ≤ {done['macs_cap']:.2f} MMACs (the "
        f"median of all evaluated). Supernet training: {done['train_seconds']:.0f} s. Population 20; NAT / "
        f"NATv2 at {NAT_SCALE}, no supernet adaptation.",
        "",
        "| method | "
        + " | ".join(f"HV @{b}" for b in budgets)
        + " | "
        + " | ".join(f"IGD+ @{b}" for b in budgets)
        + f" | best error @{budgets[-1]} | best error ≤ median MACs @{budgets[-1]} | seconds |",
        "|---|" + "---|" * (2 * len(budgets) + 3),
    ]
    for method in methods:
        runs = [v for k, v in done["runs"].items() if k.startswith(f"{method}/")]
        q = [r["quality"] for r in runs]
        hv = [cell([x[str(b)]["hv_fraction"] for x in q if str(b) in x]) for b in budgets]
        igd = [cell([x[str(b)]["igd_plus"] for x in q if str(b) in x], 4) for b in budgets]
        last = [x[str(budgets[-1])] for x in q if str(budgets[-1]) in x]
        lines.append(
            f"| {method} | "
            + " | ".join(hv + igd)
            + f" | {cell([x['best_error'] for x in last], 2)} | {cell([x['best_error_small'] for x in last], 2)}"
            + f" | {cell([r['seconds'] for r in runs], 0)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
