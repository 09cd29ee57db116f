"""Benchmark 2: does the supernet rank the top architectures correctly? (issue 3)

Over several seeds, against the stand-alone ground-truth table (``shiftnas groundtruth``):
  (a) Kendall tau (global, local top 10/20 %) of the supernet before the search and after a search
      with each shift strategy. Every variant scores subnets the same way (extract, BN recalibration
      on the same fixed training subset, validation split), so ``none`` has exactly the same
      BN-recalibration forward passes as the strategies that train (methods.md §2.6 A3);
  (b) tau of supernets trained with and without landmark regularization, same epochs and steps,
      measured on the non-landmark table architectures;
  (c) the ground-truth (stand-alone, same recipe as the table) test accuracy of the architecture
      each variant selects (the search's max-accuracy pick).

Usage: python bench/bench_ranking.py --table groundtruth/compact-mbv3_digits.jsonl --seeds 0,1,2
Writes bench/results/ranking.json and bench/results/ranking.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from shiftnas.config import EvalConfig, ShiftConfig, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.archive import Archive
from shiftnas.engine.evaluation import SubnetEvaluator
from shiftnas.engine.groundtruth import GroundTruthTable
from shiftnas.engine.landmarks import LandmarkConfig, LandmarkRegularizer, select_landmarks
from shiftnas.engine.metrics import ArchitectureMetrics
from shiftnas.engine.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.ranking_eval import rank_supernet
from shiftnas.engine.search import NSGA2Search, SearchSettings
from shiftnas.engine.shifting import make_shift_strategy
from shiftnas.engine.standalone import StandaloneRecipe, train_standalone
from shiftnas.engine.training import train_supernet
from shiftnas.search_spaces import Arch, get_space

RESULTS = Path(__file__).parent / "results"
STRATEGIES = ("none", "per_iteration", "per_candidate", "region")
KEYS = ("kendall_tau", "local_tau@10%", "local_tau@20%", "spearman_rho")


def search(space, net, data, eval_cfg, strategy: str, args, seed: int, workdir: Path):
    """NSGA-II (error, MMACs) with ``strategy``; returns (max-accuracy pick, final supernet)."""
    objectives = resolve_objectives(["error", "macs"])
    evaluator = SubnetEvaluator(space, net, data, eval_cfg, seed=seed)
    shift = make_shift_strategy(space, evaluator, data, ShiftConfig(strategy, keep_checkpoints=False),
                                seed=seed, checkpoint_dir=workdir)
    result = NSGA2Search(space, ArchitectureMetrics(evaluator, None, needed_metrics(objectives, [])), objectives,
                         [], Archive(), SearchSettings(args.pop_size, args.generations, seed), shift=shift).run()
    best = min(result.front, key=lambda r: (r["metrics"]["error"], r["metrics"]["mmacs"]))
    return Arch.from_dict(best["arch"]), net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="groundtruth/compact-mbv3_digits.jsonl")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument("--pop-size", type=int, default=16)
    ap.add_argument("--landmarks", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", default=str(RESULTS), help="Folder for ranking.json / ranking.md.")
    ap.add_argument("--no-train-picks", action="store_true",
                    help="Do not train picks missing from the table stand-alone (smoke runs).")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    table = GroundTruthTable(args.table)
    meta = table.meta
    space = get_space(meta["space"]["name"], resolutions=meta["space"].get("resolutions"))
    data = load_dataset(meta["data"]["name"], seed=0)
    recipe = StandaloneRecipe(**meta["recipe"])
    eval_cfg = EvalConfig()
    train_cfg = TrainConfig(epochs=args.epochs)
    rows = table.rows()
    gt = {r["key"]: r["mean_test_accuracy"] for r in rows}
    out = {"table": args.table, "n_table": len(rows), "args": vars(args), "seeds": {}}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    workdir = Path("runs/bench_ranking")
    workdir.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        per = out["seeds"][seed] = {}
        torch.manual_seed(seed)
        base = space.build_supernet(data.num_classes)
        train_supernet(space, base, data, train_cfg, workdir / f"base_{seed}.pt", seed=seed)
        landmarks = select_landmarks([(r["arch"], r["mean_test_accuracy"]) for r in rows], args.landmarks, "fixed",
                                     np.random.default_rng(seed))
        lm_keys = {lm.arch.key() for lm in landmarks}
        torch.manual_seed(seed)
        with_lm = space.build_supernet(data.num_classes)
        regularizer = LandmarkRegularizer(landmarks, data, LandmarkConfig(), seed=seed)
        train_supernet(space, with_lm, data, train_cfg, workdir / f"landmark_{seed}.pt", seed=seed,
                       regularizer=regularizer)
        per["before_search"] = rank_supernet(space, base, data, table, eval_cfg, exclude=lm_keys)["report"]
        per["landmark"] = rank_supernet(space, with_lm, data, table, eval_cfg, exclude=lm_keys)["report"]
        for strategy in STRATEGIES:
            net = copy.deepcopy(base)
            pick, net = search(space, net, data, eval_cfg, strategy, args, seed, workdir)
            report = rank_supernet(space, net, data, table, eval_cfg, exclude=lm_keys)["report"]
            truth = gt.get(pick.key())
            if truth is None and not args.no_train_picks:  # not in the table: train it stand-alone with the table's recipe
                truth = train_standalone(space, pick, data, recipe, seed=0)["test_accuracy"]
            per[strategy] = {**report, "picked": pick.key(), "picked_gt_accuracy": truth}
        per["seconds"] = time.time() - t0
        print(f"seed {seed} done in {per['seconds'] / 60:.1f} min")
        (results / "ranking.json").write_text(json.dumps(out, indent=2) + "\n")
    write_markdown(out, results)


def write_markdown(out: dict, results: Path) -> None:
    seeds = list(out["seeds"].values())

    def cell(variant: str, key: str) -> str:
        vals = [s[variant][key] for s in seeds if key in s[variant]]
        return f"{statistics.mean(vals):.3f} ± {statistics.pstdev(vals):.3f}" if vals else "-"

    lines = ["# Ranking quality of the supernet (issue 3)", "",
             f"Ground truth: `{out['table']}` ({out['n_table']} architectures); {len(seeds)} seeds; mean ± std.", "",
             "| variant | " + " | ".join(KEYS) + " | GT acc. of pick |", "|---" * (len(KEYS) + 2) + "|"]
    for variant in ("before_search", "landmark") + STRATEGIES:
        picked = [s[variant].get("picked_gt_accuracy") for s in seeds]
        gt = "-" if None in picked else f"{statistics.mean(picked):.2f}"
        lines.append(f"| {variant} | " + " | ".join(cell(variant, k) for k in KEYS) + f" | {gt} |")
    (results / "ranking.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
