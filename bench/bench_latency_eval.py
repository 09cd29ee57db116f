"""Benchmark 1: ONNX Runtime vs PyTorch eager latency, and the cost of one subnet evaluation.

Side by side in one run on this machine (timings are noisy here, so compare the ratios):
  A. latency of the same extracted subnets in ONNX Runtime (our profiler's session settings) and
     in PyTorch eager, interleaved run by run, 1 thread each;
  B. one subnet evaluation (BN recalibration on 500 training images + validation on the
     validation split): our evaluator vs the ``ofa`` package's recipe (``get_active_subnet`` +
     ``set_running_statistics`` + a plain validation loop), same subnets, same data, alternating.

Usage: python bench/bench_latency_eval.py [--supernet runs/default/supernet.pt] [--subnets 8]
Writes bench/results/latency_eval.json and bench/results/latency_eval.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from shiftnas.config import EvalConfig, LatencyConfig, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.checkpoint import load_supernet_weights, read_checkpoint
from shiftnas.engine.evaluation.subnet import SubnetEvaluator, accuracy
from shiftnas.engine.tensors import resize
from shiftnas.engine.training.supernet import train_supernet
from shiftnas.hardware import deployable, export_onnx, hardware_fingerprint, make_session
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"


def supernet_for(space, data, path: str | None):
    net = space.build_supernet(data.num_classes)
    if path and Path(path).is_file():
        load_supernet_weights(net, read_checkpoint(path)["state_dict"])
        return net.eval(), f"loaded {path}"
    ckpt = Path("runs/bench_supernet.pt")
    train_supernet(space, net, data, TrainConfig(epochs=2), ckpt, seed=0)
    return net.eval(), "trained 2 epochs for this benchmark"


def latency_pair(model, shape, warmup=20, runs=200):
    """Interleaved ORT / torch-eager timings (ms) of the same subnet at batch 1."""
    sess = make_session(export_onnx(model, (1, *shape)), LatencyConfig(intra_threads=1))
    dep = deployable(model)
    x = torch.randn(1, *shape)
    feed = {"input": x.numpy()}
    ort_ms, torch_ms = [], []
    with torch.no_grad():
        for i in range(warmup + runs):
            t0 = time.perf_counter_ns()
            sess.run(None, feed)
            t1 = time.perf_counter_ns()
            dep(x)
            t2 = time.perf_counter_ns()
            if i >= warmup:
                ort_ms.append((t1 - t0) / 1e6)
                torch_ms.append((t2 - t1) / 1e6)
    return statistics.median(ort_ms), statistics.median(torch_ms)


def ofa_recipe_accuracy(space, net, arch, calib: torch.Tensor, data, batch_size: int) -> float:
    """The ofa package's own evaluation recipe (ofa.md §4): extract, set_running_statistics, validate."""
    from ofa.imagenet_classification.elastic_nn.utils import set_running_statistics

    space.activate(net, arch)
    sub = net.get_active_subnet(preserve_weight=True)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(resize(calib, arch.resolution), torch.zeros(len(calib))), batch_size=100
    )
    set_running_statistics(sub, loader)
    sub.eval()
    images, labels = data.val.tensors
    return accuracy(sub, images, labels, arch.resolution, batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", default="runs/default/supernet.pt")
    ap.add_argument("--subnets", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = get_space("compact-mbv3")
    data = load_dataset("mnist5k", seed=0)
    net, origin = supernet_for(space, data, args.supernet)
    rng = np.random.default_rng(args.seed)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(args.subnets - 2)]

    lat_rows = []
    for arch in archs:
        sub = space.extract(net, arch)
        o, t = latency_pair(sub, space.input_size(arch))
        lat_rows.append({"arch": arch.key(), "ort_ms": o, "torch_eager_ms": t, "torch_over_ort": t / o})
        print(f"latency {arch.key()}: ORT {o:.3f} ms, torch {t:.3f} ms")

    cfg = EvalConfig(calib_size=500, val_images="all")
    eval_rows = []
    for i, arch in enumerate(archs):
        ours_eval = SubnetEvaluator(space, net, data, cfg, seed=args.seed)
        calib = ours_eval.calibration_images(data.image_size)  # the same fixed subset for both recipes

        def ours():
            return ours_eval.score(arch).accuracy

        def theirs():
            return ofa_recipe_accuracy(space, net, arch, calib, data, cfg.batch_size)

        timed = {}
        for name, fn in (("ours", ours), ("ofa", theirs)) if i % 2 == 0 else (("ofa", theirs), ("ours", ours)):
            t0 = time.perf_counter()
            acc = fn()
            timed[name] = (time.perf_counter() - t0, acc)
        (ours_s, ours_acc), (ofa_s, ofa_acc) = timed["ours"], timed["ofa"]
        eval_rows.append(
            {
                "arch": arch.key(),
                "ours_s": ours_s,
                "ofa_s": ofa_s,
                "ofa_over_ours": ofa_s / ours_s,
                "ours_val_acc": ours_acc,
                "ofa_val_acc": ofa_acc,
            }
        )
        print(f"eval {arch.key()}: ours {ours_s:.2f} s ({ours_acc:.1f}%), ofa {ofa_s:.2f} s ({ofa_acc:.1f}%)")

    summary = {
        "median_torch_over_ort": statistics.median(r["torch_over_ort"] for r in lat_rows),
        "median_ofa_over_ours_eval": statistics.median(r["ofa_over_ours"] for r in eval_rows),
        "max_abs_accuracy_difference": max(abs(r["ours_val_acc"] - r["ofa_val_acc"]) for r in eval_rows),
    }
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": hardware_fingerprint().as_dict(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "supernet": origin,
        "threads": 1,
        "latency": lat_rows,
        "evaluation": eval_rows,
        "summary": summary,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latency_eval.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# ONNX Runtime vs PyTorch eager; our evaluator vs ofa's recipe",
        "",
        f"{out['date']}, {out['machine']['cpu_model']}, 1 thread, supernet: {origin}. "
        "Measured side by side in one run; compare ratios, not absolute times.",
        "",
        "| subnet | ORT ms | torch eager ms | torch / ORT | eval ours s | eval ofa s | ofa / ours | val acc ours / ofa |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lr_, er in zip(lat_rows, eval_rows):
        lines.append(
            f"| `{lr_['arch']}` | {lr_['ort_ms']:.3f} | {lr_['torch_eager_ms']:.3f} | {lr_['torch_over_ort']:.2f} | "
            f"{er['ours_s']:.2f} | {er['ofa_s']:.2f} | {er['ofa_over_ours']:.2f} | "
            f"{er['ours_val_acc']:.1f} / {er['ofa_val_acc']:.1f} |"
        )
    lines += [
        "",
        f"Median torch-eager / ORT latency: **{summary['median_torch_over_ort']:.2f}x**. "
        f"Median ofa-recipe / shiftnas evaluation time: **{summary['median_ofa_over_ours_eval']:.2f}x** "
        f"(largest accuracy difference between the two: {summary['max_abs_accuracy_difference']:.2f} points).",
    ]
    (RESULTS / "latency_eval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
