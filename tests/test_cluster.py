"""Accuracy evaluation and ground-truth training on a real local Dask cluster (two worker processes)."""

from __future__ import annotations

import copy
import dataclasses
import os
import signal
import time

import numpy as np
import pytest
import torch
from rich.console import Console

distributed = pytest.importorskip("distributed")

from shiftnas.cluster.evaluation import RESOURCE, RemoteScorer, loaded_on_worker  # noqa: E402
from shiftnas.cluster.pool import TRAIN_RESOURCE, DaskPool, software_versions, version_mismatch  # noqa: E402
from shiftnas.config import FinetuneRecipe, RunConfig, ShiftConfig, StandaloneRecipe  # noqa: E402
from shiftnas.engine.evaluation.metrics import ArchitectureMetrics  # noqa: E402
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives  # noqa: E402
from shiftnas.engine.evaluation.subnet import SubnetEvaluator  # noqa: E402
from shiftnas.engine.groundtruth.table import GroundTruthTable, build_groundtruth  # noqa: E402
from shiftnas.engine.search.archive import Archive  # noqa: E402
from shiftnas.engine.search.base import SearchProblem  # noqa: E402
from shiftnas.engine.search.nsga2 import NSGA2Search  # noqa: E402
from shiftnas.engine.search.shifting import make_shift_strategy  # noqa: E402
from shiftnas.errors import ShiftnasError  # noqa: E402
from shiftnas.pipeline.context import FinishedRun  # noqa: E402
from shiftnas.pipeline.finetune import finetune_records  # noqa: E402
from shiftnas.search_spaces import Arch, get_space  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    # worker processes (jobs and results really go through pickling), one torch thread each
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        resources={RESOURCE: 1, TRAIN_RESOURCE: 1},
        dashboard_address=":0",
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    ) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


def _search(space, net, data, eval_config, remote=None, shift_cfg=None, tmp_path=None, seed=0):
    objs = resolve_objectives(["error", "macs"])
    evaluator = SubnetEvaluator(space, net, data, eval_config, remote=remote, seed=seed)
    shift = (
        make_shift_strategy(space, evaluator, data, shift_cfg, seed=0, version_path=lambda v: tmp_path / f"v{v}.pt")
        if shift_cfg
        else None
    )
    problem = SearchProblem(
        space, ArchitectureMetrics(evaluator, None, needed_metrics(objs, [])), objs, [], Archive(), seed=0
    )
    if shift is not None:
        problem.shift = shift
    result = NSGA2Search(problem, 6, 3, reevaluate=True).run()
    return [(r["key"], r["supernet_version"], r["metrics"]["error"], r["metrics"]["mmacs"]) for r in result.archive]


@pytest.mark.parametrize("val_images", ["all", "stratified"])  # stratified: workers score the local subset
def test_search_scored_on_workers_equals_the_local_search(
    client, trained_supernet, compact_space, digits, eval_config, val_images
):
    net = trained_supernet[0]
    cfg = dataclasses.replace(eval_config, val_images=val_images, pilots=3)
    seed = 3  # workers make their evaluators with the default seed 0: they must use the subset they are sent
    local = _search(compact_space, net, digits, cfg, seed=seed)
    with DaskPool(client, RESOURCE) as pool:
        scorer = RemoteScorer(pool)
        remote = _search(compact_space, net, digits, cfg, remote=scorer, seed=seed)
    assert remote == local  # same architectures, same errors to the last digit, same MACs
    assert scorer.n_batches == 3  # one batch of new architectures per generation


def test_shifted_search_sends_every_weights_version_to_the_workers(
    client, trained_supernet, compact_space, digits, eval_config, tmp_path
):
    cfg = ShiftConfig("per_iteration", lr=0.01, keep_checkpoints=False)
    local = _search(
        compact_space, copy.deepcopy(trained_supernet[0]), digits, eval_config, shift_cfg=cfg, tmp_path=tmp_path
    )
    with DaskPool(client, RESOURCE) as pool:
        before = client.run(loaded_on_worker)
        remote = _search(
            compact_space,
            copy.deepcopy(trained_supernet[0]),
            digits,
            eval_config,
            remote=RemoteScorer(pool),
            shift_cfg=cfg,
            tmp_path=tmp_path,
        )
    assert {v for _, v, _, _ in local} == {0, 1, 2}  # two updates: three weights versions scored
    assert remote == local  # every version's scores equal the local ones: the workers had the new weights
    loaded = [t for w, tokens in client.run(loaded_on_worker).items() for t in tokens[len(before.get(w, [])) :]]
    assert {int(t.rsplit(":", 1)[1]) for t in loaded} == {0, 1, 2}  # each worker built each version once at most
    assert len(loaded) <= 2 * 3


def test_per_candidate_shifting_scores_locally(client, trained_supernet, compact_space, digits, eval_config, tmp_path):
    """The weights change between candidates: a batch on the workers would score stale weights."""
    with DaskPool(client, RESOURCE) as pool:
        scorer = RemoteScorer(pool)
        cfg = ShiftConfig("per_candidate", lr=0.01, keep_checkpoints=False)
        net = copy.deepcopy(trained_supernet[0])
        objs = resolve_objectives(["error", "macs"])
        evaluator = SubnetEvaluator(compact_space, net, digits, eval_config, remote=scorer)
        metrics = ArchitectureMetrics(evaluator, None, needed_metrics(objs, []))
        shift = make_shift_strategy(compact_space, evaluator, digits, cfg, seed=0)
        problem = SearchProblem(compact_space, metrics, objs, [], Archive(), seed=0, shift=shift)
        NSGA2Search(problem, 4, 1, reevaluate=False).run()
    assert scorer.n_batches == 0 and evaluator.version > 0


_RECIPE = StandaloneRecipe(epochs=3, batch_size=32, lr=0.05)


def _archs() -> list[Arch]:
    layers = [((3, 3),), ((5, 4),), ((3, 6),), ((7, 3),)]
    return [Arch(stages=tuple(layers[(i + j) % 4] for j in range(4)), resolution=16) for i in range(4)]


def test_groundtruth_survives_a_worker_killed_mid_job(client, digits, tmp_path):
    """One worker dies while training: its job is re-run elsewhere; no row is missing or doubled."""
    space = get_space("compact-mbv3", resolutions=[16])
    archs, seeds = _archs(), [0, 1]
    killed: list[int] = []

    def kill_a_busy_worker(done, total, record):
        if killed:
            return
        pids = client.run(os.getpid)
        for address, keys in client.processing().items():
            if keys and address in pids:
                os.kill(pids[address], signal.SIGKILL)
                killed.append(pids[address])
                return

    with DaskPool(client, TRAIN_RESOURCE, task_timeout=300) as pool:
        path = tmp_path / "gt.jsonl"
        build_groundtruth(space, digits, archs, _RECIPE, seeds, path, progress=kill_a_busy_worker, pool=pool)
    assert killed, "no worker was busy when the first record came in"
    records = GroundTruthTable(path).records
    pairs = [(r["key"], r["seed"]) for r in records]
    assert len(pairs) == len(set(pairs)) == len(archs) * len(seeds)
    assert set(pairs) == {(a.key(), s) for a in archs for s in seeds}
    # the same numbers as a local build (one torch thread, as on the workers)
    local = tmp_path / "local.jsonl"
    build_groundtruth(space, digits, archs[:1], _RECIPE, [1], local)
    (mine,) = GroundTruthTable(local).records
    (theirs,) = [r for r in records if (r["key"], r["seed"]) == (archs[0].key(), 1)]
    assert mine["test_accuracy"] == theirs["test_accuracy"] and mine["val_loss"] == theirs["val_loss"]
    # the nanny restarted the killed worker: the pool is whole again
    deadline = time.monotonic() + 60
    while len(client.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)


def test_a_job_past_the_timeout_is_a_one_line_error(client):
    with DaskPool(client, RESOURCE, task_timeout=0.5) as pool:
        with pytest.raises(ShiftnasError, match="did not finish within 0.5 s") as info:
            pool.map(time.sleep, [2])
        assert "\n" not in str(info.value) and "dask_timeout_s" in str(info.value)
        with pytest.raises(ShiftnasError, match="did not finish within"):
            list(pool.as_completed([pool.submit(time.sleep, 2)]))
    # a cancelled job still holds its worker until it returns (Dask cannot stop a running thread)
    with DaskPool(client, RESOURCE, task_timeout=60) as pool:
        assert pool.map(abs, [-2]) == [2]  # the cluster is still usable


def test_other_software_on_a_worker_is_named(client):
    real = software_versions()
    assert version_mismatch(real, dict(real)) == ""
    assert version_mismatch(real, {**real, "torch": "0.1"}) == f"torch: {real['torch']} vs 0.1"
    with DaskPool(client, RESOURCE) as pool:  # the workers run this environment: accepted
        with pytest.raises(
            ShiftnasError, match=rf"runs other software than this process \(torch: 0.1 vs {real['torch']}\)"
        ):
            pool.check_versions({**real, "torch": "0.1"})


def test_a_scheduler_without_eval_workers(client):
    with pytest.raises(ShiftnasError, match='--resources "nosuch=1"'):
        DaskPool(client, "nosuch")
    pool = DaskPool(client, "nosuch", require_workers=False)
    assert pool.n_workers == 0


def test_finetuning_on_workers_equals_a_local_one(client, trained_supernet, compact_space, digits, eval_config):
    net, _, _ = trained_supernet
    cfg = RunConfig()
    run = FinishedRun(cfg, None, digits, compact_space, net, SubnetEvaluator(compact_space, net, digits, eval_config))
    archs = [compact_space.smallest(), compact_space.sample(np.random.default_rng(1))]
    records = [{"key": a.key(), "arch": a.to_dict()} for a in archs]
    recipe = FinetuneRecipe(epochs=2, patience=1, batch_size=64)
    address = client.scheduler.address
    remote = {r["key"]: res for r, res in finetune_records(run, records, recipe, 0, Console(quiet=True), address)}
    local = {r["key"]: res for r, res in finetune_records(run, records, recipe, 0, Console(quiet=True), None)}
    assert sorted(remote) == sorted(local) == sorted(a.key() for a in archs)
    for key, res in local.items():
        model = res.pop("model")
        other = remote[key].pop("model")
        assert remote[key] == res  # accuracies, curve and best epoch to the last digit
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
