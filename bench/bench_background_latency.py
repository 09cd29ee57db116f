"""Benchmark (issue 16, latency cost): the default search with latency measured in this process or in a
background child process beside the accuracy work (``hardware.background=off|on``).

Each search is a whole ``shiftnas search`` process on the same trained supernet (``--checkpoint``, e.g. the
one ``make run`` leaves in runs/default), the default config, its own run directory and an empty latency
cache, timed in wall seconds (what a user waits for). Modes alternate, ``--rounds`` times, idle and (with
``--burner``) beside one busy process at the same priority. Agreement: for the architectures two searches
share (the same seed evaluates the same first population, and more while the fronts agree), Kendall τ and
the median ratio of their latencies, next to the same figures between two rounds of ``off`` (the noise
ceiling of measuring twice).

Usage: python bench/bench_background_latency.py --checkpoint runs/default/supernet.pt [--rounds 2] [--burner]
Writes bench/results/background_latency.{json,md}. Resumable: every finished search is kept in
``background_latency_partial.json`` (for the same supernet and config files) until the tables are written,
so a re-run after a crash or Ctrl-C measures only the rounds still missing: a round whose two searches
(off and on, measured back to back) did not both finish is measured again whole, so the pairs compared
are always side by side; each search is timed whole, never resumed.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from shiftnas.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).parent / "results"
CONFIG = Path(__file__).parents[1] / "configs" / "default.yaml"
MODES = ("off", "on")


def _burn() -> None:
    while True:
        pass


def search(checkpoint: Path, mode: str, out: Path) -> tuple[float, dict[str, float]]:
    """Wall seconds of one ``shiftnas search`` and the latency of every architecture it evaluated."""
    cmd = [sys.executable, "-m", "shiftnas", "search", "--config", str(CONFIG), "--checkpoint", str(checkpoint)]
    cmd += ["--out", str(out), "--set", f"hardware.background={mode}", "--set", f"hardware.cache={out / 'l.sqlite'}"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    latency = {}
    for line in (out / "archive.jsonl").read_text().splitlines():
        record = json.loads(line)
        latency[record["key"]] = float(record["metrics"]["latency_ms"])
    return seconds, latency


def identity(checkpoint: Path) -> str:
    """What the searches of a partial file ran on: the supernet's and the config's content hashes."""
    return "/".join(hashlib.sha256(path.read_bytes()).hexdigest() for path in (checkpoint, CONFIG))


def load_partial(path: Path, ran_on: str) -> dict[str, dict]:
    """The complete rounds (both modes) of an interrupted call on the same supernet and config, keyed
    ``load/mode/round``."""
    if not path.is_file():
        return {}
    partial = json.loads(path.read_text())
    if partial.get("ran_on") != ran_on:
        print(f"{path} holds searches of another supernet or config: measuring anew", flush=True)
        return {}
    done = partial["searches"]

    def round_complete(key: str) -> bool:
        load, _, r = key.split("/")
        return all(f"{load}/{mode}/{r}" in done for mode in MODES)

    return {key: search for key, search in done.items() if round_complete(key)}


def agreement(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """τ and the median ratio b/a over the architectures both searches measured."""
    shared = sorted(set(a) & set(b))
    x, y = np.array([a[k] for k in shared]), np.array([b[k] for k in shared])
    return {"n": len(shared), "tau": float(kendalltau(x, y).statistic), "median_ratio": float(np.median(y / x))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("runs/default/supernet.pt"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--burner", action="store_true", help="also run every search beside one busy process")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not args.checkpoint.is_file():
        sys.exit(f"error: no supernet at {args.checkpoint} (run `make run` first, or pass --checkpoint)")
    loads = ["idle", "burner"] if args.burner else ["idle"]
    partial_path, ran_on = args.out / "background_latency_partial.json", identity(args.checkpoint)
    done = load_partial(partial_path, ran_on)
    if done:
        print(f"resuming: {len(done)} searches already measured ({partial_path})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for load in loads:
            todo = [
                (r, mode) for r in range(args.rounds) for mode in (MODES if r % 2 == 0 else MODES[::-1])
            ]  # modes alternate within a round and swap their order between rounds
            todo = [(r, mode) for r, mode in todo if f"{load}/{mode}/{r}" not in done]
            if not todo:
                continue
            burner = multiprocessing.Process(target=_burn, daemon=True) if load == "burner" else None
            if burner:
                burner.start()
            try:
                for r, mode in todo:
                    seconds, latency = search(args.checkpoint, mode, Path(tmp) / f"{load}-{mode}-{r}")
                    done[f"{load}/{mode}/{r}"] = {
                        "seconds": seconds,
                        "latency": latency,
                        "measured": time.strftime("%Y-%m-%d %H:%M"),
                    }
                    atomic_write_json(partial_path, {"ran_on": ran_on, "searches": done})
                    print(f"{load} {mode} round {r}: {seconds:.0f} s, {len(latency)} architectures", flush=True)
            finally:
                if burner:
                    burner.terminate()
    runs = {load: {m: [done[f"{load}/{m}/{r}"] for r in range(args.rounds)] for m in MODES} for load in loads}
    rows = []
    for load in loads:
        off, on = runs[load]["off"], runs[load]["on"]
        speedups = [a["seconds"] / b["seconds"] for a, b in zip(off, on)]
        row = {
            "load": load,
            "seconds_off": [a["seconds"] for a in off],
            "seconds_on": [b["seconds"] for b in on],
            "speedup_median": statistics.median(speedups),
            "speedups": speedups,
            "on_vs_off": [agreement(a["latency"], b["latency"]) for a, b in zip(off, on)],
            "off_vs_off": [agreement(a["latency"], b["latency"]) for a, b in itertools.combinations(off, 2)],
            "measured": sorted({s["measured"] for s in off + on}),
        }
        rows.append(row)
    atomic_write_json(
        args.out / "background_latency.json", {"rounds": args.rounds, "config": str(CONFIG), "rows": rows}
    )
    atomic_write_text(args.out / "background_latency.md", markdown(rows, args.rounds))
    partial_path.unlink(missing_ok=True)  # the tables hold every search now
    print(markdown(rows, args.rounds))


def _span(values: list[float], fmt: str) -> str:
    return ", ".join(format(v, fmt) for v in values) or "–"


def markdown(rows: list[dict], rounds: int) -> str:
    lines = [
        "# Latency measured beside the accuracy work (issue 16)",
        "",
        f"The default search (configs/default.yaml: pop 24 x 8 generations, error + latency + MACs) as a whole "
        f"`shiftnas search` process on one trained supernet, latency measured in the process (`off`) or in a "
        f"background child (`on`), alternating, {rounds} rounds; each with an empty latency cache. Agreement over "
        f"the architectures two searches share: Kendall τ and median latency ratio, on vs off beside off vs off "
        f"(two rounds of the same protocol: the noise ceiling).",
        "",
        "| load | measured | wall s, off | wall s, on | speed-up (off / on) | τ on vs off | median ratio on / off | "
        "τ off vs off | median ratio off / off |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['load']} | {' – '.join(dict.fromkeys([r['measured'][0], r['measured'][-1]]))} | "
            f"{_span(r['seconds_off'], '.0f')} | {_span(r['seconds_on'], '.0f')} | "
            f"{r['speedup_median']:.2f}× ({_span(r['speedups'], '.2f')}) | "
            f"{_span([a['tau'] for a in r['on_vs_off']], '.3f')} (n {_span([a['n'] for a in r['on_vs_off']], 'd')}) | "
            f"{_span([a['median_ratio'] for a in r['on_vs_off']], '.3f')} | "
            f"{_span([a['tau'] for a in r['off_vs_off']], '.3f')} | "
            f"{_span([a['median_ratio'] for a in r['off_vs_off']], '.3f')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
