"""Benchmark: INT8 (ONNX Runtime static QDQ quantization) against FP32 for the same subnets (issue 17).

For ``--subnets`` architectures of compact-mbv3 (stratified by size, extremes included) extracted from
the Fashion-MNIST supernet that ``bench_nat.py`` trains for its seed 0 (trained here if missing): the
validation accuracy of the FP32 subnet (PyTorch, BN recalibrated) and of its INT8 model in ONNX
Runtime (calibrated on 256 of the BN-recalibration images), and the latency of both in ONNX Runtime
(batch 1, 1 thread), measured side by side: FP32 and INT8 blocks alternate ``--rounds`` times per
subnet and the INT8 / FP32 ratio is the median of the per-round ratios. Then the (error, latency)
fronts of the two precisions over the same subnets: which subnets move on or off the front, and
Kendall tau between the precisions for accuracy and for latency (beside tau of MACs with each latency:
the proxy a latency measurement must beat).

Usage: python bench/bench_int8.py [--subnets 40] [--rounds 5]
Writes bench/results/int8.json and int8.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from bench_nat import DATASETS, timed

from shiftnas.config import EvalConfig, LatencyConfig, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.evaluation.latency_dataset import stratified_sample
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.search.base import nondominated
from shiftnas.engine.training.supernet import train_supernet
from shiftnas.hardware import count_macs, export_onnx, measure_latency
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.predictors.ranking import kendall_tau
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"
DATA = "fashion-mnist"
SUPERNET = Path("runs/bench_nat") / DATA / "seed0"  # shared with bench_nat.py and bench_search_supernet.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subnets", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30, help="timed runs per block")
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = DATASETS[DATA]
    torch.manual_seed(0)
    data = load_dataset(DATA, seed=0, **spec["load"])
    space = get_space("compact-mbv3", resolutions=spec["resolutions"])
    net = space.build_supernet(data.num_classes)
    SUPERNET.mkdir(parents=True, exist_ok=True)
    timed(
        SUPERNET / "supernet.seconds",
        lambda: train_supernet(
            space, net, data, TrainConfig(epochs=args.epochs, batch_size=64), SUPERNET / "supernet.pt"
        ),
    )
    net.eval()
    ecfg = EvalConfig(calib_size=spec["calib_size"], val_images="all")
    fp32_eval = SubnetEvaluator(space, net, data, ecfg, seed=0)
    int8_eval = SubnetEvaluator(space, net, data, ecfg, seed=0, precision="int8")
    lcfg = LatencyConfig(warmup=10, repeats=1, runs=args.runs, references=0)
    rows = []
    for i, arch in enumerate(stratified_sample(space, args.subnets, seed=3)):
        t0 = time.time()
        subnet = fp32_eval.subnet(arch)
        chw = tuple(space.input_size(arch))
        fp32_onnx = export_onnx(subnet, (1, *chw))
        t1 = time.time()
        int8_onnx = int8_eval.deployed(arch, subnet)
        quantize_seconds = time.time() - t1
        ratios, fp32_ms, int8_ms = [], [], []
        for _ in range(args.rounds):  # alternate blocks: load drift hits both precisions alike
            a = measure_latency(fp32_onnx, chw, lcfg).median_ms
            b = measure_latency(int8_onnx, chw, lcfg).median_ms
            fp32_ms.append(a), int8_ms.append(b), ratios.append(b / a)
        row = {
            "key": arch.key(),
            "mmacs": count_macs(subnet, chw) / 1e6,
            "fp32_accuracy": fp32_eval.score(arch, subnet=subnet).accuracy,
            "int8_accuracy": int8_eval.score(arch, subnet=subnet).accuracy,
            "fp32_ms": float(np.median(fp32_ms)),
            "int8_ms": float(np.median(int8_ms)),
            "ratio": float(np.median(ratios)),
            "ratio_spread": [float(min(ratios)), float(max(ratios))],
            "fp32_bytes": len(fp32_onnx),
            "int8_bytes": len(int8_onnx),
            "quantize_seconds": quantize_seconds,
        }
        rows.append(row)
        print(
            f"{i + 1}/{args.subnets} {arch.key()}: acc {row['fp32_accuracy']:.2f} -> {row['int8_accuracy']:.2f}, "
            f"latency x{row['ratio']:.2f} ({time.time() - t0:.0f} s)",
            flush=True,
        )
    out = {"args": vars(args), "subnets": rows, **summary(rows)}
    atomic_write_json(RESULTS / "int8.json", out)
    atomic_write_text(RESULTS / "int8.md", markdown(out))
    print(markdown(out))


def summary(rows: list[dict]) -> dict:
    def front(acc: str, ms: str) -> set[str]:
        F = np.array([[100 - r[acc], r[ms]] for r in rows])
        return {rows[i]["key"] for i in nondominated(F)}

    f32, i8 = front("fp32_accuracy", "fp32_ms"), front("int8_accuracy", "int8_ms")
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    drop = np.array(col("fp32_accuracy")) - np.array(col("int8_accuracy"))
    return {
        "ratio_median": float(np.median(col("ratio"))),
        "ratio_range": [float(min(col("ratio"))), float(max(col("ratio")))],
        "faster_share": float(np.mean(np.array(col("ratio")) < 1)),
        "drop_median": float(np.median(drop)),
        "drop_range": [float(drop.min()), float(drop.max())],
        "tau_accuracy": kendall_tau(col("fp32_accuracy"), col("int8_accuracy")),
        "tau_latency": kendall_tau(col("fp32_ms"), col("int8_ms")),
        "tau_macs_fp32_latency": kendall_tau(col("mmacs"), col("fp32_ms")),
        "tau_macs_int8_latency": kendall_tau(col("mmacs"), col("int8_ms")),
        "size_ratio_median": float(np.median(np.array(col("int8_bytes")) / np.array(col("fp32_bytes")))),
        "front_fp32": sorted(f32),
        "front_int8": sorted(i8),
        "front_both": sorted(f32 & i8),
    }


def markdown(out: dict) -> str:
    rows = out["subnets"]
    lines = [
        "# INT8 vs FP32: the same subnets in ONNX Runtime (compact-mbv3, Fashion-MNIST supernet)",
        "",
        f"{len(rows)} subnets (stratified by size); latency batch 1, 1 thread, FP32 and INT8 blocks alternated "
        f"{out['args']['rounds']} times per subnet ({out['args']['runs']} timed runs each), ratio = median of the "
        "per-round INT8 / FP32 ratios; accuracy on the 2,000 validation images (INT8: calibrated on 256 images).",
        "",
        "| | value |",
        "|---|---|",
        f"| INT8 / FP32 latency, median (range) | {out['ratio_median']:.2f} ({out['ratio_range'][0]:.2f}–"
        f"{out['ratio_range'][1]:.2f}) |",
        f"| subnets faster in INT8 | {100 * out['faster_share']:.0f} % |",
        f"| accuracy drop FP32 − INT8, points, median (range) | {out['drop_median']:+.2f} ({out['drop_range'][0]:+.2f}"
        f" – {out['drop_range'][1]:+.2f}) |",
        f"| Kendall τ FP32 vs INT8 accuracy | {out['tau_accuracy']:.3f} |",
        f"| Kendall τ FP32 vs INT8 latency | {out['tau_latency']:.3f} |",
        f"| Kendall τ MACs vs latency, FP32 / INT8 | {out['tau_macs_fp32_latency']:.3f} / "
        f"{out['tau_macs_int8_latency']:.3f} |",
        f"| INT8 / FP32 model size, median | {out['size_ratio_median']:.2f} |",
        f"| (error, latency) front: FP32 / INT8 / both | {len(out['front_fp32'])} / {len(out['front_int8'])} / "
        f"{len(out['front_both'])} |",
        "",
        "| subnet | MMACs | FP32 acc % | INT8 acc % | FP32 ms | INT8 ms | INT8/FP32 | front |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["mmacs"]):
        on = ("F" if r["key"] in out["front_fp32"] else "") + ("I" if r["key"] in out["front_int8"] else "")
        lines.append(
            f"| `{r['key']}` | {r['mmacs']:.2f} | {r['fp32_accuracy']:.2f} | {r['int8_accuracy']:.2f} | "
            f"{r['fp32_ms']:.3f} | {r['int8_ms']:.3f} | {r['ratio']:.2f} | {on or '–'} |"
        )
    lines += ["", "front: F = on the FP32 (error, latency) front, I = on the INT8 one."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
