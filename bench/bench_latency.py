"""Benchmark: how much the latency protocol removes, the latency predictor against the noise ceiling,
and the cost of a predicted query against a measurement. Side by side in one run on this machine.

  A. Stability. A fixed set of subnets, measured ``--repeats`` times (1 and 2 intra-op threads). For
     every subnet: the coefficient of variation across repeats of (i) a naive single-block median,
     (ii) the protocol's median of block medians, (iii) the protocol's paired ratio to the nearest
     interleaved reference.
  B. Predictor vs ceiling. ``--samples`` architectures of the space measured in two independent
     sessions (two latency datasets, one after the other). Over ``--splits`` random train/test splits,
     the predictor fitted on session 1's train part predicts the test architectures; it is scored
     against session 2's measurements of them. The ceiling is session 1 vs session 2 on the same test
     architectures: no predictor trained on session-1 numbers can agree with session 2 better than
     session 1 itself does, up to luck.
  C. Cost. One predicted query vs one measurement (export + protocol), median wall time.

Usage: python bench/bench_latency.py [--samples 100] [--repeats 5] [--spaces compact-mbv3,ofa-mbv3]
Writes bench/results/latency.json and bench/results/latency.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from shiftnas.config import LatencyConfig
from shiftnas.engine.evaluation.latency import PredictedLatency
from shiftnas.engine.evaluation.latency_dataset import (
    LatencyDataset,
    build_latency_dataset,
    reference_models,
    stratified_sample,
)
from shiftnas.hardware import count_macs, export_onnx, measure_latency
from shiftnas.hardware.fingerprint import fingerprint_of
from shiftnas.predictors.latency import CANDIDATES, fit_latency_predictor, prediction_errors, predictor_from_dataset
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"
SPACES = {"compact-mbv3": None, "ofa-mbv3": [160]}  # ofa-mbv3 at one mid resolution keeps the bench short


def cov(values) -> float:
    values = np.asarray(values, float)
    return float(np.std(values, ddof=1) / np.mean(values))


def stability(space_name: str, n_subnets: int, repeats: int, threads: int, base: LatencyConfig) -> dict:
    space = get_space(space_name, **({"resolutions": SPACES[space_name]} if SPACES[space_name] else {}))
    torch.manual_seed(0)
    net = space.build_supernet(10).eval()
    cfg = LatencyConfig(**{**base.__dict__, "intra_threads": threads})
    refs = reference_models(space, net, cfg)
    archs = stratified_sample(space, n_subnets + 2, 7)[2:]  # no extremes: those are the references
    models = [(a, export_onnx(space.extract(net, a), (1, *space.input_size(a))), space.input_size(a)) for a in archs]
    naive, median, ratio = ([[] for _ in archs] for _ in range(3))
    for _ in range(repeats):
        for i, (_arch, onnx_bytes, chw) in enumerate(models):
            r = measure_latency(onnx_bytes, chw, cfg, refs)
            naive[i].append(r.block_medians_ms[0])
            median[i].append(r.median_ms)
            ratio[i].append(r.ratio)
    rows = [
        {
            "key": a.key(),
            "median_ms": float(np.median(median[i])),
            "cov_naive": cov(naive[i]),
            "cov_median": cov(median[i]),
            "cov_ratio": cov(ratio[i]),
        }
        for i, (a, _, _) in enumerate(models)
    ]
    return {
        "space": space_name,
        "threads": threads,
        "repeats": repeats,
        "subnets": rows,
        **{k: float(np.mean([r[k] for r in rows])) for k in ("cov_naive", "cov_median", "cov_ratio")},
    }


def predictor_vs_ceiling(samples: int, splits: int, cfg: LatencyConfig, workdir: Path) -> dict:
    space = get_space("compact-mbv3")
    sessions = []
    for s in (1, 2):
        path = workdir / f"session{s}.json"
        t0 = time.time()
        sessions.append(build_latency_dataset(space, path, samples, cfg, fingerprint_of(cfg), seed=0))
        print(f"session {s}: {samples} architectures in {time.time() - t0:.0f} s", flush=True)
    one, two = sessions
    assert [r["key"] for r in one.records] == [r["key"] for r in two.records]
    archs, mmacs = one.archs(), np.array([r["mmacs"] for r in one.records])
    result = {"samples": samples, "splits": splits, "space": space.describe()}
    for corrected in (True, False):
        y1, y2 = one.latencies(corrected), two.latencies(corrected)
        rng = np.random.default_rng(0)
        per_split = {k: [] for k in (*CANDIDATES, "chosen", "ceiling")}
        chosen = []
        for _ in range(splits):
            perm = rng.permutation(samples)
            test, train = perm[: samples * 3 // 10], perm[samples * 3 // 10 :]
            pred = fit_latency_predictor(space, [archs[i] for i in train], mmacs[train], y1[train])
            chosen.append(pred.kind)
            test_archs = [archs[i] for i in test]
            per_split["chosen"].append(prediction_errors(y2[test], pred.predict(test_archs, mmacs[test])))
            for kind in CANDIDATES:
                p = fit_latency_predictor(space, [archs[i] for i in train], mmacs[train], y1[train], candidates=(kind,))
                per_split[kind].append(prediction_errors(y2[test], p.predict(test_archs, mmacs[test])))
            per_split["ceiling"].append(prediction_errors(y2[test], y1[test]))
        summary = {k: {m: float(np.mean([e[m] for e in v])) for m in v[0]} for k, v in per_split.items()}
        for k, v in per_split.items():
            summary[k]["kendall_tau_std"] = float(np.std([e["kendall_tau"] for e in v]))
        summary["chosen_kinds"] = {k: chosen.count(k) for k in sorted(set(chosen))}
        result["corrected" if corrected else "raw"] = summary
    return result


def cost(cfg: LatencyConfig, dataset_path: Path, n: int = 20) -> dict:
    space = get_space("compact-mbv3")
    torch.manual_seed(0)
    net = space.build_supernet(10).eval()
    refs = reference_models(space, net, cfg)
    source = PredictedLatency(predictor_from_dataset(space, LatencyDataset.load(dataset_path)), str(dataset_path))
    archs = stratified_sample(space, n, 11)
    predicted, measured = [], []
    for arch in archs:  # alternating, so both see the same machine state
        model, chw = space.extract(net, arch), space.input_size(arch)
        mmacs = count_macs(model, chw) / 1e6
        t0 = time.perf_counter()
        source.latency(arch, model, chw, mmacs)
        predicted.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        measure_latency(export_onnx(model, (1, *chw)), chw, cfg, refs)
        measured.append(time.perf_counter() - t0)
    return {
        "n": n,
        "predicted_ms": 1e3 * float(np.median(predicted)),
        "measured_ms": 1e3 * float(np.median(measured)),
        "ratio": float(np.median(measured) / np.median(predicted)),
        "predictor": source.predictor.kind,
    }


def write_markdown(res: dict, path: Path) -> None:
    lines = [
        "# Latency: protocol stability, predictor vs noise ceiling, cost",
        "",
        f"Machine: {res['machine']}. ONNX Runtime {res['ort']}, batch 1, {res['protocol']['warmup']} warm-up + "
        f"{res['protocol']['repeats']} blocks x {res['protocol']['runs']} runs, "
        f"{res['protocol']['references']} interleaved references. Generated by `bench/bench_latency.py`.",
        "",
        "## A. Run-to-run coefficient of variation (lower is better)",
        "",
        "| space | threads | subnets | repeats | naive 1-block median | protocol median | ratio to reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in res["stability"]:
        lines.append(
            f"| {s['space']} | {s['threads']} | {len(s['subnets'])} | {s['repeats']} | "
            f"{100 * s['cov_naive']:.1f}% | {100 * s['cov_median']:.1f}% | {100 * s['cov_ratio']:.1f}% |"
        )
    p = res["predictor"]
    lines += [
        "",
        f"## B. Latency predictor vs the noise ceiling ({p['samples']} compact-mbv3 architectures, "
        f"{p['splits']} random 70/30 splits, scored against an independent second session)",
        "",
    ]
    for variant in ("corrected", "raw"):
        v = p[variant]
        lines += [
            f"Target: {'reference-corrected latency' if variant == 'corrected' else 'raw median latency'}",
            "",
            "| predictor | Kendall tau | Spearman rho | MAPE | within 10% |",
            "|---|---|---|---|---|",
        ]
        for k in (*CANDIDATES, "chosen", "ceiling"):
            name = {"chosen": "chosen by CV", "ceiling": "**ceiling: session 1 vs session 2**"}.get(k, k)
            e = v[k]
            lines.append(
                f"| {name} | {e['kendall_tau']:.3f} ± {e['kendall_tau_std']:.3f} | {e['spearman_rho']:.3f} | "
                f"{e['mape']:.1f}% | {e['within_10pct']:.0f}% |"
            )
        lines += ["", f"Chosen per split: {v['chosen_kinds']}", ""]
    c = res["cost"]
    lines += [
        "## C. Cost of one latency value",
        "",
        f"Predicted query ({c['predictor']}): {c['predicted_ms']:.2f} ms; measurement (export + protocol): "
        f"{c['measured_ms']:.0f} ms; **ratio {c['ratio']:.0f}x** (medians over {c['n']} architectures).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--subnets", type=int, default=6)
    ap.add_argument("--spaces", default="compact-mbv3,ofa-mbv3")
    ap.add_argument("--workdir", default="runs/bench_latency")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import onnxruntime as ort

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = LatencyConfig(warmup=10, repeats=3, runs=30, references=3)
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {fingerprint_of(cfg).cpu_model}, "
        f"{fingerprint_of(cfg).cores} cores",
        "ort": ort.__version__,
        "protocol": cfg.__dict__,
        "stability": [],
    }
    for space_name in args.spaces.split(","):
        for threads in (1, 2):
            t0 = time.time()
            res["stability"].append(stability(space_name, args.subnets, args.repeats, threads, cfg))
            print(f"stability {space_name} {threads} thread(s): {time.time() - t0:.0f} s", flush=True)
    res["predictor"] = predictor_vs_ceiling(args.samples, args.splits, cfg, workdir)
    res["cost"] = cost(cfg, workdir / "session1.json")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps(res, indent=1))
    write_markdown(res, RESULTS / "latency.md")
    print((RESULTS / "latency.md").read_text())


if __name__ == "__main__":
    main()
