"""Benchmark 3: transfer a supernet to a new data set vs training one from scratch at equal compute.

Source: a compact supernet trained on mnist5k. Target: digits. For each seed:
  transfer  the classifier is reset and trained, with the backbone, through an NSGA-II search with
            ``per_iteration`` shifting (methods.md §2.3);
  transfer, classifier only  the same, with the backbone frozen (``shift.trainable=classifier``);
  scratch   a supernet trained on digits from scratch with the sandwich rule, given the same number
            of subnet forward/backward passes over batches of the same size as the transfer's shift
            updates, then searched with the same NSGA-II settings and no shifting.
Reported: test accuracy (through the supernet, BN-recalibrated) of each search's max-accuracy pick
and of the best front member, and the compute given to each.

Usage: python bench/bench_transfer.py --seeds 0,1,2
Writes bench/results/transfer.json and bench/results/transfer.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import statistics
import time
from pathlib import Path

import torch

from shiftnas.config import EvalConfig, ShiftConfig, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.checkpoint import reset_classifier
from shiftnas.engine.evaluation.metrics import ArchitectureMetrics
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.search.archive import Archive
from shiftnas.engine.search.base import SearchProblem
from shiftnas.engine.search.nsga2 import NSGA2Search
from shiftnas.engine.search.shifting import make_shift_strategy
from shiftnas.engine.training.supernet import train_supernet
from shiftnas.search_spaces import arch_from_dict, get_space

RESULTS = Path(__file__).parent / "results"


def search(space, net, data, shift_cfg, args, seed):
    objectives = resolve_objectives(["error", "macs"])
    evaluator = SubnetEvaluator(space, net, data, EvalConfig(calib_size=500, val_images="all"), seed=seed)
    shift = make_shift_strategy(space, evaluator, data, shift_cfg, seed=seed)
    t0 = time.time()
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
    pick = min(result.front, key=lambda r: (r["metrics"]["error"], r["metrics"]["mmacs"]))
    test = {r["key"]: evaluator.score(arch_from_dict(r["arch"]), "test").accuracy for r in result.front}
    return {
        "picked": pick["key"],
        "picked_test_accuracy": test[pick["key"]],
        "best_front_test_accuracy": max(test.values()),
        "shift_passes": shift.passes,
        "search_seconds": time.time() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--source-epochs", type=int, default=6)
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument("--pop-size", type=int, default=16)
    ap.add_argument("--shift-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = get_space("compact-mbv3")
    source, target = load_dataset("mnist5k", seed=0), load_dataset("digits", seed=0)
    shift_cfg = ShiftConfig("per_iteration", lr=0.05, steps=args.shift_steps, keep_checkpoints=False)
    # compute of the transfer: every update step back-propagates each of the generation's evaluated
    # architectures on one batch; at most pop_size of them, in every generation but the last
    passes = (args.generations - 1) * args.shift_steps * args.pop_size
    sandwich = TrainConfig(n_random=2)  # 4 subnet passes per step
    scratch_epochs = max(1, math.ceil(passes / 4 / math.ceil(len(target.train) / sandwich.batch_size)))
    out = {
        "args": vars(args),
        "transfer_passes_upper_bound": passes,
        "scratch_epochs": scratch_epochs,
        "scratch_passes": scratch_epochs * math.ceil(len(target.train) / sandwich.batch_size) * 4,
        "seeds": {},
    }
    work = Path("runs/bench_transfer")
    for seed in [int(s) for s in args.seeds.split(",")]:
        torch.manual_seed(seed)
        pretrained = space.build_supernet(10)
        train_supernet(
            space, pretrained, source, TrainConfig(epochs=args.source_epochs), work / f"source_{seed}.pt", seed=seed
        )
        transferred = copy.deepcopy(pretrained)
        reset_classifier(transferred, seed)
        torch.manual_seed(seed)
        scratch = space.build_supernet(10)
        t0 = time.time()
        train_supernet(
            space, scratch, target, TrainConfig(epochs=scratch_epochs), work / f"scratch_{seed}.pt", seed=seed
        )
        scratch_seconds = time.time() - t0
        classifier_only = copy.deepcopy(pretrained)
        reset_classifier(classifier_only, seed)
        out["seeds"][seed] = {
            "transfer": search(space, transferred, target, shift_cfg, args, seed),
            "transfer_classifier": search(
                space, classifier_only, target, dataclasses.replace(shift_cfg, trainable="classifier"), args, seed
            ),
            "scratch": {
                **search(space, scratch, target, ShiftConfig("none"), args, seed),
                "train_seconds": scratch_seconds,
            },
        }
        print(seed, out["seeds"][seed], flush=True)
        write_results(out, Path(args.results))


VARIANTS = {
    "transfer": "transfer (classifier reset, backbone + classifier shifted)",
    "transfer_classifier": "transfer, classifier only (`--train classifier`)",
    "scratch": "scratch on the target, same compute",
}


def write_results(out: dict, results: Path) -> None:
    """transfer.json and transfer.md (mean ± std over the seeds done so far)."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "transfer.json").write_text(json.dumps(out, indent=2) + "\n")
    rows = list(out["seeds"].values())

    def mean(variant, key):
        vals = [r[variant][key] for r in rows]
        return f"{statistics.mean(vals):.2f} ± {statistics.pstdev(vals):.2f}"

    md = [
        "# Transfer mnist5k -> digits vs scratch at equal compute",
        "",
        f"{len(rows)} seeds (mean ± std); scratch: {out['scratch_epochs']} sandwich epochs = {out['scratch_passes']} "
        f"subnet passes on the target; transfer: at most {out['transfer_passes_upper_bound']} subnet passes of "
        "shifting on the target (counted: see the table).",
        "",
        "| variant | test acc. of the max-acc pick (%) | best test acc. on the front (%) | target passes |",
        "|---|---|---|---|",
    ]
    for key, label in VARIANTS.items():
        passes = [r[key]["shift_passes"] for r in rows]
        spent = out["scratch_passes"] if key == "scratch" else round(statistics.mean(passes))
        md.append(
            f"| {label} | {mean(key, 'picked_test_accuracy')} | {mean(key, 'best_front_test_accuracy')} | {spent} |"
        )
    (results / "transfer.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
