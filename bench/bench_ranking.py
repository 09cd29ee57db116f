"""Benchmark 2: does the supernet rank the top architectures correctly? (issue 3)

Over several seeds, against the stand-alone ground-truth table (``shiftnas groundtruth``):
  (a) Kendall tau (global, local top 10/20 %) of the supernet before the search and after a search
      with each shift strategy. Every variant scores subnets the same way (extract, BN recalibration
      on the same fixed training subset, validation split), so ``none`` has exactly the same
      BN-recalibration forward passes as the strategies that train (methods.md §2.6 A3);
  (b) tau of supernets trained with landmark regularization (one round; and two rounds, the
      supernet's current best added as landmarks after the first), same epochs and steps as the
      plain supernet, then searched without shifting; every variant is measured on the table
      architectures that are no landmark of any variant;
  (c) the ground-truth (stand-alone, same recipe as the table) test accuracy of the architecture
      each variant selects (the search's max-accuracy pick). Picks and new landmarks that are not
      in the table are trained with its recipe (seed 0) into a working copy of it.
The table's own reliability (seed 0 vs seed 1 of the same architectures) is reported beside them.

Usage: python bench/bench_ranking.py --table groundtruth/compact-mbv3_digits.jsonl --seeds 0,1,2
Writes bench/results/ranking_seed<N>.json per seed, and ranking.json / ranking.md over every seed
file in the folder, so seeds can run as separate processes (one per core) into one folder.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from shiftnas.config import EvalConfig, LandmarkConfig, ShiftConfig, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.evaluation.metrics import ArchitectureMetrics
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.groundtruth.ranking import rank_supernet
from shiftnas.engine.groundtruth.table import GroundTruthTable, meta_path, table_ground_truth
from shiftnas.engine.search.archive import Archive
from shiftnas.engine.search.base import SearchProblem
from shiftnas.engine.search.nsga2 import NSGA2Search, current_best_proposer
from shiftnas.engine.search.shifting import make_shift_strategy
from shiftnas.engine.training.landmarks import LandmarkGrowth, LandmarkRegularizer, select_landmarks
from shiftnas.engine.training.supernet import train_supernet
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.predictors.ranking import ranking_report
from shiftnas.search_spaces import Arch, get_space

RESULTS = Path(__file__).parent / "results"
STRATEGIES = ("none", "per_iteration", "per_candidate", "region")
LANDMARK_VARIANTS = ("landmark", "landmark_rounds")
KEYS = ("kendall_tau", "local_tau@10%", "local_tau@20%", "spearman_rho", "precision@10")


def search(space, net, data, eval_cfg, strategy: str, args, seed: int):
    """NSGA-II (error, MMACs) with ``strategy``; returns (max-accuracy pick, its supernet val accuracy, shift passes)."""
    objectives = resolve_objectives(["error", "macs"])
    evaluator = SubnetEvaluator(space, net, data, eval_cfg, seed=seed)
    shift = make_shift_strategy(space, evaluator, data, ShiftConfig(strategy, keep_checkpoints=False), seed=seed)
    problem = SearchProblem(
        space,
        ArchitectureMetrics(evaluator, None, needed_metrics(objectives, [])),
        objectives,
        [],
        Archive(),
        seed=seed,
        shift=shift,
    )
    result = NSGA2Search(problem, args.pop_size, args.generations).run()
    best = min(result.front, key=lambda r: (r["metrics"]["error"], r["metrics"]["mmacs"]))
    return Arch.from_dict(best["arch"]), 100.0 - best["metrics"]["error"], shift.passes


def working_table(table: GroundTruthTable, workdir: Path) -> Path:
    """A copy of the shipped table that picks and new landmarks are appended to (seed 0 only), so the
    shipped table stays as it is and every stand-alone training is done once across variants and seeds."""
    path = workdir / "groundtruth_work.jsonl"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(table.path, path)
        meta_path(path).write_text(json.dumps({**table.meta, "seeds": [0]}, indent=2) + "\n")
    return path


def ground_truth_reliability(table: GroundTruthTable) -> dict | None:
    """The table against itself: seed 0's ranking vs seed 1's, on the architectures trained with both.

    No ranking of the supernet can be expected to agree with the table much better than this."""
    by_seed: dict[int, dict[str, float]] = {}
    for r in table.records:
        by_seed.setdefault(int(r["seed"]), {})[r["key"]] = r["test_accuracy"]
    if 0 not in by_seed or 1 not in by_seed:
        return None
    keys = [k for k in by_seed[0] if k in by_seed[1]]
    return ranking_report([by_seed[0][k] for k in keys], [by_seed[1][k] for k in keys])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="groundtruth/compact-mbv3_digits.jsonl")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument("--pop-size", type=int, default=16)
    ap.add_argument("--landmarks", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=3, help="Landmarks added after the first of two rounds.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default=str(RESULTS), help="Folder for ranking.json / ranking.md.")
    ap.add_argument("--workdir", default="runs/bench_ranking", help="Checkpoints and the working copy of the table.")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    torch.set_num_threads(args.threads)
    table = GroundTruthTable(args.table)
    meta = table.meta
    space = get_space(meta["space"]["name"], resolutions=meta["space"].get("resolutions"))
    data = load_dataset(meta["data"]["name"], seed=0)
    eval_cfg = EvalConfig()
    train_cfg = TrainConfig(epochs=args.epochs)
    rows = table.rows()
    work_path = working_table(table, workdir)
    truth = table_ground_truth(work_path, space, data)  # looked up, or trained (seed 0) and appended to the copy
    out = {
        "table": args.table,
        "n_table": len(rows),
        "args": vars(args),
        "groundtruth_seed0_vs_seed1": ground_truth_reliability(table),
        "seeds": {},
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        per = out["seeds"][seed] = {}
        torch.manual_seed(seed)
        base = space.build_supernet(data.num_classes)
        train_supernet(space, base, data, train_cfg, workdir / f"base_{seed}.pt", seed=seed)
        landmarks = select_landmarks(
            [(r["arch"], r["mean_test_accuracy"]) for r in rows], args.landmarks, "fixed", np.random.default_rng(seed)
        )
        lm_nets = {}
        for variant, rounds in (("landmark", 1), ("landmark_rounds", 2)):
            torch.manual_seed(seed)
            net = lm_nets[variant] = space.build_supernet(data.num_classes)
            regularizer = LandmarkRegularizer(
                landmarks, data, LandmarkConfig(rounds=rounds, per_round=args.per_round), seed=seed
            )
            growth = None
            if rounds > 1:
                growth = LandmarkGrowth(
                    space,
                    net,
                    regularizer,
                    train_cfg.epochs,
                    current_best_proposer(space, data, eval_cfg, args.pop_size, 4, seed),
                    truth,
                )
            train_supernet(
                space,
                net,
                data,
                train_cfg,
                workdir / f"{variant}_{seed}.pt",
                seed=seed,
                regularizer=regularizer,
                after_epoch=growth,
            )
            per[variant] = {"landmarks": len(regularizer.landmarks)}
            lm_nets[variant] = (net, {lm.arch.key() for lm in regularizer.landmarks})
        # every landmark of any variant is left out of every variant's evaluation pool
        excluded = set().union(*(keys for _, keys in lm_nets.values()))
        per["excluded"] = len(excluded)
        per["before_search"] = rank_supernet(space, base, data, table, eval_cfg, exclude=excluded)["report"]
        variants = [(s, base, s) for s in STRATEGIES] + [(v, lm_nets[v][0], "none") for v in LANDMARK_VARIANTS]
        for variant, start, strategy in variants:
            net = copy.deepcopy(start)
            pick, supernet_acc, passes = search(space, net, data, eval_cfg, strategy, args, seed)
            report = rank_supernet(space, net, data, table, eval_cfg, exclude=excluded)["report"]
            per[variant] = {
                **per.get(variant, {}),
                **report,
                "picked": pick.key(),
                "picked_supernet_accuracy": supernet_acc,
                "picked_gt_accuracy": truth([pick])[0],
                "shift_passes": passes,
            }
        per["seconds"] = time.time() - t0
        print(f"seed {seed} done in {per['seconds'] / 60:.1f} min", flush=True)
        atomic_write_json(results / f"ranking_seed{seed}.json", {**out, "seeds": {seed: per}})
        combined = combine(results)
        atomic_write_json(results / "ranking.json", combined)
        write_markdown(combined, results)


def combine(results: Path) -> dict:
    """One result over every ``ranking_seed<N>.json`` in ``results`` (they must share the table)."""
    parts = [json.loads(p.read_text()) for p in sorted(results.glob("ranking_seed*.json"))]
    tables = {(p["table"], p["n_table"]) for p in parts}
    if len(tables) != 1:
        raise SystemExit(f"seed files in {results} were made against different tables: {sorted(tables)}")
    return {**parts[0], "seeds": {k: v for p in parts for k, v in p["seeds"].items()}}


def write_markdown(out: dict, results: Path) -> None:
    seeds = list(out["seeds"].values())

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "-"  # NaN (τ undefined) shows as nan

    lines = [
        "# Ranking quality of the supernet (issue 3)",
        "",
        f"Ground truth: `{out['table']}` ({out['n_table']} architectures, landmarks left out); "
        f"{len(seeds)} seeds; mean ± std over seeds.",
        "",
        "| variant | " + " | ".join(KEYS) + " | GT acc. of pick (%) | shift passes |",
        "|---" * (len(KEYS) + 3) + "|",
    ]
    for variant in ("before_search",) + STRATEGIES + LANDMARK_VARIANTS:
        picked = [s[variant]["picked_gt_accuracy"] for s in seeds if "picked_gt_accuracy" in s[variant]]
        passes = [s[variant]["shift_passes"] for s in seeds if "shift_passes" in s[variant]]
        lines.append(
            f"| {variant} | "
            + " | ".join(cell([s[variant][k] for s in seeds if k in s[variant]]) for k in KEYS)
            + f" | {cell(picked) if picked else '-'} | {round(statistics.mean(passes)) if passes else '-'} |"
        )
    rel = out.get("groundtruth_seed0_vs_seed1")
    if rel:
        lines.append(
            "| *ground truth: seed 0 vs seed 1* | "
            + " | ".join(f"{rel[k]:.3f}" if k in rel else "-" for k in KEYS)
            + f" | ({int(rel['n'])} architectures) | |"
        )
    atomic_write_text(results / "ranking.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
