"""Per-node latency attribution from ONNX Runtime's own profiler.

``profile_nodes`` runs a subnet in one measurement session (see ``latency.make_session``) with
ORT profiling on, and ``parse_profile`` turns the Chrome-trace events into mean kernel time per
graph node and per op type. Cost caveat: profiling adds ~7.5% wall time, so shiftnas' latency
numbers are always taken without it; use these tables to see *where* the time goes, never as
the latency of a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from bisect import bisect_right
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shiftnas.config import LatencyConfig
from shiftnas.errors import ShiftnasError
from shiftnas.hardware.latency import make_session

_SUFFIX = "_kernel_time"


@dataclass
class NodeTiming:
    """One graph node: mean kernel time per run and its share of the summed kernel time."""

    name: str
    op_type: str
    provider: str
    mean_us: float
    share: float


@dataclass
class OpTypeTiming:
    """All nodes of one op type: ``count`` nodes per run taking ``total_us`` per run together."""

    op_type: str
    count: int
    total_us: float
    share: float


@dataclass
class NodeProfile:
    """Nodes and op types sorted by time (descending); ``run_ms`` is the median ``model_run``."""

    nodes: list[NodeTiming]
    by_op: list[OpTypeTiming]
    runs: int
    run_ms: float
    kernel_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_profile(events: list[dict], skip_runs: int = 0) -> NodeProfile:
    """Aggregate ORT profile ``events``, ignoring node events of the first ``skip_runs`` runs."""
    if skip_runs < 0:
        raise ShiftnasError(f"skip_runs must be >= 0, got {skip_runs}")
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"]
    )
    counted = runs[skip_runs:]
    if not counted:
        raise ShiftnasError(
            f"the ONNX Runtime profile has {len(runs)} model_run event(s); "
            f"none left after skipping {skip_runs} warm-up run(s)"
        )
    starts = [float(r["ts"]) for r in counted]
    totals: dict[str, float] = defaultdict(float)
    meta: dict[str, tuple[str, str]] = {}
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith(_SUFFIX):
            continue
        i = bisect_right(starts, float(e["ts"])) - 1
        if i < 0 or float(e["ts"]) > starts[i] + float(counted[i]["dur"]):
            continue  # warm-up run, or outside any run window
        args = e.get("args", {})
        node = name[: -len(_SUFFIX)] or f"{args.get('op_name', '?')}#{args.get('node_index', '?')}"
        totals[node] += float(e["dur"])
        meta[node] = (str(args.get("op_name", "?")), str(args.get("provider", "?")))
    if not totals:
        raise ShiftnasError(
            "the ONNX Runtime profile has no node events in the counted runs "
            "(was the session created with profiling on?)"
        )
    n = len(counted)
    kernel_us = sum(totals.values()) / n
    share = (lambda us: us / kernel_us) if kernel_us > 0 else (lambda us: 0.0)
    nodes = [NodeTiming(k, meta[k][0], meta[k][1], v / n, share(v / n)) for k, v in totals.items()]
    nodes.sort(key=lambda t: (-t.mean_us, t.name))
    ops: dict[str, list[float]] = defaultdict(list)
    for t in nodes:
        ops[t.op_type].append(t.mean_us)
    by_op = [OpTypeTiming(op, len(v), sum(v), share(sum(v))) for op, v in ops.items()]
    by_op.sort(key=lambda o: (-o.total_us, o.op_type))
    run_ms = float(np.median([float(r["dur"]) for r in counted])) / 1e3
    return NodeProfile(nodes, by_op, n, run_ms, kernel_us / 1e3)


def profile_nodes(
    onnx_bytes: bytes,
    input_shape_chw: Sequence[int],
    cfg: LatencyConfig | None = None,
    runs: int = 20,
    save_trace: str | Path | None = None,
) -> NodeProfile:
    """Profile ``runs`` runs after ``cfg.warmup`` warm-up runs; optionally keep the raw trace JSON."""
    cfg = cfg or LatencyConfig()
    if runs < 1 or cfg.warmup < 0 or cfg.batch_size < 1:
        raise ShiftnasError(f"invalid node-profile settings: runs={runs}, {cfg}")
    shape = (int(cfg.batch_size), *(int(d) for d in input_shape_chw))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="shiftnas-ortprof-") as tmp:
        sess = make_session(onnx_bytes, cfg, profile_prefix=os.path.join(tmp, "ort"))
        feed = {sess.get_inputs()[0].name: x}
        for _ in range(cfg.warmup + runs):
            sess.run(None, feed)
        trace = Path(sess.end_profiling())  # prefix is absolute, so is this path
        del sess
        with open(trace, encoding="utf-8") as f:
            events = json.load(f)
        if save_trace is not None:
            Path(save_trace).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(trace, save_trace)
    return parse_profile(events, skip_runs=cfg.warmup)
