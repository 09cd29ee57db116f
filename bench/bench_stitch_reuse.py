"""Benchmark (issue 16, latency): how much of a subnet's latency graph the stitched-export cache serves, per space.

For ``--archs`` architectures sampled from a space (seeded), in one process with one
:class:`~shiftnas.hardware.stitch.BlockExports` kept over the run (as a search keeps it): the wall time of the
stitched export and, beside it, of the whole subnet's ``torch.onnx`` export, and how many pieces were exported
or taken from the cache. Wall seconds, 1 torch thread: run it on a quiet machine.

Usage: python bench/bench_stitch_reuse.py --space ofa-resnet50 --archs 10
Writes bench/results/stitch_reuse_<space>.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from shiftnas.hardware import export_onnx
from shiftnas.hardware.stitch import BlockExports
from shiftnas.io import atomic_write_json, atomic_write_text
from shiftnas.search_spaces import get_space

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="ofa-resnet50")
    ap.add_argument("--archs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = get_space(args.space)
    torch.manual_seed(args.seed)
    supernet = space.build_supernet(10).eval()
    rng = np.random.default_rng(args.seed)
    warm = space.sample(rng)
    export_onnx(space.extract(supernet, warm), (1, *space.input_size(warm)))  # imports, first trace
    blocks = BlockExports()
    rows = []
    for i in range(args.archs):
        arch = space.sample(rng)
        sub = space.extract(supernet, arch)
        shape = (1, *space.input_size(arch))
        exported, reused = blocks.exported, blocks.reused
        t = time.perf_counter()
        blocks.export(sub, shape)
        stitched = time.perf_counter() - t
        t = time.perf_counter()
        export_onnx(sub, shape)
        whole = time.perf_counter() - t
        rows.append({"key": arch.key(), "resolution": shape[-1], "stitched_s": stitched, "whole_s": whole,
                     "exported": blocks.exported - exported, "reused": blocks.reused - reused,
                     "cache_mib": blocks._bytes / 2**20})  # fmt: skip
        print(f"[{i + 1}/{args.archs}] r{shape[-1]}: stitched {stitched:.3f} s, whole {whole:.3f} s, "
              f"{rows[-1]['exported']} exported, {rows[-1]['reused']} reused", flush=True)  # fmt: skip
    half = len(rows) // 2
    result = {
        "space": args.space,
        "archs": len(rows),
        "seed": args.seed,
        "cache_budget_mib": blocks.max_bytes / 2**20,
        "pieces_exported": blocks.exported,
        "pieces_reused": blocks.reused,
        "median_stitched_s": statistics.median(r["stitched_s"] for r in rows),
        "median_whole_s": statistics.median(r["whole_s"] for r in rows),
        "median_whole_over_stitched": statistics.median(r["whole_s"] / r["stitched_s"] for r in rows),
        "median_whole_over_stitched_first_half": statistics.median(r["whole_s"] / r["stitched_s"] for r in rows[:half]),
        "median_whole_over_stitched_second_half": statistics.median(
            r["whole_s"] / r["stitched_s"] for r in rows[half:]
        ),
        "rows": rows,
    }
    name = f"stitch_reuse_{args.space}"
    atomic_write_json(args.out / f"{name}.json", result)
    lines = [
        f"# Stitched latency exports on {args.space} (issue 16)",
        "",
        f"{len(rows)} architectures sampled with seed {args.seed}, one piece cache over the run "
        f"({result['cache_budget_mib']:.0f} MiB budget), 1 torch thread, wall seconds; the whole subnet's export "
        "timed beside each stitched one.",
        "",
        f"- Pieces: **{blocks.exported} exported, {blocks.reused} reused**.",
        f"- Export median: stitched **{result['median_stitched_s']:.3f} s**, whole {result['median_whole_s']:.3f} s; "
        f"whole / stitched, paired median **{result['median_whole_over_stitched']:.2f}×** "
        f"({result['median_whole_over_stitched_first_half']:.2f}× over the first {half}, "
        f"{result['median_whole_over_stitched_second_half']:.2f}× over the rest).",
        "",
        "| architecture | resolution | stitched s | whole s | pieces exported | reused | cache MiB after |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| `{r['key'][:60]}` | {r['resolution']} | {r['stitched_s']:.3f} | {r['whole_s']:.3f} | "
            f"{r['exported']} | {r['reused']} | {r['cache_mib']:.0f} |"
            for r in rows
        ],
    ]
    atomic_write_text(args.out / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:7]))


if __name__ == "__main__":
    main()
