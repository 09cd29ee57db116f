"""Benchmark (issue 16, latency): what one latency measurement costs, phase by phase, vs its timed runs.

One measurement of a search (a latency-cache miss) = take the subnet's net config (``subnet_recipe``), export
its graph (stitched from per-block ``torch.onnx`` exports cached over the run, ``hardware/stitch.py``; the
subnet is built, i.e. extracted, only when a piece is missing), then ``measure_latency``
with a search's settings (``HardwareConfig``: since 2026-12-07 one ONNX Runtime session per measurement,
warmed, then ``repeats`` blocks of timed runs of the candidate alone, each re-warmed with 2 runs;
``shiftnas profile``'s datasets interleave 3 references, latency.md §2.4-2.5). ``LatencyResult.cost``
records the wall seconds of each phase.

Reported per architecture and as medians: the share of each phase and the ratio of the whole to the
candidate's own timed runs (the issue's goal: <= 2x), on a MACs-stratified sample of ``compact-mbv3``
(``make run``'s space), batch 1, 1 thread. Wall-clock seconds: run it on a quiet machine.

Side by side on the same architectures, in the same loop: the subnet's extraction (what every measurement
cost before recipes), the whole-subnet export (what every measurement cost before stitching), and the latency of the whole graph measured twice around the stitched graph's
(whole, stitched, whole; every reference timed, ratios to one shared reference), so the stitched graph's
paired difference can be read against the protocol's own repeat noise.

Usage: python bench/bench_latency_cost.py [--archs 144]
Writes bench/results/latency_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from shiftnas.config import HardwareConfig, LatencyConfig
from shiftnas.engine.evaluation.latency_dataset import reference_models, stratified_sample
from shiftnas.hardware import export_onnx, measure_latency
from shiftnas.hardware.macs import count_macs
from shiftnas.hardware.quantize import deployed_onnx
from shiftnas.hardware.stitch import BlockExports, SubnetRecipe, subnet_recipe
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"
PHASES = (
    "config_s",
    "build_s",
    "export_s",
    "sessions_s",
    "warmup_s",
    "reference_runs_s",
    "bookkeeping_s",
    "candidate_runs_s",
)


def measure_one(space, supernet, arch, cfg: LatencyConfig, refs, blocks: BlockExports, compare_refs=None) -> dict:
    """One search-like measurement of ``arch`` under ``cfg`` (interleaved with ``refs``, as many as
    ``cfg.references``), phase by phase; with ``compare_refs`` also the whole-subnet export's cost and its latency
    beside the stitched graph's, as ratios to those references (three more measurements, not in ``total_s``)."""
    t0 = time.perf_counter()
    recipe = subnet_recipe(space, supernet, arch)  # what the search's latency child does (no module built)
    builds: list[float] = []

    def build():
        t = time.perf_counter()
        model = recipe.build()
        builds.append(time.perf_counter() - t)
        return model

    t1 = time.perf_counter()
    chw = tuple(space.input_size(arch))
    onnx_bytes = deployed_onnx(SubnetRecipe(recipe.config, build), (cfg.batch_size, *chw), cfg.precision, blocks=blocks)
    t2 = time.perf_counter()
    result = measure_latency(onnx_bytes, chw, cfg, refs[: cfg.references])
    t3 = time.perf_counter()
    cost = dict(result.cost)
    row = {"key": arch.key(), "median_ms": result.median_ms,
           "remeasured": result.remeasured, "ratio": result.ratio, "reference": result.reference,
           "reference_ms": result.reference_ms, "config_s": t1 - t0, "build_s": sum(builds),
           "export_s": t2 - t1 - sum(builds), **cost, "bookkeeping_s": (t3 - t2) - sum(cost.values())}  # fmt: skip
    row["total_s"] = t3 - t0
    row["total_over_timed"] = row["total_s"] / cost["candidate_runs_s"]
    row["total_over_all_timed"] = row["total_s"] / (cost["candidate_runs_s"] + cost.get("reference_runs_s", 0.0))
    t = time.perf_counter()
    sub = space.extract(supernet, arch)  # what every measurement cost before recipes (not in total_s)
    row["extract_s"] = time.perf_counter() - t
    row["mmacs"] = count_macs(sub, chw) / 1e6
    if compare_refs is None:
        return row
    t4 = time.perf_counter()
    whole = export_onnx(sub, (cfg.batch_size, *chw))
    row["whole_export_s"] = time.perf_counter() - t4
    # the latency comparison: whole, stitched, whole, every reference timed in every block, so that all
    # three are read against the same reference (the one nearest the first whole measurement)
    every = dataclasses.replace(cfg, references=len(compare_refs), references_timed="all")
    before = measure_latency(whole, chw, every, compare_refs)
    stitched = measure_latency(onnx_bytes, chw, every, compare_refs)
    after = measure_latency(whole, chw, every, compare_refs)
    row["comparison_reference"] = before.reference
    row["compared_ratios"] = [m.ratios[before.reference] for m in (before, stitched, after)]  # whole, stitched, whole
    return row


def log_differences(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per architecture, log(stitched / the geometric mean of the whole graph's two measurements around it)
    and log(whole repeat / whole), of the ratios to one shared reference."""
    ratios = np.log(np.array([r["compared_ratios"] for r in rows]))
    return ratios[:, 1] - (ratios[:, 0] + ratios[:, 2]) / 2, ratios[:, 2] - ratios[:, 0]


def median_interval(values: np.ndarray, seed: int = 0, draws: int = 10_000) -> tuple[float, float]:
    """95 % bootstrap interval of the median (resampling architectures)."""
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(draws, len(values))), axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=144)  # about a default search's distinct architectures
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    search = HardwareConfig()  # what a search measures with (no references, one session per measurement)
    cfg = LatencyConfig(**{f.name: getattr(search, f.name) for f in dataclasses.fields(LatencyConfig)})
    space = get_space("compact-mbv3")
    torch.manual_seed(0)
    supernet = space.build_supernet(10).eval()
    t = time.perf_counter()
    refs = reference_models(space, supernet, LatencyConfig())  # for the stitched-vs-whole comparison
    refs_s = time.perf_counter() - t
    archs = stratified_sample(space, args.archs, seed=0)
    measure_one(space, supernet, archs[0], cfg, refs, BlockExports(), refs)  # warm-up: imports, first export
    blocks = BlockExports()  # one for the whole run, as a profiler keeps it over a search
    rows = []
    for i, arch in enumerate(archs):
        rows.append(measure_one(space, supernet, arch, cfg, refs, blocks, refs))
        r = rows[-1]
        print(f"[{i + 1}/{len(archs)}] {arch.key()[:44]:44s} {r['median_ms']:.3f} ms: total {r['total_s']:.2f} s = "
              f"{r['total_over_timed']:.1f}x its timed runs; export {r['export_s']:.3f} s, whole {r['whole_export_s']:.3f} s",
              flush=True)  # fmt: skip
    total = sum(r["total_s"] for r in rows)
    share = {p: sum(r[p] for r in rows) / total for p in PHASES}
    ratio = [r["total_over_timed"] for r in rows]
    all_timed = [r["total_over_all_timed"] for r in rows]
    stitched_diff, repeat_diff = log_differences(rows)
    half = len(rows) // 2
    export = {
        "median_stitched_s": statistics.median(r["export_s"] for r in rows),
        "median_whole_s": statistics.median(r["whole_export_s"] for r in rows),
        "median_whole_over_stitched": statistics.median(r["whole_export_s"] / r["export_s"] for r in rows),
        "median_stitched_s_first_half": statistics.median(r["export_s"] for r in rows[:half]),
        "median_stitched_s_second_half": statistics.median(r["export_s"] for r in rows[half:]),
        "pieces_exported": blocks.exported,
        "built": sum(r["build_s"] > 0 for r in rows),
        "median_config_s": statistics.median(r["config_s"] for r in rows),
        "median_extract_s": statistics.median(r["extract_s"] for r in rows),
        "pieces_reused": blocks.reused,
    }
    low, high = median_interval(stitched_diff)
    latency_vs_whole = {
        "median_log_stitched_over_whole": float(np.median(stitched_diff)),
        "median_log_stitched_over_whole_95": [low, high],
        "median_abs_log_stitched_over_whole": float(np.median(np.abs(stitched_diff))),
        # if the two graphs ran alike, |stitched - mean(whole, whole)| has sqrt(1.5)/sqrt(2) = 0.87x the spread
        # of |whole - whole|
        "expected_if_equal": float(np.sqrt(0.75) * np.median(np.abs(repeat_diff))),
        "median_abs_log_whole_repeat": float(np.median(np.abs(repeat_diff))),
    }
    result = {
        "archs": len(rows),
        "protocol": {k: getattr(cfg, k) for k in ("repeats", "runs", "warmup", "references", "batch_size")},
        "references_built_s": refs_s,
        "share": share,
        "median_total_s": statistics.median(r["total_s"] for r in rows),
        "median_total_over_timed": statistics.median(ratio),
        "median_total_over_timed_first_24": statistics.median(ratio[:24]),
        "median_total_over_timed_first_half": statistics.median(ratio[:half]),
        "median_total_over_timed_second_half": statistics.median(ratio[half:]),
        "median_total_over_all_timed": statistics.median(all_timed),
        # a search's own figure: all its measurements' time over all their timed runs
        "aggregate_total_over_timed": total / sum(r["candidate_runs_s"] for r in rows),
        "aggregate_total_over_timed_first_48": sum(r["total_s"] for r in rows[:48])
        / sum(r["candidate_runs_s"] for r in rows[:48]),
        "export": export,
        "latency_vs_whole_graph": latency_vs_whole,
        "rows": rows,
    }
    atomic_write_json(args.out / "latency_cost.json", result)
    lines = [
        "# What one latency measurement costs (issue 16)",
        "",
        f"{len(rows)} MACs-stratified compact-mbv3 architectures, ONNX Runtime CPU, batch 1, 1 thread, the "
        f"protocol of a search ({cfg.repeats} blocks x {cfg.runs} timed runs, {cfg.warmup} warm-up, "
        f"{cfg.references} references, candidate sessions {cfg.candidate_sessions}); wall seconds. The 3 references "
        f"of the stitched-vs-whole comparison below are exported once per run ({refs_s:.1f} s, not counted).",
        "",
        "| phase | share of the time |",
        "|---|---|",
        *[f"| {p.removesuffix('_s').replace('_', ' ')} | {100 * share[p]:.1f} % |" for p in PHASES],
        "",
        f"- One measurement: median **{result['median_total_s']:.2f} s**; whole / the candidate's own timed "
        f"runs: median **{result['median_total_over_timed']:.1f}×** (range {min(ratio):.1f}–{max(ratio):.1f}×; "
        f"{result['median_total_over_timed_first_24']:.1f}× over the first {min(24, len(rows))} architectures, "
        f"{result['median_total_over_timed_first_half']:.1f}× over the first {half}, "
        f"{result['median_total_over_timed_second_half']:.1f}× over the rest; the issue's goal: ≤ 2×); whole / every timed run (the candidate's and the interleaved references'): "
        f"median **{result['median_total_over_all_timed']:.2f}×** (range {min(all_timed):.2f}–{max(all_timed):.2f}×). "
        f"All {len(rows)} measurements' time over all their timed runs (what a search of that many architectures "
        f"spends): **{result['aggregate_total_over_timed']:.2f}×** ({result['aggregate_total_over_timed_first_48']:.2f}× "
        f"over the first {min(48, len(rows))}).",
        f"- Export, stitched from cached block exports: median **{export['median_stitched_s'] * 1e3:.0f} ms** "
        f"({export['median_stitched_s_first_half'] * 1e3:.0f} ms over the first {half} architectures, "
        f"{export['median_stitched_s_second_half'] * 1e3:.0f} ms over the rest; {export['pieces_exported']} pieces "
        f"exported, {export['pieces_reused']} reused) vs the whole subnet's export, timed beside it: "
        f"{export['median_whole_s'] * 1e3:.0f} ms; paired ratio median **{export['median_whole_over_stitched']:.1f}×**.",
        f"- The subnet itself was built (extracted) for {export['built']} of {len(rows)} measurements, where a piece "
        f"was not cached; the others read only the supernet's net config: median "
        f"**{export['median_config_s'] * 1e3:.1f} ms** vs {export['median_extract_s'] * 1e3:.0f} ms for the "
        "extraction every measurement made before (timed beside it, not counted).",
        "- Latency of the stitched graph vs the whole export, measured whole, stitched, whole with every reference "
        "timed, as ratios to one shared reference: median log(stitched / whole) "
        f"{latency_vs_whole['median_log_stitched_over_whole']:+.4f} (95 % interval {low:+.4f} to {high:+.4f}); "
        f"median |difference| {latency_vs_whole['median_abs_log_stitched_over_whole']:.4f}, where equal graphs "
        f"would give {latency_vs_whole['expected_if_equal']:.4f} (0.87 x the whole graph's own repeat |difference| "
        f"{latency_vs_whole['median_abs_log_whole_repeat']:.4f}).",
        "",
        "| architecture | MMACs | median ms | total s | × timed | × all timed | build s | export s | whole export s | "
        "sessions s | warm-up s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["mmacs"]):
        lines.append(
            f"| `{r['key']}` | {r['mmacs']:.2f} | {r['median_ms']:.3f} | {r['total_s']:.2f} | "
            f"{r['total_over_timed']:.1f} | {r['total_over_all_timed']:.2f} | {r['build_s']:.3f} | "
            f"{r['export_s']:.3f} | {r['whole_export_s']:.3f} | {r['sessions_s']:.2f} | {r['warmup_s']:.2f} |"
        )
    atomic_write_text(args.out / "latency_cost.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:22]))


if __name__ == "__main__":
    main()
