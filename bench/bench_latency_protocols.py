"""Benchmark (issue 16, latency): cheaper reference protocols, side by side with today's, cost and agreement.

Today's protocol opens fresh ONNX Runtime sessions for the candidate *and* its three references in every
block, warms all four, and times all four in every block (``bench/results/latency_cost.md``: the
references' runs, sessions and warm-up are 2/3 of a measurement). Two settings of ``LatencyConfig``
cut that:

- ``reference_sessions=kept``: each reference's session is opened and warmed once per process and reused
  by every later block of every candidate (re-warmed with 2 runs per block); the candidate keeps a fresh
  session per block, so its session-to-session variation is still sampled.
- ``references_timed=nearest``: blocks after the first time only the reference nearest the candidate
  in the first block, the one its ratio is taken to anyway.

For each of a MACs-stratified sample of ``compact-mbv3`` architectures (batch 1, 1 thread, 3 blocks x 30
runs, 10 warm-up), every protocol measures it twice (two repeats, protocols in a rotating order, one
process, so they share whatever load the machine has). Reported per protocol: the wall seconds of a
measurement (export included) and their paired ratio to today's protocol, the whole over the candidate's
own timed runs (the issue's goal: <= 2x), and the agreement of the two repeats (Kendall tau, MAPE) of the
raw median and of the reference-corrected latency (ratio x that reference's median over the repeat,
as the latency datasets compute it), beside the agreement of each protocol with today's.

Usage: python bench/bench_latency_protocols.py [--archs 24]
Writes bench/results/latency_protocols.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_latency_cost import measure_one  # noqa: E402

from shiftnas.config import LatencyConfig  # noqa: E402
from shiftnas.engine.evaluation.latency_dataset import reference_models, stratified_sample  # noqa: E402
from shiftnas.io import atomic_write_json, atomic_write_text  # noqa: E402
from shiftnas.predictors.latency import prediction_errors  # noqa: E402
from shiftnas.predictors.ranking import kendall_tau  # noqa: E402
from shiftnas.search_spaces import get_space  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PROTOCOLS = {
    "fresh, all (today)": dict(reference_sessions="fresh", references_timed="all"),
    "kept, all": dict(reference_sessions="kept", references_timed="all"),
    "kept, nearest": dict(reference_sessions="kept", references_timed="nearest"),
}


def corrected(rows: list[dict]) -> np.ndarray:
    """ratio x the median latency of the row's reference over ``rows`` (latency_dataset.latencies)."""
    typical: dict[str, list[float]] = {}
    for r in rows:
        typical.setdefault(r["reference"], []).append(r["reference_ms"])
    return np.array([r["ratio"] * statistics.median(typical[r["reference"]]) for r in rows])


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"kendall_tau": kendall_tau(a, b), "mape": prediction_errors(list(a), list(b))["mape"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=24)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = get_space("compact-mbv3")
    torch.manual_seed(0)
    supernet = space.build_supernet(10).eval()
    cfgs = {name: LatencyConfig(**kw) for name, kw in PROTOCOLS.items()}
    refs = reference_models(space, supernet, LatencyConfig())
    archs = stratified_sample(space, args.archs, seed=0)
    for cfg in cfgs.values():
        measure_one(space, supernet, archs[0], cfg, refs)  # warm-up: imports, first export, kept sessions
    names = list(cfgs)
    rows: dict[str, list[list[dict]]] = {n: [[], []] for n in names}
    for i, arch in enumerate(archs):
        for rep in (0, 1):
            k = (2 * i + rep) % len(names)
            for name in names[k:] + names[:k]:  # rotating order: no protocol always runs first
                result = measure_one(space, supernet, arch, cfgs[name], refs)
                rows[name][rep].append(result)
        print(
            f"[{i + 1}/{len(archs)}] " + ", ".join(f"{n}: {rows[n][1][-1]['total_s']:.2f} s" for n in names), flush=True
        )
    today = names[0]
    summary = {}
    for name in names:
        a, b = rows[name]
        total = [r["total_s"] for rep in rows[name] for r in rep]
        paired = [t0["total_s"] / t["total_s"] for rep in (0, 1) for t0, t in zip(rows[today][rep], rows[name][rep])]
        summary[name] = {
            "median_total_s": statistics.median(total),
            "today_over_this": statistics.median(paired),
            "today_over_this_range": [min(paired), max(paired)],
            "median_total_over_timed": statistics.median(r["total_over_timed"] for rep in rows[name] for r in rep),
            "repeat_raw": agreement(np.array([r["median_ms"] for r in a]), np.array([r["median_ms"] for r in b])),
            "repeat_corrected": agreement(corrected(a), corrected(b)),
            "vs_today_corrected": agreement(corrected(rows[today][0]), corrected(a)),
        }
    result = {"archs": len(archs), "protocols": PROTOCOLS, "summary": summary, "rows": rows}
    atomic_write_json(args.out / "latency_protocols.json", result)
    lines = [
        "# Cheaper latency protocols, side by side (issue 16)",
        "",
        f"{len(archs)} MACs-stratified compact-mbv3 architectures, ONNX Runtime CPU, batch 1, 1 thread, 3 blocks x "
        "30 runs, 10 warm-up, 3 references; every protocol measures every architecture twice, in a rotating "
        "order, in one process. Wall seconds of a whole measurement (extract + export + protocol). Agreement: "
        "Kendall τ and MAPE between the two repeats (raw median; reference-corrected), and of the corrected "
        "latency with today's protocol's first repeat.",
        "",
        "| protocol | s per measurement | speed-up vs today (paired median, range) | whole / timed runs | "
        "repeat τ raw | repeat τ corrected | repeat MAPE corrected | τ vs today (corrected) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lo, hi = s["today_over_this_range"]
        lines.append(
            f"| {name} | {s['median_total_s']:.2f} | {s['today_over_this']:.2f}× ({lo:.2f}–{hi:.2f}) | "
            f"{s['median_total_over_timed']:.1f}× | {s['repeat_raw']['kendall_tau']:.3f} | "
            f"{s['repeat_corrected']['kendall_tau']:.3f} | {s['repeat_corrected']['mape']:.1f} % | "
            f"{s['vs_today_corrected']['kendall_tau']:.3f} |"
        )
    atomic_write_text(args.out / "latency_protocols.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
