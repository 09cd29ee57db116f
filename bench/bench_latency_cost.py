"""Benchmark (issue 16, latency): what one latency measurement costs, phase by phase, vs its timed runs.

One measurement of a search (a latency-cache miss) = extract the subnet, export it (deployable
activations, ``torch.onnx`` legacy exporter, ``onnx.checker``), then ``measure_latency``: per block a
fresh ONNX Runtime session for the candidate and for each reference, warm-up runs, then the timed runs
of the candidate interleaved with the references' (latency.md §2.4-2.5); a block whose reference
drifted is measured again. ``LatencyResult.cost`` records the wall seconds of each block phase.

Reported per architecture and as medians: the share of each phase and the ratio of the whole to the
candidate's own timed runs (the issue's goal: <= 2x), for the default protocol (3 blocks x 30 runs, 10
warm-up, 3 references) on a MACs-stratified sample of ``compact-mbv3`` (``make run``'s space), batch 1,
1 thread. Wall-clock seconds: run it on a quiet machine.

Usage: python bench/bench_latency_cost.py [--archs 24]
Writes bench/results/latency_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from shiftnas.config import LatencyConfig
from shiftnas.engine.evaluation.latency_dataset import reference_models, stratified_sample
from shiftnas.hardware import measure_latency
from shiftnas.hardware.macs import count_macs
from shiftnas.hardware.quantize import deployed_onnx
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"
PHASES = ("extract_s", "export_s", "sessions_s", "warmup_s", "reference_runs_s", "bookkeeping_s", "candidate_runs_s")


def measure_one(space, supernet, arch, cfg: LatencyConfig, refs) -> dict:
    t0 = time.perf_counter()
    sub = space.extract(supernet, arch)
    t1 = time.perf_counter()
    chw = tuple(space.input_size(arch))
    onnx_bytes = deployed_onnx(sub, (cfg.batch_size, *chw), cfg.precision)
    t2 = time.perf_counter()
    result = measure_latency(onnx_bytes, chw, cfg, refs)
    t3 = time.perf_counter()
    cost = dict(result.cost)
    row = {"key": arch.key(), "mmacs": count_macs(sub, chw) / 1e6, "median_ms": result.median_ms,
           "remeasured": result.remeasured, "ratio": result.ratio, "reference": result.reference,
           "reference_ms": result.reference_ms, "extract_s": t1 - t0, "export_s": t2 - t1, **cost,
           "bookkeeping_s": (t3 - t2) - sum(cost.values())}  # fmt: skip
    row["total_s"] = t3 - t0
    row["total_over_timed"] = row["total_s"] / cost["candidate_runs_s"]
    row["total_over_all_timed"] = row["total_s"] / (cost["candidate_runs_s"] + cost.get("reference_runs_s", 0.0))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=24)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = LatencyConfig()
    space = get_space("compact-mbv3")
    torch.manual_seed(0)
    supernet = space.build_supernet(10).eval()
    t = time.perf_counter()
    refs = reference_models(space, supernet, cfg)
    refs_s = time.perf_counter() - t
    archs = stratified_sample(space, args.archs, seed=0)
    measure_one(space, supernet, archs[0], cfg, refs)  # warm-up: imports, first export
    rows = []
    for i, arch in enumerate(archs):
        rows.append(measure_one(space, supernet, arch, cfg, refs))
        r = rows[-1]
        print(f"[{i + 1}/{len(archs)}] {arch.key()[:44]:44s} {r['median_ms']:.3f} ms: total {r['total_s']:.2f} s = "
              f"{r['total_over_timed']:.1f}x its timed runs", flush=True)  # fmt: skip
    total = sum(r["total_s"] for r in rows)
    share = {p: sum(r[p] for r in rows) / total for p in PHASES}
    ratio = [r["total_over_timed"] for r in rows]
    result = {
        "archs": len(rows),
        "protocol": {k: getattr(cfg, k) for k in ("repeats", "runs", "warmup", "references", "batch_size")},
        "references_built_s": refs_s,
        "share": share,
        "median_total_s": statistics.median(r["total_s"] for r in rows),
        "median_total_over_timed": statistics.median(ratio),
        "rows": rows,
    }
    atomic_write_json(args.out / "latency_cost.json", result)
    lines = [
        "# What one latency measurement costs (issue 16)",
        "",
        f"{len(rows)} MACs-stratified compact-mbv3 architectures, ONNX Runtime CPU, batch 1, 1 thread, the "
        f"default protocol ({cfg.repeats} blocks x {cfg.runs} timed runs, {cfg.warmup} warm-up, "
        f"{cfg.references} references interleaved, reference sessions {cfg.reference_sessions}, references timed "
        f"{cfg.references_timed}, candidate sessions {cfg.candidate_sessions}); wall seconds. The references are "
        "exported once per "
        f"run ({refs_s:.1f} s, not counted below).",
        "",
        "| phase | share of the time |",
        "|---|---|",
        *[f"| {p.removesuffix('_s').replace('_', ' ')} | {100 * share[p]:.1f} % |" for p in PHASES],
        "",
        f"- One measurement: median **{result['median_total_s']:.2f} s**; whole / the candidate's own timed "
        f"runs: median **{result['median_total_over_timed']:.1f}×** (range {min(ratio):.1f}–{max(ratio):.1f}×; "
        "the issue's goal: ≤ 2×).",
        "",
        "| architecture | MMACs | median ms | total s | × timed | export s | sessions s | warm-up s | reference runs s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["mmacs"]):
        lines.append(
            f"| `{r['key']}` | {r['mmacs']:.2f} | {r['median_ms']:.3f} | {r['total_s']:.2f} | "
            f"{r['total_over_timed']:.1f} | {r['export_s']:.2f} | {r['sessions_s']:.2f} | {r['warmup_s']:.2f} | "
            f"{r['reference_runs_s']:.2f} |"
        )
    atomic_write_text(args.out / "latency_cost.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:16]))


if __name__ == "__main__":
    main()
