"""Benchmark: does the supernet rank the architectures the way stand-alone training does? (issues 3, 12)

Against a stand-alone ground-truth table (``shiftnas groundtruth``), over several seeds:
  (a) Kendall tau (global, local top 20 %), precision@10 of the supernet before the search and after
      a search with each shift strategy. Every variant scores subnets the same way (extract, BN
      recalibration on the same fixed training subset, the val split), so ``none`` has exactly the
      BN-recalibration forward passes of the strategies that train (methods.md §2.6 A3);
  (b) the same for supernets trained with landmark regularization (one round; two rounds, the
      supernet's current best added as landmarks after the first), same epochs and steps as the
      plain supernet, searched without shifting; every variant is measured on the table
      architectures that are no landmark of any variant;
  (c) the ground-truth accuracy of the architecture each search picks (max accuracy on its front)
      and its regret: the best ground-truth accuracy in the table at the pick's MACs or fewer, minus
      the pick's. Picks and new landmarks that are not in the table are trained with its recipe and
      seeds 0 and 1 into a working copy of it.
Beside every figure: the table's own reliability (seed-vs-seed tau: the ceiling) and the tau of the
cheap proxies (MACs, params: what a ranking must beat), on the same architectures.

The supernets train on the table's own train subset (``data.train_size`` of its metadata) and score on
the disjoint val split; the landmark loss draws on the held-out rest of the training pool.

Usage: python bench/bench_ranking.py --table groundtruth/compact-mbv3_fashion.jsonl --seeds 0,1,2
Writes <results>/<name>_seed<N>.json after every variant (a restarted seed skips the finished ones),
and <name>.json / <name>.md over every seed file, so seeds can run as separate processes.
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

from shiftnas.config import EvalConfig, LandmarkConfig, ShiftConfig, TrainConfig, load_config
from shiftnas.data import load_dataset
from shiftnas.engine.evaluation.metrics import ArchitectureMetrics
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.groundtruth.ranking import rank_supernet
from shiftnas.engine.groundtruth.reliability import reliability_report
from shiftnas.engine.groundtruth.table import GroundTruthTable, data_overrides, meta_path, table_ground_truth
from shiftnas.engine.search.archive import Archive
from shiftnas.engine.search.base import SearchProblem
from shiftnas.engine.search.nsga2 import NSGA2Search, current_best_proposer
from shiftnas.engine.search.shifting import make_shift_strategy
from shiftnas.engine.training.landmarks import LandmarkGrowth, LandmarkRegularizer, select_landmarks
from shiftnas.engine.training.supernet import train_supernet
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.predictors.ranking import ranking_report
from shiftnas.search_spaces import arch_from_dict, get_space

RESULTS = Path(__file__).parent / "results"
STRATEGIES = ("none", "per_iteration", "per_candidate", "region")
LANDMARK_VARIANTS = ("landmark", "landmark_rounds")
VARIANTS = ("before_search", *STRATEGIES, *LANDMARK_VARIANTS)
KEYS = ("kendall_tau", "local_tau@20%", "precision@10")
PICK_SEEDS = [0, 1]


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
    return arch_from_dict(best["arch"]), 100.0 - best["metrics"]["error"], shift.passes


def working_table(table: GroundTruthTable, workdir: Path) -> Path:
    """A copy of the shipped table that picks and new landmarks are appended to (seeds 0 and 1), so the
    shipped table stays as it is and every stand-alone training is done once across variants and seeds."""
    path = workdir / "groundtruth_work.jsonl"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(table.path, path)
        meta_path(path).write_text(json.dumps({**table.meta, "seeds": PICK_SEEDS}, indent=2) + "\n")
    return path


def regret(table: GroundTruthTable, pick_key: str, pick_accuracy: float, pick_macs: float) -> float:
    """Best ground-truth accuracy of the table at ``pick_macs`` or fewer, minus the pick's (>= 0 is worse)."""
    cheaper = [r["mean_test_accuracy"] for r in table.rows() if r["mmacs"] <= pick_macs + 1e-9]
    return max([*cheaper, pick_accuracy]) - pick_accuracy


def proxies(table: GroundTruthTable, excluded: set[str]) -> dict:
    """The ranking metrics of MMACs and params (larger = better) on the architectures the variants are scored on."""
    rows = [r for r in table.rows() if r["key"] not in excluded]
    truth = [r["mean_test_accuracy"] for r in rows]
    return {
        "macs": ranking_report([r["mmacs"] for r in rows], truth),
        "params": ranking_report([r["params_m"] for r in rows], truth),
    }


def run_seed(seed: int, args, table: GroundTruthTable, space, data, path: Path) -> dict:
    """Every variant of one seed; resumes from ``path`` (written after every variant)."""
    per = json.loads(path.read_text())["seeds"][str(seed)] if path.exists() else {}
    workdir = Path(args.workdir)
    eval_cfg = EvalConfig(calib_size=500, val_images="all")  # the committed results' evaluator
    train_cfg = TrainConfig(epochs=args.epochs)
    work_path = working_table(table, workdir)
    truth = table_ground_truth(work_path, space, data)  # looked up, or trained (seeds 0, 1) into the copy
    rows = table.rows()

    def save() -> None:
        atomic_write_json(path, {**header(args, table), "seeds": {str(seed): per}})

    t0 = time.time() - per.get("seconds", 0.0)
    torch.manual_seed(seed)
    base = space.build_supernet(data.num_classes)
    train_supernet(space, base, data, train_cfg, workdir / f"base_{seed}.pt", seed=seed)
    landmarks = select_landmarks(
        [(r["arch"], r["mean_test_accuracy"]) for r in rows], args.landmarks, "fixed", np.random.default_rng(seed)
    )
    nets = {}
    for variant, rounds in (("landmark", 1), ("landmark_rounds", 2)):
        torch.manual_seed(seed)
        net = space.build_supernet(data.num_classes)
        regularizer = LandmarkRegularizer(
            landmarks, data, LandmarkConfig(rounds=rounds, per_round=args.per_round), seed=seed
        )
        growth = None
        if rounds > 1:
            propose = current_best_proposer(space, data, eval_cfg, args.pop_size, 4, seed)
            growth = LandmarkGrowth(space, net, regularizer, train_cfg.epochs, propose, truth)
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
        nets[variant] = (net, {lm.arch.key() for lm in regularizer.landmarks})
        per.setdefault(variant, {})["landmarks"] = len(regularizer.landmarks)
    # every landmark of any variant is left out of every variant's evaluation pool
    excluded = set().union(*(keys for _, keys in nets.values()))
    per["excluded"] = sorted(excluded)
    per["proxies"] = proxies(table, excluded)
    if "kendall_tau" not in per.get("before_search", {}):
        per["before_search"] = rank_supernet(space, base, data, table, eval_cfg, exclude=excluded)["report"]
        save()
    runs = [(s, base, s) for s in STRATEGIES] + [(v, nets[v][0], "none") for v in LANDMARK_VARIANTS]
    for variant, start, strategy in runs:
        if "picked" in per.get(variant, {}):
            continue  # finished before a restart
        net = copy.deepcopy(start)
        t_variant = time.time()
        pick, supernet_acc, passes = search(space, net, data, eval_cfg, strategy, args, seed)
        report = rank_supernet(space, net, data, table, eval_cfg, exclude=excluded)["report"]
        pick_gt = truth([pick])[0]
        pick_macs = GroundTruthTable(work_path).rows()
        macs = next(r["mmacs"] for r in pick_macs if r["key"] == pick.key())
        per[variant] = {
            **per.get(variant, {}),
            **report,
            "picked": pick.key(),
            "picked_mmacs": macs,
            "picked_supernet_accuracy": supernet_acc,
            "picked_gt_accuracy": pick_gt,
            "regret": regret(table, pick.key(), pick_gt, macs),
            "shift_passes": passes,
            "seconds": time.time() - t_variant,
        }
        per["seconds"] = time.time() - t0
        save()
        print(f"seed {seed} {variant}: tau {report['kendall_tau']:.3f}, pick {pick_gt:.2f} %", flush=True)
    per["seconds"] = time.time() - t0
    save()
    return per


def header(args, table: GroundTruthTable) -> dict:
    reliability = reliability_report(table)
    return {
        "table": str(args.table),
        "n_table": len(table),
        "args": vars(args),
        "groundtruth_reliability": {
            k: reliability[k]
            for k in (
                "seed_tau",
                "seed_tau_mean",
                "local_seed_tau@20%_mean",
                "local_seed_tau@10%_mean",
                "holdout_seed_tau",
                "sigma_arch",
                "sigma_seed",
                "ratio",
                "proxy_tau",
                "n_architectures",
            )
        },
    }


def combine(results: Path, name: str) -> dict:
    """One result over every ``<name>_seed<N>.json`` in ``results`` (they must share the table)."""
    parts = [json.loads(p.read_text()) for p in sorted(results.glob(f"{name}_seed*.json"))]
    if not parts:
        raise SystemExit(f"error: no seed files {name}_seed*.json in {results}")
    tables = {(p["table"], p["n_table"]) for p in parts}
    if len(tables) != 1:
        raise SystemExit(f"seed files in {results} were made against different tables: {sorted(tables)}")
    return {**parts[-1], "seeds": {k: v for p in parts for k, v in p["seeds"].items()}}


def paired_differences(per_seed: dict[str, dict]) -> list[str]:
    """Markdown rows: each variant minus ``none`` of the same seed (the same supernet before the search,
    or the same seed's training without landmarks), seed by seed, so a change can be read against the
    seed-to-seed spread rather than through two means."""
    order = sorted(per_seed, key=int)
    lines = [
        "",
        f"Each variant minus `none` of the same seed (seeds {' / '.join(order)}); regret: lower is better.",
        "",
        "| variant | Δ Kendall τ | Δ local τ (top 20 %) | Δ precision@10 | Δ regret (pp) |",
        "|---|---|---|---|---|",
    ]
    for variant in VARIANTS[2:]:
        cells = []
        for key in (*KEYS, "regret"):
            deltas = [
                per_seed[s][variant][key] - per_seed[s]["none"][key]
                for s in order
                if key in per_seed[s].get(variant, {}) and key in per_seed[s].get("none", {})
            ]
            cells.append(" / ".join(f"{d:+.2f}" for d in deltas) or "-")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def write_markdown(out: dict, results: Path, name: str) -> None:
    seeds = list(out["seeds"].values())

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "-"

    def column(variant: str, key: str) -> list[float]:
        return [s[variant][key] for s in seeds if key in s.get(variant, {})]

    rel = out["groundtruth_reliability"]
    lines = [
        f"# Ranking quality of the supernet: `{Path(out['table']).name}`",
        "",
        f"Ground truth: {out['n_table']} architectures, landmarks of any variant left out; seeds "
        f"{', '.join(sorted(out['seeds']))}; mean ± std over seeds (population std). Regret: best ground-truth "
        "accuracy in the table at the pick's MACs or fewer, minus the pick's (pp; 0 is best).",
        "",
        "| variant | Kendall τ | local τ (top 20 %) | precision@10 | GT acc. of pick (%) | regret (pp) | shift passes |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        passes = column(variant, "shift_passes")
        lines.append(
            f"| {variant} | "
            + " | ".join(cell(column(variant, k)) for k in KEYS)
            + f" | {cell(column(variant, 'picked_gt_accuracy'))} | {cell(column(variant, 'regret'))} | "
            + f"{round(statistics.mean(passes)) if passes else '-'} |"
        )
    for proxy in ("macs", "params"):
        values = [s["proxies"][proxy] for s in seeds if "proxies" in s]
        lines.append(
            f"| *proxy: {proxy}* | " + " | ".join(cell([v[k] for v in values if k in v]) for k in KEYS) + " | | | |"
        )
    lines.append(
        f"| *ceiling: seed vs seed of the table* | {rel['seed_tau_mean']:.3f} | "
        f"{rel['local_seed_tau@20%_mean']:.3f} | | | | |"
    )
    lines += paired_differences(out["seeds"])
    lines += [
        "",
        f"The table's own reliability: σ_arch / σ_seed = {rel['ratio']:.2f} "
        f"(σ_arch {rel['sigma_arch']:.2f} pp, σ_seed {rel['sigma_seed']:.2f} pp).",
    ]
    atomic_write_text(results / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def write_summary(results: Path, name: str) -> None:
    """``<name>.{json,md}`` over every seed file in ``results``."""
    combined = combine(results, name)
    atomic_write_json(results / f"{name}.json", combined)
    write_markdown(combined, results, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="groundtruth/compact-mbv3_fashion.jsonl")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument("--pop-size", type=int, default=16)
    ap.add_argument("--landmarks", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=3, help="Landmarks added after the first of two rounds.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default=str(RESULTS), help="Folder of the result files.")
    ap.add_argument("--name", default="ranking_fashion", help="Result files: <name>_seed<N>.json, <name>.{json,md}.")
    ap.add_argument("--workdir", default="runs/bench_ranking_fashion", help="Checkpoints and the working table.")
    ap.add_argument("--summarise", action="store_true", help="Only rewrite <name>.{json,md} from the seed files.")
    args = ap.parse_args()
    if args.summarise:
        write_summary(Path(args.results), args.name)
        return
    torch.set_num_threads(args.threads)
    table = GroundTruthTable(args.table)
    meta = table.meta
    space = get_space(meta["space"]["name"], resolutions=meta["space"].get("resolutions"))
    d = load_config(None, data_overrides(meta)).data
    data = load_dataset(d.dataset, seed=d.seed, train_size=d.train_size)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        run_seed(seed, args, table, space, data, results / f"{args.name}_seed{seed}.json")
        write_summary(results, args.name)


if __name__ == "__main__":
    main()
