"""Benchmark (issue 16, latency): cheaper latency protocols, side by side, cost and agreement.

The first protocol opened fresh ONNX Runtime sessions for the candidate *and* its three references in
every block, warmed all four, and timed all four in every block (``bench/results/latency_cost.md``: the
references' runs, sessions and warm-up were 2/3 of a measurement). Settings of ``LatencyConfig`` that cut it:

- ``reference_sessions=kept``: each reference's session is opened and warmed once per process and reused
  by every later block of every candidate (re-warmed with 2 runs per block).
- ``references_timed=nearest``: blocks after the first time only the reference nearest the candidate
  in the first block, the one its ratio is taken to anyway; ``guessed``: every block times only the
  reference whose latency (timed once per process) is nearest the candidate's warm-up runs.
- ``candidate_sessions=once``: one session for the candidate per measurement, warmed once and re-warmed
  with 2 runs per block, instead of a fresh session per block.

- ``references=0``: no reference at all: the candidate's timed runs alone, no drift check (nothing to
  re-measure a block against) and no reference-corrected latency (a search ranks by the raw median
  anyway; ``shiftnas profile`` datasets need references for their corrected scale).

For each of a MACs-stratified sample of ``compact-mbv3`` architectures (batch 1, 1 thread, 3 blocks x 30
runs, 10 warm-up), every protocol measures it twice (two repeats, protocols in a rotating order, one
process, so they share whatever load the machine has), once on an idle machine and, with ``--burner``,
again beside one busy process (a one-thread torch convolution loop, as a search's accuracy scoring
beside a background latency measurement) and beside one busy half the time in random 0.3-0.7 s spells
(load that comes and goes, which the interleaved references are there to cancel). Each protocol exports through its own block cache, as one
search does (``hardware/stitch.py``). Reported per protocol: the wall seconds of a
measurement (export included) and their paired ratio to the first protocol and to ``DEFAULT_BEFORE``, the
whole over the candidate's own timed runs and over all timed runs (the candidate's and the references'),
and the agreement of the two repeats (Kendall tau, MAPE) of the raw median and of the reference-corrected
latency (ratio x that reference's median over the repeat, as the latency datasets compute it; the raw
median without references), with a paired bootstrap over architectures of the corrected repeat tau's
difference to the default's, and the corrected latency's tau with the first repeat of ``fresh, all``
measured idle (the most careful protocol; how well each protocol ranks by what a search compares).

Usage: python bench/bench_latency_protocols.py [--archs 40] [--burner]
Writes bench/results/latency_protocols.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_latency_cost import measure_one  # noqa: E402

import shiftnas.hardware.latency as latency_module  # noqa: E402
from shiftnas.config import LatencyConfig  # noqa: E402
from shiftnas.engine.evaluation.latency_dataset import reference_models, stratified_sample  # noqa: E402
from shiftnas.hardware.stitch import BlockExports  # noqa: E402
from shiftnas.io import atomic_write_json, atomic_write_text  # noqa: E402
from shiftnas.predictors.latency import prediction_errors  # noqa: E402
from shiftnas.predictors.ranking import kendall_tau  # noqa: E402
from shiftnas.search_spaces import get_space  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PROTOCOLS = {  # the first is the default: the baseline of the paired speed-ups and of "delta tau"
    "kept, nearest": dict(reference_sessions="kept", references_timed="nearest", candidate_sessions="per_block"),
    "fresh, all": dict(reference_sessions="fresh", references_timed="all", candidate_sessions="per_block"),
    "kept, nearest, candidate once": dict(
        reference_sessions="kept", references_timed="nearest", candidate_sessions="once"
    ),
    "kept, guessed, candidate once": dict(
        reference_sessions="kept", references_timed="guessed", candidate_sessions="once"
    ),
    "no references": dict(references=0, candidate_sessions="per_block"),
    "no references, candidate once": dict(references=0, candidate_sessions="once"),
}
DEFAULT = "kept, nearest"  # the default since 2026-12-06
CAREFUL = "fresh, all"  # every reference in every block, fresh sessions: the agreement yardstick
# a one-thread convolution loop that says when it runs and stops when this process is gone (even if killed)
_CONV = (
    "import os, random, sys, time, torch\ntorch.set_num_threads(1)\nparent = os.getppid()\n"
    "x, w = torch.randn(8, 32, 32, 32), torch.randn(32, 32, 3, 3)\ntorch.conv2d(x, w, padding=1)\n"
    "print('ready', flush=True)\nrandom.seed(0)\n"
)
LOADS = {  # name -> the busy process beside the measurements (None: idle)
    "idle": None,
    "beside one busy process": _CONV + "while os.getppid() == parent:\n    torch.conv2d(x, w, padding=1)\n",
    # busy half of every 0.6-1.4 s, as accuracy scoring pauses between populations: load that comes and goes
    "beside an intermittent busy process": _CONV
    + "while os.getppid() == parent:\n    end = time.perf_counter() + random.uniform(0.3, 0.7)\n"
    "    while time.perf_counter() < end:\n        torch.conv2d(x, w, padding=1)\n"
    "    time.sleep(random.uniform(0.3, 0.7))\n",
}


def corrected(rows: list[dict]) -> np.ndarray:
    """ratio x the median latency of the row's reference over ``rows`` (latency_dataset.latencies)."""
    typical: dict[str, list[float]] = {}
    for r in rows:
        if r["reference"] is not None:
            typical.setdefault(r["reference"], []).append(r["reference_ms"])
    return np.array(
        [
            r["median_ms"] if r["reference"] is None else r["ratio"] * statistics.median(typical[r["reference"]])
            for r in rows
        ]
    )


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"kendall_tau": kendall_tau(a, b), "mape": prediction_errors(list(a), list(b))["mape"]}


def paired_speedup(base: list[list[dict]], this: list[list[dict]]) -> tuple[float, float, float]:
    """Median (min, max) over the measurements of base's wall seconds / this protocol's, repeat by repeat."""
    ratios = [b["total_s"] / t["total_s"] for rep in (0, 1) for b, t in zip(base[rep], this[rep])]
    return statistics.median(ratios), min(ratios), max(ratios)


def raw(rows: list[dict]) -> np.ndarray:
    """The raw median latency of each row: what a search ranks by."""
    return np.array([r["median_ms"] for r in rows])


def bootstrap_tau_difference(
    this: list[list[dict]], base: list[list[dict]], values=corrected, draws: int = 2000
) -> list[float]:
    """95 % interval of (this protocol's repeat tau of ``values`` - base's), architectures resampled together."""
    a0, a1, b0, b1 = values(this[0]), values(this[1]), values(base[0]), values(base[1])
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(draws):
        i = rng.integers(0, len(a0), len(a0))
        diffs.append(kendall_tau(a0[i], a1[i]) - kendall_tau(b0[i], b1[i]))
    return [float(np.nanpercentile(diffs, 2.5)), float(np.nanpercentile(diffs, 97.5))]


def measure_all(space, supernet, archs, refs) -> dict[str, list[list[dict]]]:
    """Every protocol measures every architecture twice (rotating order), each with its own block cache."""
    cfgs = {name: LatencyConfig(**kw) for name, kw in PROTOCOLS.items()}
    caches = {name: BlockExports() for name in cfgs}
    timed = {name: refs[: cfg.references] for name, cfg in cfgs.items()}
    latency_module._kept.clear()  # each load starts as a fresh process would: kept sessions and the
    latency_module._typical_ms.clear()  # references' latency (for `guessed`) timed under this load
    for name, cfg in cfgs.items():  # warm-up: imports, kept sessions (a throw-away block cache)
        measure_one(space, supernet, archs[0], cfg, timed[name], BlockExports())
    names = list(cfgs)
    rows: dict[str, list[list[dict]]] = {n: [[], []] for n in names}
    for i, arch in enumerate(archs):
        for rep in (0, 1):
            k = (2 * i + rep) % len(names)
            for name in names[k:] + names[:k]:  # rotating order: no protocol always runs first
                rows[name][rep].append(measure_one(space, supernet, arch, cfgs[name], timed[name], caches[name]))
        print(
            f"[{i + 1}/{len(archs)}] " + ", ".join(f"{n}: {rows[n][1][-1]['total_s']:.2f} s" for n in names), flush=True
        )
    return rows


def summarize(rows: dict[str, list[list[dict]]], careful: list[dict]) -> dict:
    """Cost and agreement per protocol (``careful``: the yardstick's first repeat, measured idle)."""
    summary = {}
    for name, (a, b) in rows.items():
        every = a + b
        summary[name] = {
            "median_total_s": statistics.median(r["total_s"] for r in every),
            "default_over_this": paired_speedup(rows[DEFAULT], rows[name]),
            "median_total_over_timed": statistics.median(r["total_over_timed"] for r in every),
            "median_total_over_all_timed": statistics.median(r["total_over_all_timed"] for r in every),
            "mean_blocks": float(np.mean([3 + r["remeasured"] for r in every])),
            "repeat_raw": agreement(raw(a), raw(b)),
            "repeat_raw_tau_minus_default_ci95": bootstrap_tau_difference(rows[name], rows[DEFAULT], raw),
            "repeat_corrected": agreement(corrected(a), corrected(b)),
            "repeat_tau_minus_default_ci95": bootstrap_tau_difference(rows[name], rows[DEFAULT]),
            "vs_careful_corrected": agreement(corrected(careful), corrected(a)),
        }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=40)
    ap.add_argument("--burner", action="store_true", help="measure again beside a busy and an intermittent process")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = get_space("compact-mbv3")
    torch.manual_seed(0)
    supernet = space.build_supernet(10).eval()
    refs = reference_models(space, supernet, LatencyConfig())
    archs = stratified_sample(space, args.archs, seed=0)
    rows = {}
    for load, code in LOADS.items():
        if code is None or args.burner:
            burner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) if code else None
            try:
                if burner is not None and burner.stdout.readline().strip() != "ready":
                    raise SystemExit(f"error: the busy process for '{load}' did not start")
                rows[load] = measure_all(space, supernet, archs, refs)
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
    careful = rows["idle"][CAREFUL][0]
    summary = {load: summarize(r, careful) for load, r in rows.items()}
    result = {"archs": len(archs), "protocols": PROTOCOLS, "default": DEFAULT, "summary": summary, "rows": rows}
    atomic_write_json(args.out / "latency_protocols.json", result)
    lines = [
        "# Cheaper latency protocols, side by side (issue 16)",
        "",
        f"{len(archs)} MACs-stratified compact-mbv3 architectures, ONNX Runtime CPU, batch 1, 1 thread, 3 blocks x "
        "30 runs, 10 warm-up, 3 references unless none; every protocol measures every architecture twice, in a "
        "rotating order, in one process, its graphs stitched from its own block cache; idle, then beside one busy "
        "process (a one-thread torch convolution loop), then beside one that is busy half the time in random "
        "0.3-0.7 s spells. Wall seconds of a whole measurement (extract + export + "
        f"protocol); speed-ups are paired medians over the measurements (range). Agreement: Kendall τ and MAPE "
        "between the two repeats (raw median; reference-corrected, the raw median where there is no reference), "
        f"the 95 % bootstrap intervals of the raw and of the corrected repeat τ minus `{DEFAULT}`'s (the default; "
        f"over architectures), and τ of the corrected latency with `{CAREFUL}`'s first idle repeat. Blocks: timed "
        "blocks per measurement (3 + those re-measured because a reference drifted).",
        "",
        f"| load | protocol | s per measurement | speed-up vs `{DEFAULT}` | whole / candidate's timed runs | whole / "
        f"all timed runs | blocks | repeat τ raw | Δτ raw vs `{DEFAULT}` (95 % CI) | repeat τ corrected | Δτ "
        f"corrected vs `{DEFAULT}` (95 % CI) | repeat MAPE corrected | τ vs `{CAREFUL}` idle |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for load, per_protocol in summary.items():
        for name, s in per_protocol.items():
            f1 = s["default_over_this"]
            rlo, rhi = s["repeat_raw_tau_minus_default_ci95"]
            lo, hi = s["repeat_tau_minus_default_ci95"]
            lines.append(
                f"| {load} | {name} | {s['median_total_s']:.2f} | {f1[0]:.2f}× ({f1[1]:.2f}–{f1[2]:.2f}) | "
                f"{s['median_total_over_timed']:.1f}× | {s['median_total_over_all_timed']:.2f}× | "
                f"{s['mean_blocks']:.1f} | {s['repeat_raw']['kendall_tau']:.3f} | {rlo:+.3f} to {rhi:+.3f} | "
                f"{s['repeat_corrected']['kendall_tau']:.3f} | {lo:+.3f} to {hi:+.3f} | "
                f"{s['repeat_corrected']['mape']:.1f} % | {s['vs_careful_corrected']['kendall_tau']:.3f} |"
            )
    atomic_write_text(args.out / "latency_protocols.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
