"""Latency jobs on a real local Dask cluster whose workers own the capacity-1 ``latency`` resource."""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import pytest

distributed = pytest.importorskip("distributed")

from shiftnas.config import LatencyConfig  # noqa: E402
from shiftnas.errors import ShiftnasError  # noqa: E402
from shiftnas.hardware.export import export_onnx  # noqa: E402
from shiftnas.hardware.fingerprint import fingerprint_of  # noqa: E402
from shiftnas.hardware.latency import LatencyResult  # noqa: E402
from shiftnas.hardware.remote import RESOURCE, DaskMeasurer, measure_job  # noqa: E402
from shiftnas.search_spaces import get_space  # noqa: E402

CFG = LatencyConfig(warmup=1, repeats=2, runs=3)


@pytest.fixture(scope="module")
def client():
    # Worker processes (as in deployment: jobs and results really go through pickling), each with
    # two threads, so that only the resource -- not the thread count -- keeps measurements apart.
    # dashboard_address=":0": with None the scheduler's HTTP server still takes port 8787
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            resources={RESOURCE: 1},
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def measurer(client):
    with DaskMeasurer(client) as m:
        yield m


def _wait_for_resource_workers(pool, n: int, timeout: float = 120.0) -> int:
    """The pool's resource workers once ``n`` are registered: on a machine this busy a worker can miss
    its heartbeats and re-register (its nanny restarts it) between two tests."""
    deadline = time.monotonic() + timeout
    while pool.n_workers < n and time.monotonic() < deadline:
        time.sleep(0.5)
    return pool.n_workers


@pytest.fixture(scope="module")
def jobs():
    import torch

    torch.manual_seed(0)
    sp = get_space("compact-mbv3")
    net = sp.build_supernet(10).eval()
    out = []
    for arch in (sp.smallest(), sp.largest()):
        chw = tuple(sp.input_size(arch))
        out.append((export_onnx(sp.extract(net, arch), (1, *chw)), chw, CFG))
    small, large = out
    return [small, large, large, small]


def _sleep_interval(i: int) -> tuple[int, str, float, float]:
    start = time.monotonic()
    time.sleep(0.2)
    return i, distributed.get_worker().address, start, time.monotonic()


def _overlaps(intervals: list[tuple[int, str, float, float]]) -> list[tuple[int, int]]:
    """Pairs of tasks that ran at the same time on the same worker."""
    pairs = []
    for a in intervals:
        for b in intervals:
            if a[0] < b[0] and a[1] == b[1] and a[2] < b[3] and b[2] < a[3]:
                pairs.append((a[0], b[0]))
    return pairs


def _per_worker_fingerprint(cfg: LatencyConfig):
    """Stands in for two different devices: the CPU name includes the worker's address."""
    fp = fingerprint_of(cfg)
    return dataclasses.replace(fp, cpu_model=f"{fp.cpu_model} @ {distributed.get_worker().address}")


def test_measure_jobs_in_order(measurer, jobs):
    assert _wait_for_resource_workers(measurer, 2) == 2
    results = measurer.map(measure_job, jobs)
    assert len(results) == len(jobs)
    for (_, chw, cfg), r in zip(jobs, results):
        assert isinstance(r, LatencyResult)
        assert r.median_ms > 0
        assert len(r.block_medians_ms) == cfg.repeats
        assert r.n_runs == cfg.repeats * cfg.runs
        assert r.input_shape == [cfg.batch_size, *chw]
        assert r.fingerprint == fingerprint_of(CFG).as_dict()  # measured on this machine


def test_fingerprint_on_workers_matches_local(measurer):
    assert measurer.fingerprint(CFG) == fingerprint_of(CFG)
    assert measurer.fingerprint(CFG).key() == fingerprint_of(CFG).key()


def test_fingerprint_of_different_devices_is_an_error(measurer):
    with pytest.raises(ShiftnasError, match="cpu_model") as info:
        measurer.fingerprint(CFG, probe=_per_worker_fingerprint)
    assert "one kind of device" in str(info.value)


def test_one_measurement_at_a_time_per_worker(client, measurer):
    intervals = measurer.map(_sleep_interval, list(range(6)))
    assert [iv[0] for iv in intervals] == list(range(6))
    assert _overlaps(intervals) == []
    # control: the same tasks without the resource do run side by side on these 2-thread workers,
    # so the check above would catch a missing resource constraint
    free = client.gather([client.submit(_sleep_interval, i, pure=False) for i in range(6)])
    assert _overlaps(free) != []


def test_worker_exception_propagates(measurer, jobs):
    onnx, chw, _ = jobs[0]
    with pytest.raises(ShiftnasError, match="could not create a CPUExecutionProvider session.*INVALID_PROTOBUF"):
        measurer.map(measure_job, [(onnx, chw, CFG), (b"not an onnx model", chw, CFG)])
    with pytest.raises(ValueError):
        measurer.map(int, ["1", "x"])
    assert measurer.map(int, ["1", "2"]) == [1, 2]  # still usable afterwards
    assert measurer.map(int, []) == []


def test_workers_without_the_resource():
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as c,
    ):
        with pytest.raises(ShiftnasError, match="--resources") as info:
            DaskMeasurer(c)
        assert 'latency=1"' in str(info.value) and "--nthreads 1" in str(info.value)
        assert c.submit(abs, -3).result() == 3  # a client passed in is not closed by the measurer


def test_missing_distributed_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    with pytest.raises(ShiftnasError, match=r"pip install 'shiftnas\[dask\]'"):
        DaskMeasurer("tcp://127.0.0.1:8786")


def test_unreachable_scheduler():
    with pytest.raises(ShiftnasError, match="tcp://127.0.0.1:1") as info:
        DaskMeasurer("tcp://127.0.0.1:1", timeout=1)
    assert "\n" not in str(info.value)


def test_search_measures_each_population_on_the_workers(
    client, trained_supernet, compact_space, digits, eval_config, tmp_path
):
    """`--dask`: NSGA-II sends the new architectures of every population to the latency workers at once."""
    from shiftnas.engine.evaluation.latency import MeasuredLatency
    from shiftnas.engine.evaluation.latency_dataset import reference_models
    from shiftnas.engine.evaluation.metrics import ArchitectureMetrics
    from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
    from shiftnas.engine.evaluation.subnet import SubnetEvaluator
    from shiftnas.engine.search.archive import Archive
    from shiftnas.engine.search.base import SearchProblem
    from shiftnas.engine.search.nsga2 import NSGA2Search
    from shiftnas.hardware import LatencyCache, LatencyProfiler

    net, _, _ = trained_supernet
    cfg = dataclasses.replace(CFG, references=2)
    measurer = DaskMeasurer(client)
    batches = []
    remote_map = measurer.map
    measurer.map = lambda fn, items, shared=None: batches.append(len(items)) or remote_map(fn, items, shared)
    profiler = LatencyProfiler(
        cfg,
        cache=LatencyCache(tmp_path / "l.sqlite"),
        fingerprint=measurer.fingerprint(cfg),
        references=reference_models(compact_space, net, cfg),
    )
    objs = resolve_objectives(["error", "latency"])
    evaluator = SubnetEvaluator(compact_space, net, digits, eval_config)
    metrics = ArchitectureMetrics(evaluator, MeasuredLatency(profiler, measurer), needed_metrics(objs, []))
    result = NSGA2Search(SearchProblem(compact_space, metrics, objs, [], Archive()), 6, 2).run()
    keys = {r["key"] for r in result.archive}
    assert profiler.n_measured == len(keys) == sum(batches)  # every latency came from the workers
    assert len(batches) == 2 and batches[0] == 6  # one batch per generation, the whole first population
    for r in result.archive:
        m = r["metrics"]
        assert (
            m["latency_ms"] > 0
            and m["latency_ratio"] > 0
            and m["latency_reference"] in profiler.references[0].name + profiler.references[1].name
        )


def test_profile_measures_on_the_workers_and_a_measurement_past_its_timeout_is_a_one_line_error(client, tmp_path):
    # last in this module: the timed-out measurement keeps its worker busy until it returns
    from typer.testing import CliRunner

    from shiftnas.cli import app

    address = client.scheduler.address
    base = ["profile", "--space", "compact-mbv3", "--dask", address, "--references", "0", "--repeats", "1"]
    out = tmp_path / "workers.json"
    done = CliRunner().invoke(app, [*base, "--out", str(out), "--samples", "3", "--runs", "3", "--warmup", "1"])
    assert done.exit_code == 0, done.output
    records = json.loads(out.read_text())["records"]
    assert len(records) == 3 and all(r["latency"]["median_ms"] > 0 for r in records)
    # a large batch timed many times cannot finish within one second
    slow = [*base, "--out", str(tmp_path / "slow.json"), "--samples", "2", "--batch-size", "64", "--runs", "2000"]
    failed = CliRunner().invoke(app, [*slow, "--dask-timeout", "1"])
    last = failed.output.strip().splitlines()[-1]  # after the progress bar
    assert failed.exit_code == 2 and last.startswith("error:") and "did not finish within 1 s" in last, failed.output
    assert "--dask-timeout" in last and "Traceback" not in failed.output and not (tmp_path / "slow.json").exists()
