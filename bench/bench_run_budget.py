"""Benchmark (issue 16): the default run's training recipe, time vs what the run finds.

The default ``make run`` (``shiftnas run --config configs/default.yaml``) as a whole process, once per
(seed, variant), the variants alternating within a seed: ``1 process`` (the default until 2026-12-07: 6
epochs, sandwich of largest + smallest + 2 random subnets, one training process), two cheaper recipes in
one process (``n_random=1``: 1 random subnet per step; ``epochs=5``) and ``2 processes`` (the default
since: the same recipe as 2 torchrun processes, each on half of every batch, BatchNorm statistics per
process). Per run: the run's own wall time (what it prints as "done in"), its training time, the size of
its Pareto front, the best test accuracy on the front (issue 16's bar: >= 97.5 %), the best test accuracy
among front members under ``MID_MMACS`` (a cheaper recipe can lose the middle of the space while keeping
its extremes), and the supernet's own quality apart from search noise: the mean test accuracy of
``N_FIXED`` fixed stratified architectures (plus largest and smallest) through it.

Resumable: a finished run (its ``summary.json``) is read back; an unfinished one is started afresh.
Run it alone on an idle machine (``make bench-run-budget``, ~5 min a run, 6 variants x 3 seeds).
Usage: python bench/bench_run_budget.py [--seeds 0,1,2] [--variants "1 process,..."] [--baseline V] [--rerun]
Writes bench/results/run_budget.{json,md}; the runs under runs/bench_run_budget/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from shiftnas.config import EvalConfig
from shiftnas.data.registry import load_dataset
from shiftnas.engine.checkpoint import load_supernet_weights, read_checkpoint
from shiftnas.engine.evaluation.latency_dataset import stratified_sample
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.search_spaces import get_space

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RUNS = ROOT / "runs" / "bench_run_budget"
CONFIG = ROOT / "configs" / "default.yaml"
ONE = ["--set", "train.processes=1"]
VARIANTS = {  # name -> (run directory, the run's --set on top of configs/default.yaml)
    "1 process": ("processes1", ONE),  # the default until 2026-12-07
    "n_random=1": ("n_random1", [*ONE, "--set", "train.n_random=1"]),
    "epochs=5": ("epochs5", [*ONE, "--set", "train.epochs=5"]),
    "2 processes": ("processes2", ["--set", "train.augment_shift=0"]),  # 2 torchrun processes, BN per process
    "shift=2": ("shift2", ["--set", "train.augment_shift=2"]),  # 2 processes, images shifted up to 2 px
    "he_fout init": ("hefout", ["--set", "train.init=he_fout"]),  # 2 processes, OFA's initial weights
    # 2 processes, the moving average of the weights (its ramp ends at 0.974 after the run's 330 steps)
    "ema 0.99": ("ema99", ["--set", "train.ema_decay=0.99"]),
}
MID_MMACS = 8.0
N_FIXED = 38
BAR = 97.5


def run_dir(variant: str, seed: int) -> Path:
    return RUNS / f"{VARIANTS[variant][0]}_s{seed}"


def run_once(variant: str, seed: int) -> dict:
    """The run's summary, its training seconds and its front (runs it unless it finished before)."""
    out = run_dir(variant, seed)
    if not (out / "summary.json").exists():
        shutil.rmtree(out, ignore_errors=True)  # an unfinished run would resume: its time would be wrong
        cmd = [sys.executable, "-m", "shiftnas", "run", "--config", str(CONFIG), "--seed", str(seed)]
        cmd += [*VARIANTS[variant][1], "--out", str(out)]
        print(f"== {variant} seed {seed}", flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"   {time.perf_counter() - start:.0f} s", flush=True)
    summary = json.loads((out / "summary.json").read_text())
    training = json.loads((out / "training.json").read_text())
    front = json.loads((out / "pareto.json").read_text())["front"]
    mid = [m["metrics"]["test_accuracy"] for m in front if m["metrics"]["mmacs"] <= MID_MMACS]
    return {
        "seconds": summary["seconds"],
        "training_seconds": training["seconds"],
        "front_size": summary["front_size"],
        "best_test_accuracy": summary["best_test_accuracy"],
        "best_test_accuracy_mid": max(mid, default=None),
        "front_mmacs": sorted(round(m["metrics"]["mmacs"], 2) for m in front),
        "measured": time.strftime("%Y-%m-%d %H:%M", time.localtime((out / "summary.json").stat().st_mtime)),
    }


def fixed_archs_accuracy(variant: str, seed: int) -> dict:
    """Test accuracy of the same stratified architectures through this run's supernet (BN recalibrated)."""
    space = get_space("compact-mbv3", resolutions=[20, 24, 28])
    data = load_dataset("mnist5k")
    archs = [space.largest(), space.smallest(), *stratified_sample(space, N_FIXED, seed=5)]
    net = space.build_supernet(data.num_classes)
    load_supernet_weights(net, read_checkpoint(run_dir(variant, seed) / "supernet.pt")["state_dict"])
    evaluator = SubnetEvaluator(space, net.eval(), data, EvalConfig(calib_size=500), seed=0)
    acc = [evaluator.score(a, "test").accuracy for a in archs]
    return {"largest": acc[0], "smallest": acc[1], "mean": float(np.mean(acc)), "per_arch": acc}


def write(results: dict) -> None:
    atomic_write_json(RESULTS / "run_budget.json", results)
    recorded = [key.split("/") for key in results["runs"]]  # every variant measured so far, not only this call's
    variants = [v for v in VARIANTS if any(v == name for name, _ in recorded)]
    seeds, baseline = sorted({int(seed) for _, seed in recorded}), results["baseline"]
    lines = [
        "# The default run under cheaper training recipes (issue 16)",
        "",
        "`shiftnas run --config configs/default.yaml --seed S` as a whole process per (seed, variant), the "
        "variants of one call alternating within a seed, 1 torch thread, background latency on (the defaults), "
        "this 2-core machine idle otherwise; variants measured at other times (`measured`) compare on accuracy, "
        f"not on time. Bar: best test accuracy on the front >= {BAR} % in <= 5 min. `mid` = best test "
        f"accuracy among front members <= {MID_MMACS:g} MMACs; `fixed` = mean test accuracy of {N_FIXED + 2} "
        "fixed architectures (largest, smallest, stratified) through the run's supernet, free of search noise.",
        "",
        "| variant | seed | measured | run min | training min | front size | best test % | mid % | fixed mean % "
        "| largest % | smallest % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        for s in seeds:
            r = results["runs"].get(f"{v}/{s}")
            if r is None:
                continue
            mid = "–" if r["best_test_accuracy_mid"] is None else f"{r['best_test_accuracy_mid']:.1f}"
            f = r["fixed"]
            lines.append(
                f"| {v} | {s} | {r['measured']} | {r['seconds'] / 60:.1f} | {r['training_seconds'] / 60:.1f} | {r['front_size']} | "
                f"{r['best_test_accuracy']:.1f} | {mid} | {f['mean']:.2f} | {f['largest']:.1f} | {f['smallest']:.1f} |"
            )
    lines += ["", f"Per variant (median over seeds; paired differences to `{baseline}` on the same seed):", ""]
    lines += [
        f"| variant | measured | run min | best test % | runs >= bar | runs <= 5 min | fixed mean − {baseline}'s "
        "(per seed) |"
    ]
    lines += ["|---|---|---|---|---|---|---|"]
    for v in variants:
        rs = {s: results["runs"][f"{v}/{s}"] for s in seeds if f"{v}/{s}" in results["runs"]}
        if not rs:
            continue
        at_bar = sum(r["best_test_accuracy"] >= BAR for r in rs.values())
        in_time = sum(r["seconds"] <= 300 for r in rs.values())
        when = sorted(r["measured"] for r in rs.values())
        diffs = [
            r["fixed"]["mean"] - results["runs"][f"{baseline}/{s}"]["fixed"]["mean"]
            for s, r in rs.items()
            if f"{baseline}/{s}" in results["runs"]
        ]
        lines.append(
            f"| {v} | {when[0]}–{when[-1][-5:]} | {statistics.median(r['seconds'] for r in rs.values()) / 60:.1f} | "
            f"{statistics.median(r['best_test_accuracy'] for r in rs.values()):.1f} | {at_bar} of {len(rs)} | "
            f"{in_time} of {len(rs)} | " + ", ".join(f"{d:+.2f}" for d in diffs) + " |"
        )
    replaced = results.get("replaced", [])
    if replaced:
        lines += [
            "",
            "Runs replaced by a later `--rerun` (kept for their timings beside the variants of their call):",
            "",
        ]
        lines += ["| run | measured | run min | training min | front size | best test % | fixed mean % |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for r in replaced:
            lines.append(
                f"| {r['run']} | {r['measured']} | {r['seconds'] / 60:.1f} | {r['training_seconds'] / 60:.1f} | "
                f"{r['front_size']} | {r['best_test_accuracy']:.1f} | {r['fixed']['mean']:.2f} |"
            )
    atomic_write_text(RESULTS / "run_budget.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--baseline", default="2 processes", help="the variant the others are compared with per seed")
    ap.add_argument(
        "--rerun", action="store_true", help="measure the chosen variants again, side by side (replaces their runs)"
    )
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in [*variants, args.baseline] if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant '{unknown[0]}'; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    path = RESULTS / "run_budget.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    results.update(baseline=args.baseline, mid_mmacs=MID_MMACS, n_fixed=N_FIXED + 2)  # runs name their variant, seed
    if args.rerun:  # the chosen variants are measured anew, alternating within a seed; their old runs are kept aside
        for seed in seeds:
            for variant in variants:
                old = results["runs"].pop(f"{variant}/{seed}", None)
                if old is not None:
                    results.setdefault("replaced", []).append({"run": f"{variant}/{seed}", **old})
                shutil.rmtree(run_dir(variant, seed), ignore_errors=True)
    for seed in seeds:
        for variant in variants:
            key = f"{variant}/{seed}"
            if key not in results["runs"]:
                results["runs"][key] = run_once(variant, seed) | {"fixed": fixed_archs_accuracy(variant, seed)}
                write(results)  # after every run: a killed bench keeps what it measured
    write(results)


if __name__ == "__main__":
    main()
