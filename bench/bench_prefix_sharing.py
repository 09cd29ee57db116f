"""Benchmark (issue 16): how much of a search's evaluation work could prefix sharing save?

Two subnets with the same resolution and the same first layers compute the same activations up to
where they part (BN recalibration too: a layer's statistics depend only on what comes before it), so
an evaluator that scores a population sorted by prefix could compute each shared prefix once. Before
building that, this measures the most it could save on a real search: for every architecture of a
run's archive, the MACs of its network (every Conv and Linear, ``count_macs``) and of each of its
layers, and the share of all MACs that lies in a prefix an earlier architecture already computed,
(a) within its own generation (the population scored together, sorted by prefix) and (b) anywhere
earlier in the run (an unbounded activation cache, valid only while the weights do not change).

The saving is an upper bound on the validation and recalibration forward passes (~98 % of an
evaluation, ``eval_profile.md``): it ignores the memory of caching 6,000 images' activations per
prefix and the extra Python work.

Usage: python bench/bench_prefix_sharing.py [--archive runs/default/archive.jsonl] (after ``make run``)
Writes bench/results/prefix_sharing.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import torch

from shiftnas.hardware.macs import count_macs
from shiftnas.io import atomic_write_json, atomic_write_text, read_jsonl
from shiftnas.search_spaces import arch_from_dict, get_space

RESULTS = Path(__file__).parent / "results"


def layer_macs(space, supernet, arch) -> tuple[list[tuple], list[int], int]:
    """The arch's elastic layers as prefix items, their MACs, and the whole network's MACs."""
    sub = space.extract(supernet, arch)
    shapes = []
    hooks = [b.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape[1:]))) for b in sub.blocks]
    total = count_macs(sub, space.input_size(arch))
    for h in hooks:
        h.remove()
    items = [(s, i, k, e) for s, stage in enumerate(arch.stages) for i, (k, e) in enumerate(stage)]
    per_block = [count_macs(b, shape) for b, shape in zip(sub.blocks, shapes)]
    fixed = per_block[0] + count_macs(sub.first_conv, space.input_size(arch))  # stem + first block: always shared
    return items, [fixed, *per_block[1:]], total


def shared_macs(prefixes: list[tuple], macs: list[int], seen: set) -> int:
    """MACs of the longest of ``prefixes`` (resolution only = the fixed stem and first block, then one more
    layer each) already in ``seen``; ``macs[d]`` is what ``prefixes[d]`` adds."""
    shared = 0
    for prefix, cost in zip(prefixes, macs):
        if prefix not in seen:
            break
        shared += cost
    return shared


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", default="runs/default/archive.jsonl")
    ap.add_argument("--space", default="compact-mbv3")
    ap.add_argument("--resolutions", default="20,24,28")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    space = get_space(args.space, resolutions=[int(r) for r in args.resolutions.split(",")])
    torch.manual_seed(0)
    supernet = space.build_supernet(10).eval()
    records = read_jsonl(args.archive)
    by_gen: dict[int, list] = collections.defaultdict(list)
    for r in records:
        by_gen[int(r.get("generation", 0))].append(arch_from_dict(r["arch"]))
    total = within = anywhere = 0
    run_seen: set = set()
    for gen in sorted(by_gen):
        gen_seen: set = set()
        for arch in sorted(by_gen[gen], key=lambda a: a.key()):
            items, macs, whole = layer_macs(space, supernet, arch)
            prefix = [(arch.resolution, *items[:d]) for d in range(len(items) + 1)]
            total += whole
            within += shared_macs(prefix, macs, gen_seen)
            anywhere += shared_macs(prefix, macs, run_seen)
            gen_seen.update(prefix)
            run_seen.update(prefix)
    out = {
        "archive": args.archive,
        "architectures": len(records),
        "generations": len(by_gen),
        "share_within_generation": within / total,
        "share_anywhere_earlier": anywhere / total,
    }
    results = Path(args.results)
    atomic_write_json(results / "prefix_sharing.json", out)
    lines = [
        "# How much could prefix sharing save? (issue 16)",
        "",
        f"`{args.archive}`: {len(records)} architectures in {len(by_gen)} generations. Share of all their MACs "
        "that lies in a prefix (same resolution, same stem, same leading layers) already computed:",
        "",
        "| shared with | share of the MACs | most the forward passes could speed up |",
        "|---|---|---|",
        f"| the same generation (population sorted by prefix) | {100 * out['share_within_generation']:.1f} % | "
        f"{1 / (1 - out['share_within_generation']):.2f}× |",
        f"| any earlier architecture of the run (unbounded cache, frozen weights) | "
        f"{100 * out['share_anywhere_earlier']:.1f} % | {1 / (1 - out['share_anywhere_earlier']):.2f}× |",
    ]
    atomic_write_text(results / "prefix_sharing.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
