"""Latency measured in a real child process beside the accuracy work (``hardware.background``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from shiftnas import records as rec
from shiftnas.config import LatencyConfig, RunConfig
from shiftnas.engine.evaluation.background_latency import BackgroundLatency
from shiftnas.engine.evaluation.latency import build_latency_source
from shiftnas.engine.evaluation.metrics import ArchitectureMetrics
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.search.archive import Archive
from shiftnas.engine.search.base import SearchProblem
from shiftnas.engine.search.nsga2 import NSGA2Search
from shiftnas.errors import ShiftnasError
from shiftnas.hardware import LatencyCache
from shiftnas.pipeline.context import measures_in_background
from shiftnas.search_spaces import arch_from_dict

CFG = LatencyConfig(warmup=2, repeats=2, runs=5)


def _background(space, net, digits, tmp_path) -> BackgroundLatency:
    source = build_latency_source(
        space, net, CFG, "measured", tmp_path / "l.sqlite", background=True, num_classes=digits.num_classes
    )
    assert isinstance(source, BackgroundLatency)
    return source


def test_search_measures_every_latency_in_the_child(trained_supernet, compact_space, digits, eval_config, tmp_path):
    net, _, _ = trained_supernet
    source = _background(compact_space, net, digits, tmp_path)
    try:
        objectives = resolve_objectives(["error", "latency"])
        metrics = ArchitectureMetrics(
            SubnetEvaluator(compact_space, net, digits, eval_config), source, needed_metrics(objectives, [])
        )
        result = NSGA2Search(SearchProblem(compact_space, metrics, objectives, [], Archive(), seed=0), 6, 2).run()
        child = source._child
    finally:
        source.close()
    assert child.returncode == 0 and source._child is None  # told to stop, it returned
    keys = {r["key"] for r in result.archive}
    assert source.profiler.n_measured == len(keys) >= 6  # each measured once, by the child
    cache = LatencyCache(tmp_path / "l.sqlite")
    for r in result.archive:
        m = r["metrics"]
        assert m["latency_ms"] > 0 and m["latency_p10_ms"] <= m["latency_ms"]
        chw = tuple(compact_space.input_size(arch_from_dict(r["arch"])))
        cached = cache.get(r["key"], chw, source.profiler.cache_key)
        assert cached is not None and cached.median_ms == pytest.approx(m["latency_ms"])


def test_the_child_measures_the_subnet_it_is_given(trained_supernet, compact_space, digits, tmp_path):
    """The largest subnet at the largest resolution is slower than the smallest at the smallest, here and in
    the child, and both time the same graphs: each is timed at the latency of its own reference (the largest
    and the smallest are two of the space's references), interleaved run by run, which cancels the machine's
    load that moves the raw medians (their ratio between two processes once differed 2x under load)."""
    net, _, _ = trained_supernet
    big, small = compact_space.largest(), compact_space.smallest()
    here = build_latency_source(compact_space, net, CFG, "measured", tmp_path / "here.sqlite")
    measured_here = [
        here.latency(a, compact_space.extract(net, a), compact_space.input_size(a), 0) for a in (big, small)
    ]
    source = _background(compact_space, net, digits, tmp_path)
    try:
        source.prefetch([(a, None, tuple(compact_space.input_size(a))) for a in (big, small)])
        measured_child = [source.latency(a, None, compact_space.input_size(a), 0) for a in (big, small)]
    finally:
        source.close()
    for big_m, small_m in (measured_here, measured_child):
        assert big_m[rec.LATENCY] / small_m[rec.LATENCY] > 1.3
        for arch, m in ((big, big_m), (small, small_m)):
            assert m[rec.LATENCY_REFERENCE] == arch.key() and 0.75 < m[rec.LATENCY_RATIO] < 1.33


def test_a_dead_child_is_one_clear_error(trained_supernet, compact_space, digits, tmp_path):
    net, _, _ = trained_supernet
    source = _background(compact_space, net, digits, tmp_path)
    assert source._child is None  # started by the first job, not before
    first, second = compact_space.largest(), compact_space.smallest()
    source.prefetch([(first, None, tuple(compact_space.input_size(first)))])
    source._child.kill()
    source._child.wait()
    arch = second
    with pytest.raises(ShiftnasError, match=r"latency measuring process stopped .*hardware.background=off"):
        source.latency(arch, None, compact_space.input_size(arch), 0)
    source.close()


def test_a_failed_measurement_is_one_line_and_the_child_goes_on(trained_supernet, compact_space, digits, tmp_path):
    net, _, _ = trained_supernet
    source = _background(compact_space, net, digits, tmp_path)
    bad = compact_space.largest().to_dict()
    bad["stages"][0][0] = [9, 6]  # no such kernel in the space: the child's extract fails
    bad_arch, good = arch_from_dict(bad), compact_space.smallest()
    chw = tuple(compact_space.input_size(good))
    try:
        source.prefetch([(bad_arch, None, chw), (good, None, chw)])
        with pytest.raises(ShiftnasError, match=r"latency measurement of r20-k9e6\S* failed: .*not in kernels") as err:
            source.latency(bad_arch, None, chw, 0)
        assert "\n" not in str(err.value)
        assert source.latency(good, None, chw, 0)["latency_ms"] > 0  # the same child measured the next job
    finally:
        source.close()


def test_close_stops_a_busy_child_and_a_later_job_starts_a_new_one(trained_supernet, compact_space, digits, tmp_path):
    net, _, _ = trained_supernet
    source = _background(compact_space, net, digits, tmp_path)
    rng = np.random.default_rng(0)
    archs = {a.key(): a for a in (compact_space.sample(rng) for _ in range(20))}.values()
    source.prefetch([(a, None, tuple(compact_space.input_size(a))) for a in archs])
    first = source._child
    source.close()  # 20 jobs in flight: killed, not waited for
    assert first.returncode is not None and first.returncode != 0 and source._child is None
    arch = compact_space.smallest()
    try:
        assert source.latency(arch, None, compact_space.input_size(arch), 0)["latency_ms"] > 0
        assert source._child is not None and source._child.pid != first.pid
    finally:
        source.close()


def test_an_unguarded_script_runs(tmp_path):
    """A caller's script without ``if __name__ == '__main__'`` is never re-run in the child."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch
            from shiftnas.config import LatencyConfig
            from shiftnas.engine.evaluation.latency import build_latency_source
            from shiftnas.search_spaces import get_space

            space = get_space("compact-mbv3", resolutions=[16])
            net = space.build_supernet(3).eval()
            cfg = LatencyConfig(warmup=1, repeats=1, runs=3)
            source = build_latency_source(space, net, cfg, "measured", "l.sqlite", background=True, num_classes=3)
            arch = space.smallest()
            print("latency", source.latency(arch, None, space.input_size(arch), 0)["latency_ms"] > 0)
            source.close()
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["latency", "True"]


@pytest.mark.parametrize(
    "hardware,cpus,expected",
    [
        ({}, 2, True),  # auto: one core for torch, one for the measurement
        ({}, 1, False),
        ({"intra_threads": 2}, 2, False),
        ({"background": "on"}, 1, True),
        ({"background": "off"}, 8, False),
        ({"dask": "tcp://127.0.0.1:1"}, 8, False),
        ({"provider": "CUDAExecutionProvider"}, 8, False),
    ],
)
def test_when_a_run_measures_in_the_background(monkeypatch, hardware, cpus, expected):
    from shiftnas.engine.evaluation import background_latency

    monkeypatch.setattr(background_latency, "usable_cpus", lambda: cpus)  # the machine's size, not a component
    cfg = RunConfig()
    cfg.threads = 1
    for name, value in hardware.items():
        setattr(cfg.hardware, name, value)
    assert measures_in_background(cfg) is expected
