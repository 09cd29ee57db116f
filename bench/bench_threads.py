"""Benchmark (issue 16, threads): the supernet training step with 1 or 2 torch threads, idle and beside
a CPU burner, with OpenMP's default (spinning) and passive wait policies.

Each configuration runs in its own process (``OMP_WAIT_POLICY`` is read when torch loads): the default
compact-mbv3 supernet, channels_last, batch 64, the sandwich step (4 subnets) timed in wall seconds
(what a user waits for), the median of ``--steps`` steps after one warm-up; idle, then with one busy
process (``--burners``, plain Python loops at the same priority) beside it. Configurations alternate,
``--rounds`` times. Run it on an otherwise quiet machine.

Usage: python bench/bench_threads.py [--steps 5] [--rounds 2] [--burners 1]
Writes bench/results/threads.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
from pathlib import Path

from shiftnas.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).parent / "results"

CHILD = """
import json, statistics, sys, time
import numpy as np, torch
from shiftnas.engine.tensors import channels_last
from shiftnas.engine.training.supernet import sandwich_archs, sandwich_step
from shiftnas.search_spaces import get_space
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
space = get_space("compact-mbv3")
x = torch.randn(64, 3, 28, 28, generator=torch.Generator().manual_seed(0)).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
torch.manual_seed(0)
net = space.build_supernet(10).train()
rng = np.random.default_rng(0)
times = []
with channels_last(net):
    for i in range(steps + 1):
        t = time.perf_counter()
        net.zero_grad()
        sandwich_step(space, net, x, y, sandwich_archs(space, rng, 2), 1.0)
        if i:
            times.append(time.perf_counter() - t)
print(json.dumps(statistics.median(times)))
"""


def _burn() -> None:
    while True:
        pass


def one(threads: int, policy: str, steps: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("OMP_WAIT_POLICY", None)
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(steps)], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--burners", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    configs = [(t, p) for p in ("spin", "passive") for t in (1, 2)]
    seconds: dict[str, list[float]] = {}
    for load in ("idle", "burner"):
        burners = [
            multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.burners if load == "burner" else 0)
        ]
        for b in burners:
            b.start()
        try:
            for r in range(args.rounds):
                for t, p in configs if r % 2 == 0 else reversed(configs):
                    s = one(t, p, args.steps)
                    seconds.setdefault(f"{load}/{t}/{p}", []).append(s)
                    print(f"{load:6s} threads {t} wait {p:7s}: {s:.3f} s per step", flush=True)
        finally:
            for b in burners:
                b.terminate()
    med = {k: statistics.median(v) for k, v in seconds.items()}
    result = {"steps": args.steps, "rounds": args.rounds, "burners": args.burners, "cpus": os.cpu_count(),
              "seconds": seconds, "median": med}  # fmt: skip
    atomic_write_json(args.out / "threads.json", result)
    base = med["idle/1/spin"]
    lines = [
        "# Training step vs torch threads, idle and beside a CPU burner (issue 16)",
        "",
        f"Default compact-mbv3 supernet, sandwich step (4 subnets, batch 64, channels_last), wall seconds, "
        f"median of {args.steps} steps x {args.rounds} rounds; {os.cpu_count()} CPUs; burner: {args.burners} "
        "busy Python process(es) at the same priority. Slowdown = vs 1 thread, idle, default wait policy.",
        "",
        "| threads | OpenMP wait | idle s | beside a burner s | burner slowdown | vs 1 thread idle, idle / burner |",
        "|---|---|---|---|---|---|",
    ]
    for t, p in configs:
        i, b = med[f"idle/{t}/{p}"], med[f"burner/{t}/{p}"]
        lines.append(f"| {t} | {p} | {i:.3f} | {b:.3f} | {b / i:.2f}× | {i / base:.2f} / {b / base:.2f} |")
    atomic_write_text(args.out / "threads.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
