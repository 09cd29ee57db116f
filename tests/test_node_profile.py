"""shiftnas.hardware.node_profile on a real subnet: ORT profiler, parsing, tables, plot.

Real components only (torch exporter, ONNX Runtime profiler, matplotlib, rich). No timing
thresholds: only structural checks and a loose kernel-time <= run-time sanity bound.
"""

from __future__ import annotations

import json
import math
import tempfile

import pytest
from rich.console import Console

from shiftnas.config import LatencyConfig
from shiftnas.errors import ShiftnasError
from shiftnas.hardware import export_onnx
from shiftnas.hardware.node_profile import NodeProfile, parse_profile, profile_nodes
from shiftnas.report.profile import node_profile_table, plot_node_profile, top_nodes_table
from shiftnas.search_spaces import get_space

RUNS, WARMUP = 6, 2


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """(profile, raw events, temp dir used for the ORT trace) of the smallest compact-mbv3 subnet."""
    sp = get_space("compact-mbv3", resolutions=[16, 20])
    arch = sp.smallest()
    sub = sp.extract(sp.build_supernet(10), arch)
    shape = sp.input_size(arch)
    onnx_bytes = export_onnx(sub, (1, *shape))
    base = tmp_path_factory.mktemp("nodeprof")
    tmp = base / "tmp"
    tmp.mkdir()
    old = tempfile.tempdir
    tempfile.tempdir = str(tmp)  # TemporaryDirectory inside profile_nodes lands here
    try:
        cfg = LatencyConfig(warmup=WARMUP, runs=RUNS, repeats=1)
        prof = profile_nodes(onnx_bytes, shape, cfg, runs=RUNS, save_trace=base / "trace.json")
    finally:
        tempfile.tempdir = old
    events = json.loads((base / "trace.json").read_text())
    return prof, events, tmp


def _one_run_names(events: list[dict]) -> set[str]:
    run = max((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    return {
        e["name"][: -len("_kernel_time")]
        for e in events
        if e.get("cat") == "Node"
        and e["name"].endswith("_kernel_time")
        and run["ts"] <= e["ts"] <= run["ts"] + run["dur"]
    }


def test_profile_nodes_structure(profiled):
    prof, events, _ = profiled
    assert isinstance(prof, NodeProfile) and prof.runs == RUNS
    ops = {n.op_type for n in prof.nodes}
    # ORT fuses Conv+BN(+activation) into Conv or FusedConv; either way a conv kernel is present
    assert ops & {"Conv", "FusedConv"}, ops
    assert "Gemm" in ops or "MatMul" in ops or "FusedMatMul" in ops, ops
    assert all(n.provider == "CPUExecutionProvider" for n in prof.nodes)
    assert math.isclose(sum(n.share for n in prof.nodes), 1.0, rel_tol=1e-9)
    assert math.isclose(sum(o.total_us for o in prof.by_op) / 1e3, prof.kernel_ms, rel_tol=1e-9)
    assert math.isclose(sum(o.share for o in prof.by_op), 1.0, rel_tol=1e-9)
    assert sum(o.count for o in prof.by_op) == len(prof.nodes)
    assert len(prof.nodes) == len(_one_run_names(events))
    # kernels run inside their run's window: their mean per-run sum cannot exceed the mean run duration
    # (compared with the mean, not the median run_ms, so one run slowed by a busy machine cannot fail it)
    counted = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[-RUNS:]
    mean_run_ms = sum(float(e["dur"]) for e in counted) / len(counted) / 1e3
    assert prof.run_ms > 0 and 0 < prof.kernel_ms <= mean_run_ms + len(prof.nodes) * 1e-3  # 1 us rounding a node
    times = [n.mean_us for n in prof.nodes]
    assert times == sorted(times, reverse=True)
    assert [o.total_us for o in prof.by_op] == sorted((o.total_us for o in prof.by_op), reverse=True)
    d = prof.as_dict()
    assert d["runs"] == RUNS and len(d["nodes"]) == len(prof.nodes)
    json.dumps(d)


def test_temp_trace_cleaned_up(profiled):
    _, _, tmp = profiled
    assert list(tmp.iterdir()) == []


def test_parse_profile_skip_runs(profiled):
    prof, events, _ = profiled
    total = sum(1 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    assert total == RUNS + WARMUP
    assert parse_profile(events).runs == total
    again = parse_profile(events, skip_runs=WARMUP)
    assert again.runs == prof.runs and again.kernel_ms == pytest.approx(prof.kernel_ms)
    assert parse_profile(events, skip_runs=total - 1).runs == 1
    with pytest.raises(ShiftnasError, match="model_run"):
        parse_profile(events, skip_runs=total)
    with pytest.raises(ShiftnasError):
        parse_profile(events, skip_runs=-1)


def test_parse_profile_without_node_events(profiled):
    _, events, _ = profiled
    no_nodes = [e for e in events if e.get("cat") != "Node"]
    with pytest.raises(ShiftnasError, match="no node events") as ei:
        parse_profile(no_nodes)
    assert "\n" not in str(ei.value)
    with pytest.raises(ShiftnasError):
        parse_profile([])


def test_fence_events_ignored(profiled):
    prof, events, _ = profiled
    extra = [dict(e, name=e["name"].replace("_kernel_time", "_fence_before")) for e in events if e.get("cat") == "Node"]
    assert parse_profile(events + extra, skip_runs=WARMUP).kernel_ms == pytest.approx(prof.kernel_ms)


def test_plot_and_tables(profiled, tmp_path):
    prof, _, _ = profiled
    out = plot_node_profile(prof, tmp_path / "sub" / "nodes.png", top=5, title="smallest")
    assert out == tmp_path / "sub" / "nodes.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["nodes.png"]  # no temp file left behind
    console = Console(width=200, record=True)
    t = node_profile_table(prof, top=3)
    assert [c.header for c in t.columns] == ["op type", "nodes", "µs/run", "share %"]
    assert t.row_count == min(3, len(prof.by_op))
    console.print(t)
    console.print(top_nodes_table(prof, top=4))
    text = console.export_text()
    assert prof.by_op[0].op_type in text
