"""Benchmark: population evaluation on Dask workers, 1 against 2 (issue 15), and a cost model.

Scores rounds of ``--archs`` new compact-mbv3 architectures (BN recalibration on 500 training images,
accuracy on the 6,000-image Fashion-MNIST val split, resolutions 12-28: the ground-truth setting)
three ways per round, side by side: here in this process (1 torch thread), on a local Dask cluster
of 1 worker and on one of 2 workers (worker processes, 1 thread each). The first round of each
way is a warm-up (the context and the weights travel once) and is not counted. Throughput ratios
are medians of per-round ratios. The supernet is freshly initialised: its accuracy is irrelevant to
the time a score takes.

The cost model projects the measured per-architecture costs (scoring here, stand-alone training from
the ground-truth table) to an ImageNet-size search: every figure says whether it is measured or
projected, and the projection's assumptions are arguments.

Usage: python bench/bench_scaling.py [--archs 16] [--rounds 4]
Writes bench/results/scaling.json and scaling.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import distributed
import torch

from shiftnas.cluster.evaluation import RESOURCE, RemoteScorer
from shiftnas.cluster.pool import DaskPool
from shiftnas.config import EvalConfig
from shiftnas.data import load_dataset
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.groundtruth.table import sample_architectures
from shiftnas.hardware.macs import count_macs
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"
TABLE = Path(__file__).parent.parent / "groundtruth" / "compact-mbv3_fashion.jsonl"


def _cluster(n: int) -> distributed.LocalCluster:
    return distributed.LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        resources={RESOURCE: 1},
        dashboard_address=":0",
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", type=int, default=16, help="New architectures per round (a generation).")
    parser.add_argument("--rounds", type=int, default=4, help="Counted rounds (after one warm-up).")
    parser.add_argument("--imagenet-val", type=int, default=10_000, help="Projection: val images scored per arch.")
    parser.add_argument("--gpu-tmacs", type=float, default=20.0, help="Projection: effective TMAC/s of one GPU.")
    parser.add_argument("--search-archs", type=int, default=10_000, help="Projection: architectures one search scores.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = get_space("compact-mbv3", resolutions=[12, 16, 20, 24, 28])
    data = load_dataset("fashion-mnist", seed=0, image_size=28, train_size=10_000)
    cfg = EvalConfig(calib_size=500, val_images="all")  # as measured: every val image counts below
    torch.manual_seed(0)
    supernet = space.build_supernet(data.num_classes).eval()
    archs = sample_architectures(space, args.archs * (args.rounds + 1), seed=7)
    rounds = [archs[i * args.archs : (i + 1) * args.archs] for i in range(args.rounds + 1)]
    macs = [count_macs(space.extract(supernet, a), space.input_size(a)) for a in archs]
    images = cfg.calib_size + len(data.val)

    with _cluster(1) as c1, _cluster(2) as c2, distributed.Client(c1) as k1, distributed.Client(c2) as k2:
        scorers = {"1 worker": RemoteScorer(DaskPool(k1, RESOURCE)), "2 workers": RemoteScorer(DaskPool(k2, RESOURCE))}
        evaluators = {"local": SubnetEvaluator(space, supernet, data, cfg)}
        for name, scorer in scorers.items():
            evaluators[name] = SubnetEvaluator(space, supernet, data, cfg, remote=scorer)
        seconds: dict[str, list[float]] = {name: [] for name in evaluators}
        scores: dict[str, list[float]] = {name: [] for name in evaluators}
        for r, batch in enumerate(rounds):
            for name, evaluator in evaluators.items():
                t0 = time.perf_counter()
                result = evaluator.score_many(batch)
                if r > 0:
                    seconds[name].append(time.perf_counter() - t0)
                    scores[name] += [s.accuracy for s in result]
            print(f"round {r}: " + ", ".join(f"{n} {s[-1]:.1f} s" for n, s in seconds.items() if r > 0 and s))
    assert scores["local"] == scores["1 worker"] == scores["2 workers"], "remote scores differ from local ones"

    def ratio(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(seconds[a], seconds[b])]

    per_arch = statistics.median(seconds["local"]) / args.archs
    counted_macs = sum(macs[args.archs :]) / len(macs[args.archs :])
    mac_rate = counted_macs * images / per_arch  # MACs per second achieved by one CPU thread here
    standalone = [json.loads(line)["seconds"] for line in TABLE.read_text().splitlines()] if TABLE.is_file() else []
    projected_gpu_s = 5e8 * (args.imagenet_val + cfg.calib_size) / (args.gpu_tmacs * 1e12)
    result = {
        "archs_per_round": args.archs,
        "rounds": args.rounds,
        "images_per_score": images,
        "seconds": seconds,
        "speedup_2_over_1_workers": statistics.median(ratio("1 worker", "2 workers")),
        "speedup_2_over_1_workers_per_round": ratio("1 worker", "2 workers"),
        "remote_1_over_local": statistics.median(ratio("local", "1 worker")),
        "measured": {
            "seconds_per_arch_score_cpu_thread": per_arch,
            "mean_mmacs": counted_macs / 1e6,
            "cpu_thread_gmacs_per_s": mac_rate / 1e9,
            "standalone_seconds_median": statistics.median(standalone) if standalone else None,
            "standalone_records": len(standalone),
        },
        "projected": {
            "assumptions": {
                "subnet_mmacs": 500,
                "val_images": args.imagenet_val,
                "calib_images": cfg.calib_size,
                "gpu_effective_tmacs": args.gpu_tmacs,
                "archs_scored": args.search_archs,
            },
            "gpu_seconds_per_arch_score": projected_gpu_s,
            "search_hours_on": {n: projected_gpu_s * args.search_archs / n / 3600 for n in (1, 4, 8)},
        },
    }
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / "scaling.json", result)
    m = result["measured"]
    lines = [
        "# Population evaluation on Dask workers (issue 15)",
        "",
        f"{args.rounds} rounds of {args.archs} new architectures (compact-mbv3, res 12-28), each scored with BN "
        f"recalibration on {cfg.calib_size} images and accuracy on {len(data.val)} Fashion-MNIST val images; "
        "local / 1 worker / 2 workers side by side per round, 1 torch thread each; scores identical in all three.",
        "",
        "| | median s per round | per-round s |",
        "|---|---|---|",
        *[f"| {n} | {statistics.median(s):.1f} | {', '.join(f'{x:.1f}' for x in s)} |" for n, s in seconds.items()],
        "",
        f"- 2 workers over 1: **{result['speedup_2_over_1_workers']:.2f}×** throughput (median of per-round ratios "
        f"{', '.join(f'{x:.2f}' for x in result['speedup_2_over_1_workers_per_round'])}). This machine has 2 cores, "
        "and this process (the client, the scheduler) shares them with the workers: 2 is the ceiling.",
        f"- 1 worker against this process: {result['remote_1_over_local']:.2f}× (the cost of shipping jobs and results).",
        "",
        "## Cost model",
        "",
        "| | value | |",
        "|---|---|---|",
        f"| one architecture scored, 1 CPU thread | {m['seconds_per_arch_score_cpu_thread']:.2f} s | measured |",
        f"| mean subnet size of the rounds | {m['mean_mmacs']:.1f} MMACs | measured |",
        f"| MAC rate of scoring, 1 CPU thread | {m['cpu_thread_gmacs_per_s']:.2f} GMAC/s | measured |",
        (
            f"| one stand-alone training (ground-truth recipe) | {m['standalone_seconds_median']:.0f} s median over "
            f"{m['standalone_records']} records | measured (wall clock, 2 trainings at once on 2 cores) |"
            if m["standalone_records"]
            else "| one stand-alone training | – | no table |"
        ),
        f"| one ImageNet-size score (500 MMACs, {args.imagenet_val} + {cfg.calib_size} images, "
        f"{args.gpu_tmacs:g} TMAC/s per GPU) | {projected_gpu_s:.2f} s | projected |",
        *[
            f"| {args.search_archs} architectures on {n} GPU(s) | {h:.2f} h | projected (ideal scaling) |"
            for n, h in result["projected"]["search_hours_on"].items()
        ],
        "",
        "The projection counts MACs only (no data loading, no transfer of weights, ideal scaling across GPUs);",
        "it is a lower bound to compare with a measurement on the cluster, not a measurement.",
        "",
    ]
    atomic_write_text(RESULTS / "scaling.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
