"""Shift strategies on a real tiny supernet: weights, versions, fair re-evaluation, checkpoints."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from shiftnas.config import ShiftConfig
from shiftnas.engine.evaluation.metrics import ArchitectureMetrics
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.search.archive import Archive
from shiftnas.engine.search.base import SearchProblem
from shiftnas.engine.search.nsga2 import NSGA2Search
from shiftnas.engine.search.shifting import SHIFT_STRATEGIES, make_shift_strategy
from shiftnas.errors import ConfigError


def run_search(space, net, data, eval_config, shift_cfg, tmp_path, gens=3, pop=6, archive=None, seed=0):
    objs = resolve_objectives(["error", "macs"])
    evaluator = SubnetEvaluator(space, net, data, eval_config)
    strategy = make_shift_strategy(
        space, evaluator, data, shift_cfg, seed=seed, version_path=lambda v: tmp_path / f"supernet_v{v}.pt"
    )
    problem = SearchProblem(
        space,
        ArchitectureMetrics(evaluator, None, needed_metrics(objs, [])),
        objs,
        [],
        archive if archive is not None else Archive(),
        seed=seed,
        shift=strategy,
    )
    search = NSGA2Search(problem, pop, gens, reevaluate=shift_cfg.reevaluate)
    return search.run(), evaluator, strategy


def state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_none_leaves_the_supernet_bit_identical(trained_supernet, compact_space, digits, eval_config, tmp_path):
    net = copy.deepcopy(trained_supernet[0])
    before = state(net)
    result, evaluator, strategy = run_search(compact_space, net, digits, eval_config, ShiftConfig("none"), tmp_path)
    assert same_weights(before, state(net))
    assert evaluator.version == 0 and {r["supernet_version"] for r in result.archive} == {0}
    assert not list(tmp_path.glob("supernet_v*.pt"))
    assert strategy.passes == 0


@pytest.mark.parametrize("shift_on", ["evaluated", "nondominated"])
def test_per_iteration_updates_once_per_generation_and_rescoring_is_fair(
    trained_supernet, compact_space, digits, eval_config, tmp_path, shift_on
):
    net = copy.deepcopy(trained_supernet[0])
    before = state(net)
    cfg = ShiftConfig("per_iteration", shift_on=shift_on, lr=0.01)
    result, evaluator, strategy = run_search(compact_space, net, digits, eval_config, cfg, tmp_path, gens=3)
    assert not same_weights(before, state(net))
    assert evaluator.version == strategy.updates == 2  # generations 1 and 2; none after the last
    if shift_on == "evaluated":  # one batch per architecture the generation evaluated, one step each
        new = [r for r in result.archive if (r["generation"], r["supernet_version"]) in {(1, 0), (2, 1)}]
        assert strategy.passes == len(new)
    for h in result.hv_history:  # parents and offspring compared under one supernet version
        assert len(h["versions_compared"]) == 1
    assert [h["versions_compared"][0] for h in result.hv_history] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.glob("supernet_v*.pt")) == ["supernet_v1.pt", "supernet_v2.pt"]
    assert {r["supernet_version"] for r in result.front} == {2}
    # survivors were re-scored: the archive holds the same architecture under several versions
    by_key = {}
    for r in result.archive:
        by_key.setdefault(r["key"], set()).add(r["supernet_version"])
    assert any(len(v) > 1 for v in by_key.values())


def test_per_candidate_steps_before_every_candidate_and_rescores_before_survival(
    trained_supernet, compact_space, digits, eval_config, tmp_path
):
    net = copy.deepcopy(trained_supernet[0])
    cfg = ShiftConfig("per_candidate", candidate_steps=2, lr=0.01, keep_checkpoints=False)
    result, evaluator, strategy = run_search(compact_space, net, digits, eval_config, cfg, tmp_path, gens=2)
    n_candidates = evaluator.version
    assert n_candidates == strategy.updates >= 6
    assert strategy.passes == 2 * n_candidates  # candidate_steps passes of its own path per candidate
    assert all(len(h["versions_compared"]) == 1 for h in result.hv_history)
    unfair, _, _ = run_search(
        compact_space,
        copy.deepcopy(trained_supernet[0]),
        digits,
        eval_config,
        ShiftConfig("per_candidate", candidate_steps=2, lr=0.01, reevaluate=False, keep_checkpoints=False),
        tmp_path,
        gens=2,
    )
    assert any(len(h["versions_compared"]) > 1 for h in unfair.hv_history)


@pytest.mark.parametrize("sampler", ["uniform_members", "gene_marginals"])
def test_region_fine_tunes_on_paths_from_the_population(
    trained_supernet, compact_space, digits, eval_config, tmp_path, sampler
):
    net = copy.deepcopy(trained_supernet[0])
    before = state(net)
    cfg = ShiftConfig("region", region_sampler=sampler, region_steps=3, lr=0.01)
    result, evaluator, strategy = run_search(compact_space, net, digits, eval_config, cfg, tmp_path, gens=2)
    assert not same_weights(before, state(net)) and evaluator.version == 1
    assert strategy.passes == 3  # region_steps single-path steps, one update (gens=2)
    region = np.stack([compact_space.encode(compact_space.sample(np.random.default_rng(i))) for i in range(5)])
    for _ in range(20):
        arch = strategy.sample_region(region)
        compact_space.validate(arch)
        genome = compact_space.encode(arch)
        if sampler == "uniform_members":
            assert any(np.array_equal(genome, compact_space.repair(g)) for g in region)
        else:  # each gene was drawn from its column (repair may then push a stage's skips to its end)
            md = compact_space.spec.max_depth
            assert genome[0] in set(region[:, 0])
            for st in range(compact_space.spec.n_stages):
                cols = slice(1 + st * md, 1 + (st + 1) * md)
                assert set(genome[cols]) - {0} <= set(region[:, cols].ravel())


def test_shifted_search_is_deterministic_and_resumes(trained_supernet, compact_space, digits, eval_config, tmp_path):
    cfg = ShiftConfig("per_iteration", lr=0.01, keep_checkpoints=False)
    path = tmp_path / "archive.jsonl"
    first, _, _ = run_search(
        compact_space,
        copy.deepcopy(trained_supernet[0]),
        digits,
        eval_config,
        cfg,
        tmp_path,
        gens=2,
        archive=Archive(path),
    )
    resumed, evaluator, _ = run_search(
        compact_space,
        copy.deepcopy(trained_supernet[0]),
        digits,
        eval_config,
        cfg,
        tmp_path,
        gens=2,
        archive=Archive(path),
    )
    assert evaluator.n_evaluations == 0  # the updates are replayed, the scores come from the archive
    assert [r["key"] for r in resumed.front] == [r["key"] for r in first.front]
    assert [r["metrics"]["error"] for r in resumed.front] == [r["metrics"]["error"] for r in first.front]


def test_bad_shift_config_is_a_config_error():
    for kwargs in ({"shift_on": "all"}, {"region_sampler": "x"}, {"lr": 0.0}, {"steps": 0}):
        with pytest.raises(ConfigError):
            ShiftConfig(**kwargs)
    with pytest.raises(ConfigError, match="unknown shift strategy 'sometimes'"):  # a registry name
        SHIFT_STRATEGIES.get("sometimes")
