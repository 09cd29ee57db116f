"""A real pymoo NSGA-II run on a real tiny supernet; objectives, constraints, archive, resume, picks."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from shiftnas.config import LatencyConfig
from shiftnas.engine.evaluation.latency import MeasuredLatency
from shiftnas.engine.evaluation.metrics import ArchitectureMetrics
from shiftnas.engine.evaluation.objectives import needed_metrics, parse_constraint, resolve_objectives
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.search.archive import Archive
from shiftnas.engine.search.base import SearchProblem, normalized_hypervolume, pareto_records
from shiftnas.engine.search.nsga2 import NSGA2Search
from shiftnas.errors import ConfigError
from shiftnas.hardware import LatencyCache, LatencyProfiler
from shiftnas.report import pick


@pytest.mark.parametrize(
    "text,column,bound",
    [
        ("latency<=5ms", "latency_ms", 5.0),
        ("latency <= 0.5 s", "latency_ms", 500.0),
        ("macs<=10M", "mmacs", 10.0),
        ("macs<=500k", "mmacs", 0.5),
        ("params<=1.5M", "mparams", 1.5),
        ("accuracy>=97%", "accuracy", 97.0),
        ("error<3", "error", 3.0),
    ],
)
def test_constraints_parse_with_units(text, column, bound):
    c = parse_constraint(text)
    assert (c.column, c.bound) == (column, pytest.approx(bound))


@pytest.mark.parametrize(
    "text", ["latency<=", "latency=5ms", "speed<=5", "latency<=5parsecs", "macs>=3M", "accuracy<=90", ""]
)
def test_malformed_constraints_are_config_errors(text):
    with pytest.raises(ConfigError):
        parse_constraint(text)


def test_constraint_sign_follows_pymoo_convention():
    assert parse_constraint("latency<=5ms").g({"latency_ms": 4.0}) < 0
    assert parse_constraint("latency<=5ms").g({"latency_ms": 6.0}) > 0
    assert parse_constraint("accuracy>=90").g({"accuracy": 95.0}) < 0


def test_objective_names_are_validated():
    assert [o.column for o in resolve_objectives(["error", "latency", "macs", "params"])] == [
        "error",
        "latency_ms",
        "mmacs",
        "mparams",
    ]
    for bad in (["error"], ["error", "speed"], ["error", "error"]):
        with pytest.raises(ConfigError):
            resolve_objectives(bad)


def make_search(
    space, net, data, eval_config, objectives, constraints=(), archive=None, latency=None, pop=8, gens=3, seed=0
):
    objs = resolve_objectives(objectives)
    cons = [parse_constraint(c) for c in constraints]
    evaluator = SubnetEvaluator(space, net, data, eval_config)
    metrics = ArchitectureMetrics(evaluator, latency, needed_metrics(objs, cons))
    archive = archive if archive is not None else Archive()
    return NSGA2Search(SearchProblem(space, metrics, objs, cons, archive, seed=seed), pop, gens), evaluator


def dominated(a, b):
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def test_nsga2_on_a_real_supernet(trained_supernet, compact_space, digits, eval_config, tmp_path):
    net, _, _ = trained_supernet
    search, evaluator = make_search(
        compact_space,
        net,
        digits,
        eval_config,
        ["error", "macs"],
        constraints=["macs<=4M"],
        archive=Archive(tmp_path / "archive.jsonl"),
    )
    seen = []
    result = search.run(lambda g, total, s: seen.append((g, total, s["hypervolume"])))
    assert [g for g, _, _ in seen] == [1, 2, 3]
    keys = [r["key"] for r in result.archive]
    assert len(keys) == len(set(keys)) == evaluator.n_evaluations >= 8  # duplicates never re-evaluated
    assert all(r["supernet_version"] == 0 for r in result.archive)
    front = result.front
    assert front and all(r["metrics"]["mmacs"] <= 4.0 for r in front)
    F = [(r["metrics"]["error"], r["metrics"]["mmacs"]) for r in front]
    assert not any(dominated(a, b) for a in F for b in F)
    feasible = [r for r in result.archive if r["metrics"]["mmacs"] <= 4.0]
    for r in feasible:  # nothing evaluated dominates the front
        assert not any(dominated((r["metrics"]["error"], r["metrics"]["mmacs"]), f) for f in F)
    hv = [h["hypervolume"] for h in result.hv_history]
    assert len(hv) == 3 and all(0 <= v <= 1 for v in hv)
    assert len(Archive(tmp_path / "archive.jsonl")) == len(result.archive)  # persisted record by record


def test_search_is_deterministic_and_resumes_from_the_archive(
    trained_supernet, compact_space, digits, eval_config, tmp_path
):
    net, _, _ = trained_supernet
    path = tmp_path / "archive.jsonl"
    first, _ = make_search(
        compact_space, net, digits, eval_config, ["error", "params"], archive=Archive(path), gens=2, seed=7
    )
    r1 = first.run()
    again, _ = make_search(compact_space, net, digits, eval_config, ["error", "params"], gens=2, seed=7)
    assert [r["key"] for r in again.run().front] == [r["key"] for r in r1.front]
    # a resumed run replays the archive: nothing is evaluated twice and the result is the same
    resumed, evaluator = make_search(
        compact_space, net, digits, eval_config, ["error", "params"], archive=Archive(path), gens=2, seed=7
    )
    r3 = resumed.run()
    assert evaluator.n_evaluations == 0
    assert [r["key"] for r in r3.front] == [r["key"] for r in r1.front]
    # records of other weights are never reused (e.g. the supernet was retrained in the same run dir)
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.classifier.linear.bias.add_(0.01)
    stale, evaluator = make_search(
        compact_space, other, digits, eval_config, ["error", "params"], archive=Archive(path), gens=2, seed=7
    )
    stale.run()
    assert evaluator.n_evaluations > 0
    # nor records scored on other validation images (every image vs a stratified subset)
    stratified = dataclasses.replace(eval_config, val_images="stratified", pilots=3)
    for expected_new in (True, False):  # the first stratified run scores anew; its resume reuses its own records
        run, evaluator = make_search(
            compact_space, net, digits, stratified, ["error", "params"], archive=Archive(path), gens=2, seed=7
        )
        run.run()
        assert (evaluator.n_evaluations > 0) == expected_new


def test_search_with_measured_latency(trained_supernet, compact_space, digits, eval_config, tmp_path):
    net, _, _ = trained_supernet
    profiler = LatencyProfiler(LatencyConfig(warmup=2, repeats=2, runs=5), cache=LatencyCache(tmp_path / "l.sqlite"))
    search, _ = make_search(
        compact_space,
        net,
        digits,
        eval_config,
        ["error", "latency", "macs"],
        latency=MeasuredLatency(profiler),
        pop=6,
        gens=2,
    )
    result = search.run()
    assert profiler.n_measured == len({r["key"] for r in result.archive})
    for r in result.archive:
        m = r["metrics"]
        assert m["latency_ms"] > 0 and m["latency_p10_ms"] <= m["latency_ms"] and m["mmacs"] > 0
    assert pick(result.front, "min-latency", search.objectives)["metrics"]["latency_ms"] == min(
        r["metrics"]["latency_ms"] for r in result.front
    )


def _record(key, error, lat, macs):
    return {
        "key": key,
        "metrics": {"error": error, "latency_ms": lat, "mmacs": macs},
        "supernet_version": 0,
        "generation": 1,
        "arch": {},
        "genome": [],
    }


def test_picks():
    objs = resolve_objectives(["error", "latency"])
    front = [_record("a", 1.0, 10.0, 9), _record("b", 2.0, 3.0, 5), _record("c", 9.0, 1.0, 1)]
    assert pick(front, "max-acc", objs)["key"] == "a"
    assert pick(front, "min-latency", objs)["key"] == "c"
    assert pick(front, "knee", objs)["key"] == "b"
    with pytest.raises(ConfigError):
        pick(front, "best", objs)


def test_pareto_records_and_hypervolume():
    archive = Archive()
    objs = resolve_objectives(["error", "macs"])
    rows = {"a": (1.0, 9.0), "b": (2.0, 5.0), "c": (3.0, 6.0), "d": (9.0, 1.0)}
    for key, (err, macs) in rows.items():
        archive.records.append(_record(key, err, 0.0, macs))
    assert [r["key"] for r in pareto_records(archive.records, objs, [])] == ["d", "b", "a"]
    assert [r["key"] for r in pareto_records(archive.records, objs, [parse_constraint("macs<=5.5M")])] == ["d", "b"]
    ref = np.array([10.0, 10.0])
    assert normalized_hypervolume(np.array([[0.0, 0.0]]), ref) == pytest.approx(1.0)
    assert normalized_hypervolume(np.array([[5.0, 5.0]]), ref) == pytest.approx(0.25)
    assert normalized_hypervolume(np.array([[11.0, 0.0]]), ref) == 0.0
