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

For each of a MACs-stratified sample of ``compact-mbv3`` architectures (batch 1, 1 thread, 3 blocks x 30
runs, 10 warm-up), every protocol measures it twice (two repeats, protocols in a rotating order, one
process, so they share whatever load the machine has). Reported per protocol: the wall seconds of a
measurement (export included) and their paired ratio to the first protocol and to ``DEFAULT_BEFORE``, the
whole over the candidate's own timed runs and over all timed runs (the candidate's and the references'),
and the agreement of the two repeats (Kendall tau, MAPE) of the raw median and of the reference-corrected
latency (ratio x that reference's median over the repeat, as the latency datasets compute it), with a
paired bootstrap over architectures of the corrected repeat tau's difference to ``DEFAULT_BEFORE``.

Usage: python bench/bench_latency_protocols.py [--archs 40]
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
PROTOCOLS = {  # the first is the baseline of the paired speed-ups and of "tau vs baseline"
    "fresh, all": dict(reference_sessions="fresh", references_timed="all", candidate_sessions="per_block"),
    "kept, nearest": dict(reference_sessions="kept", references_timed="nearest", candidate_sessions="per_block"),
    "kept, nearest, candidate once": dict(
        reference_sessions="kept", references_timed="nearest", candidate_sessions="once"
    ),
    "kept, guessed, candidate once": dict(
        reference_sessions="kept", references_timed="guessed", candidate_sessions="once"
    ),
}
DEFAULT_BEFORE = "kept, nearest"  # the default from 2026-12-06


def corrected(rows: list[dict]) -> np.ndarray:
    """ratio x the median latency of the row's reference over ``rows`` (latency_dataset.latencies)."""
    typical: dict[str, list[float]] = {}
    for r in rows:
        typical.setdefault(r["reference"], []).append(r["reference_ms"])
    return np.array([r["ratio"] * statistics.median(typical[r["reference"]]) for r in rows])


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"kendall_tau": kendall_tau(a, b), "mape": prediction_errors(list(a), list(b))["mape"]}


def paired_speedup(base: list[list[dict]], this: list[list[dict]]) -> tuple[float, float, float]:
    """Median (min, max) over the measurements of base's wall seconds / this protocol's, repeat by repeat."""
    ratios = [b["total_s"] / t["total_s"] for rep in (0, 1) for b, t in zip(base[rep], this[rep])]
    return statistics.median(ratios), min(ratios), max(ratios)


def bootstrap_tau_difference(this: list[list[dict]], base: list[list[dict]], draws: int = 2000) -> list[float]:
    """95 % interval of (this protocol's corrected repeat tau - base's), architectures resampled together."""
    a0, a1, b0, b1 = corrected(this[0]), corrected(this[1]), corrected(base[0]), corrected(base[1])
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(draws):
        i = rng.integers(0, len(a0), len(a0))
        diffs.append(kendall_tau(a0[i], a1[i]) - kendall_tau(b0[i], b1[i]))
    return [float(np.nanpercentile(diffs, 2.5)), float(np.nanpercentile(diffs, 97.5))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=40)
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
    first, before = names[0], DEFAULT_BEFORE
    summary = {}
    for name in names:
        a, b = rows[name]
        summary[name] = {
            "median_total_s": statistics.median(r["total_s"] for rep in rows[name] for r in rep),
            "first_over_this": paired_speedup(rows[first], rows[name]),
            "default_before_over_this": paired_speedup(rows[before], rows[name]),
            "median_total_over_timed": statistics.median(r["total_over_timed"] for rep in rows[name] for r in rep),
            "median_total_over_all_timed": statistics.median(
                r["total_over_all_timed"] for rep in rows[name] for r in rep
            ),
            "repeat_raw": agreement(np.array([r["median_ms"] for r in a]), np.array([r["median_ms"] for r in b])),
            "repeat_corrected": agreement(corrected(a), corrected(b)),
            "repeat_tau_minus_default_before_ci95": bootstrap_tau_difference(rows[name], rows[before]),
            "vs_first_corrected": agreement(corrected(rows[first][0]), corrected(a)),
        }
    result = {"archs": len(archs), "protocols": PROTOCOLS, "default_before": before, "summary": summary, "rows": rows}
    atomic_write_json(args.out / "latency_protocols.json", result)
    lines = [
        "# Cheaper latency protocols, side by side (issue 16)",
        "",
        f"{len(archs)} MACs-stratified compact-mbv3 architectures, ONNX Runtime CPU, batch 1, 1 thread, 3 blocks x "
        "30 runs, 10 warm-up, 3 references; every protocol measures every architecture twice, in a rotating "
        "order, in one process. Wall seconds of a whole measurement (extract + export + protocol); speed-ups are "
        f"paired medians over the measurements (range). Agreement: Kendall τ and MAPE between the two repeats (raw "
        f"median; reference-corrected), the 95 % bootstrap interval of the corrected repeat τ minus `{before}`'s "
        f"(over architectures), and τ of the corrected latency with `{first}`'s first repeat.",
        "",
        f"| protocol | s per measurement | speed-up vs `{first}` | speed-up vs `{before}` | whole / candidate's timed "
        "runs | whole / all timed runs | repeat τ raw | repeat τ corrected | Δτ vs "
        f"`{before}` (95 % CI) | repeat MAPE corrected | τ vs `{first}` (corrected) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        f0, f1 = s["first_over_this"], s["default_before_over_this"]
        lo, hi = s["repeat_tau_minus_default_before_ci95"]
        lines.append(
            f"| {name} | {s['median_total_s']:.2f} | {f0[0]:.2f}× ({f0[1]:.2f}–{f0[2]:.2f}) | "
            f"{f1[0]:.2f}× ({f1[1]:.2f}–{f1[2]:.2f}) | {s['median_total_over_timed']:.1f}× | "
            f"{s['median_total_over_all_timed']:.2f}× | {s['repeat_raw']['kendall_tau']:.3f} | "
            f"{s['repeat_corrected']['kendall_tau']:.3f} | {lo:+.3f} to {hi:+.3f} | "
            f"{s['repeat_corrected']['mape']:.1f} % | {s['vs_first_corrected']['kendall_tau']:.3f} |"
        )
    atomic_write_text(args.out / "latency_protocols.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
