"""NAT / NATv2: archive policies, surrogates, subset selection and the loop, on real digits data."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from shiftnas.config import NATConfig, ShiftConfig
from shiftnas.engine.evaluation.metrics import ArchitectureMetrics
from shiftnas.engine.evaluation.objectives import needed_metrics, resolve_objectives
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.search.archive import Archive
from shiftnas.engine.search.base import SearchFiles, SearchProblem
from shiftnas.engine.search.nat import NATSearch, gene_distributions, sample_from, select_subset, spread
from shiftnas.engine.search.nat_archive import (
    initial_architectures,
    preprocess,
    sample_architecture_space,
    survive,
    update_archive,
)
from shiftnas.engine.search.shifting import NoShift, make_shift_strategy
from shiftnas.engine.training.optim import lr_at
from shiftnas.errors import ConfigError
from shiftnas.predictors.surrogate import AdaptiveSwitching, cv_kendall, fit_quality, make_surrogate
from shiftnas.report import pick
from shiftnas.report.pareto import high_tradeoff

OBJS = ["error", "macs"]


def nat_search(space, metrics, objs, cfg, seed=0, run_dir=None, log=None, shift=None, cls=NATSearch):
    """A NAT searcher over (space, metrics, objs), its state under ``run_dir`` when given."""
    files = SearchFiles(run_dir / "nat_state.json", run_dir / "nat_supernet.pt") if run_dir is not None else None
    problem = SearchProblem(
        space,
        metrics,
        objs,
        [],
        log if log is not None else Archive(),
        seed=seed,
        shift=shift if shift is not None else NoShift(),
        files=files,
    )
    return cls(problem, cfg)


@pytest.fixture
def nat_parts(trained_supernet, compact_space, digits, eval_config):
    net = copy.deepcopy(trained_supernet[0])  # the loop adapts the supernet: keep the session's intact
    objs = resolve_objectives(OBJS)
    evaluator = SubnetEvaluator(compact_space, net, digits, eval_config)
    return compact_space, ArchitectureMetrics(evaluator, None, needed_metrics(objs, [])), objs


def _record(key, error, macs, genome=()):
    return {"key": key, "metrics": {"error": error, "mmacs": macs}, "genome": list(genome)}


# --------------------------------------------------------------------------- archive policies


def test_architecture_space_init_has_natv2_depth_distribution(compact_space):
    rng = np.random.default_rng(0)
    depths = np.array([a.depths for a in (sample_architecture_space(compact_space, rng) for _ in range(3000))]).ravel()
    freq = np.bincount(depths, minlength=4)[1:] / depths.size  # compact-mbv3: depth 1..3
    assert freq == pytest.approx([1 / 3, 2 / 9, 4 / 9], abs=0.02)
    uniform = initial_architectures(compact_space, 300, "genome-uniform", np.random.default_rng(0))
    deep = np.mean([d == 3 for a in uniform for d in a.depths])
    assert deep > 0.6  # genome-uniform: a skip needs gene 0 of 10, so stages are mostly full (NAT's bias)
    with pytest.raises(ConfigError):
        initial_architectures(compact_space, 3, "random", rng)


def test_survive_keeps_rank_then_crowding():
    recs = [_record("a", 1, 9), _record("b", 2, 5), _record("c", 9, 1), _record("d", 5, 6), _record("e", 3, 8)]
    kept = survive(recs, 3, ["error", "mmacs"])
    assert [r["key"] for r in kept] == ["a", "b", "c"]  # the non-dominated front, in archive order
    assert [r["key"] for r in survive(recs, 1, ["error"])] == ["a"]
    assert survive(recs, 10, ["error", "mmacs"]) == recs


def test_update_policies_grow_and_bounded():
    archive = [_record("a", 1, 9), _record("b", 2, 5), _record("c", 9, 1)]
    new = [_record("b", 0, 0), _record("d", 1.5, 4), _record("e", 9, 9)]  # "b" is already archived: dropped
    grown = update_archive(archive, new, "grow", 3, ["error", "mmacs"])
    assert [r["key"] for r in grown] == ["a", "b", "c", "d", "e"]
    bounded = update_archive(archive, new, "bounded", 3, ["error", "mmacs"])
    assert len(bounded) == 3 and "e" not in {r["key"] for r in bounded} and "d" in {r["key"] for r in bounded}
    with pytest.raises(ConfigError):
        update_archive(archive, new, "shrink", 3, ["error"])


def test_preprocessing_keeps_the_best_of_the_oversample_plus_extremes(nat_parts):
    space, metrics, objs = nat_parts
    log = []

    def evaluate(arch):
        rec = {
            "key": arch.key(),
            "arch": arch.to_dict(),
            "genome": space.encode(arch).tolist(),
            "metrics": metrics.metrics(arch),
        }
        log.append(rec)
        return rec

    archive = preprocess(space, 6, 3, "architecture-space", evaluate, ["error", "mmacs"], np.random.default_rng(0))
    keys = [r["key"] for r in archive]
    assert len(keys) == len(set(keys)) == 6 and len(log) == 3 * 6 - 2 + 2
    assert space.smallest().key() in keys and space.largest().key() in keys
    pool = [r for r in log if r["key"] not in (space.smallest().key(), space.largest().key())]
    kept = survive(pool, 4, ["error", "mmacs"])
    assert {r["key"] for r in kept} == set(keys[:4])  # exactly rank-and-crowding's choice


# --------------------------------------------------------------------------- surrogates


@pytest.fixture(scope="module")
def genome_data(compact_space):
    """Genomes and a smooth, noisy target: bigger networks have lower 'error'."""
    rng = np.random.default_rng(0)
    archs = initial_architectures(compact_space, 60, "architecture-space", rng)
    X = np.array([compact_space.encode(a) for a in archs], dtype=float)
    y = 20 - 0.3 * X.sum(axis=1) + 0.05 * X[:, 0] ** 2 + rng.normal(0, 0.3, len(X))
    return X, y


@pytest.mark.parametrize("name", ["lgbm", "rbf", "gp"])
def test_surrogates_fit_and_predict(genome_data, name):
    X, y = genome_data
    model = make_surrogate(name, seed=0).fit(X[:45], y[:45])
    pred = model.predict(X[45:])
    assert pred.shape == (15,) and np.all(np.isfinite(pred))
    quality = fit_quality(pred, y[45:])
    assert set(quality) == {"rmse", "pearson_r", "spearman_rho", "kendall_tau"}
    assert quality["kendall_tau"] > 0.4  # learns the trend on held-out genomes
    again = make_surrogate(name, seed=0).fit(X[:45], y[:45]).predict(X[45:])
    assert np.allclose(pred, again)  # deterministic per seed


def test_rbf_ensemble_fits_genes_that_are_constant_or_collinear(genome_data):
    # a converged archive: gene 2 copies gene 1 and gene 3 is 2 x gene 1 (scipy's linear tail is singular there)
    X, y = genome_data
    X = X.copy()
    X[:, 2] = X[:, 1]
    X[:, 3] = 2 * X[:, 1]
    X[:, 4] = 7.0
    model = make_surrogate("rbf", seed=0)
    model.fit(X[:45], y[:45])
    assert np.all(np.isfinite(model.predict(X[45:])))
    assert not any({2, 3} <= set(cols) or {1, 2} <= set(cols) for cols, _ in model.models)


def test_adaptive_switching_picks_the_best_cv_tau(genome_data):
    X, y = genome_data
    model = AdaptiveSwitching(seed=0).fit(X, y)
    scores = {n: cv_kendall(n, X, y, 10, 0) for n in ("lgbm", "rbf", "gp")}
    best = max(scores, key=lambda n: scores[n].mean() - scores[n].std())
    assert model.chosen == best and model.describe()["chosen"] == best
    assert model.cv[best]["score"] == pytest.approx(scores[best].mean() - scores[best].std())
    assert np.allclose(model.predict(X[:5]), make_surrogate(best, 0).fit(X, y).predict(X[:5]))
    with pytest.raises(ConfigError):
        make_surrogate("forest")


# --------------------------------------------------------------------------- subset selection


def test_subset_selection_spreads_the_front_better_than_random():
    rng = np.random.default_rng(0)
    front = np.array([[1.0], [10.0]])
    cand = np.sort(rng.uniform(1, 10, size=(40, 1)), axis=0)
    chosen = select_subset(front, cand, 5, fallback=np.zeros(40))
    assert len(set(chosen)) == 5
    greedy = spread(np.concatenate([front[:, 0], cand[chosen, 0]]))
    randoms = [spread(np.concatenate([front[:, 0], cand[rng.choice(40, 5, replace=False), 0]])) for _ in range(200)]
    assert greedy < np.percentile(randoms, 5)
    assert select_subset(front, np.empty((4, 0)), 2, np.array([3.0, 1.0, 2.0, 0.5])) == [3, 1]
    assert select_subset(front, cand[:3], 5, np.zeros(3)) == [0, 1, 2]


def test_gene_distributions_sample_what_they_were_fitted_on():
    lo, hi = np.array([0, 1]), np.array([2, 3])
    dists = gene_distributions(np.array([[2, 1]] * 50), lo, hi, prior=0.0)
    assert np.allclose(dists[0], [0, 0, 1]) and np.allclose(dists[1], [1, 0, 0])
    rng = np.random.default_rng(0)
    assert all((sample_from(dists, lo, rng) == [2, 1]).all() for _ in range(10))
    smoothed = gene_distributions(np.array([[2, 1]]), lo, hi)
    assert all(p.min() > 0 and p.sum() == pytest.approx(1) for p in smoothed)


# --------------------------------------------------------------------------- the loop


SMALL = dict(
    archive_size=8,
    oversample=2,
    candidates=3,
    iterations=2,
    top_n=4,
    aux_pop_size=10,
    aux_generations=3,
    adapt_steps=2,
    adapt_batch_size=32,
    adapt_subnets=2,
)


def test_natv2_loop_end_to_end_and_resume(nat_parts, tmp_path):
    space, metrics, objs = nat_parts
    weights_before = [p.detach().clone() for p in metrics.evaluator.supernet.parameters()]
    search = nat_search(
        space,
        metrics,
        objs,
        NATConfig(policy="natv2", **SMALL),
        seed=0,
        run_dir=tmp_path,
        log=Archive(tmp_path / "archive.jsonl"),
    )
    seen = []
    result = search.run(lambda it, total, s: seen.append((it, s)))
    assert [it for it, _ in seen] == [0, 1, 2]
    history = result.hv_history
    assert len(history) == 3 and all(h["archive_size"] == 8 for h in history)  # bounded archive
    assert history[1]["surrogate"]["name"] == "lgbm" and history[1]["candidates"] >= 1
    assert history[2]["supernet_version"] == 2  # adapted every iteration
    assert any(not torch.equal(a, b) for a, b in zip(weights_before, metrics.evaluator.supernet.parameters()))
    # everything in the archive was (re-)evaluated with the final weights
    assert all(r["supernet_version"] == 2 for r in result.records)
    keys = [r["key"] for r in result.records]
    assert len(keys) == len(set(keys))
    assert result.front and all(r in result.records for r in result.front)
    # the state on disk is what a resumed run continues from: the finished run is a no-op replay
    state = json.loads((tmp_path / "nat_state.json").read_text())
    assert state["iteration"] == 2 and [r["key"] for r in state["archive"]] == keys
    logged = len(result.archive)
    again = nat_search(
        space,
        metrics,
        objs,
        NATConfig(policy="natv2", **SMALL),
        seed=0,
        run_dir=tmp_path,
        log=Archive(tmp_path / "archive.jsonl"),
    ).run()
    assert len(again.archive) == logged and [r["key"] for r in again.records] == keys
    with pytest.raises(ConfigError, match="other nat settings"):
        nat_search(space, metrics, objs, NATConfig(policy="nat", **SMALL), seed=0, run_dir=tmp_path).run()


def test_nat_policy_grows_the_archive(nat_parts):
    space, metrics, objs = nat_parts
    cfg = NATConfig(policy="nat", **{**SMALL, "adapt_steps": 0, "iterations": 2})
    result = nat_search(space, metrics, objs, cfg, seed=1).run()
    sizes = [h["archive_size"] for h in result.hv_history]
    assert sizes[0] == 8 and sizes[-1] == 8 + sum(h["candidates"] for h in result.hv_history)
    assert result.hv_history[1]["surrogate"]["name"] == "rbf"
    assert all(h["supernet_version"] == 0 for h in result.hv_history)  # no adaptation


def test_nat_config_is_validated():
    assert NATConfig().resolved().surrogate == "lgbm" and NATConfig(policy="nat").resolved().update == "grow"
    for bad in (dict(policy="natv3"), dict(init="x"), dict(update="x"), dict(archive_size=2), dict(oversample=0)):
        with pytest.raises(ConfigError):
            NATConfig(**bad)
    with pytest.raises(ConfigError, match="unknown surrogate 'x'"):  # a registry name, checked when it is used
        make_surrogate("x")


def test_high_tradeoff_pick():
    objs = resolve_objectives(["error", "macs"])
    # a clear knee at (2, 2): moving away from it costs a lot for little gain
    front = [
        _record(k, e, m)
        for k, e, m in [("a", 1.0, 10.0), ("b", 1.2, 6.0), ("c", 2.0, 2.0), ("d", 6.0, 1.6), ("e", 10.0, 1.0)]
    ]
    high = high_tradeoff(front, objs)
    assert 2 in high
    assert pick(front, "trade-off", objs)["key"] == "c"
    assert high_tradeoff(front[:2], objs) == []


def _shift(space, metrics, digits, strategy, **kw):
    cfg = ShiftConfig(strategy=strategy, keep_checkpoints=False, **kw)
    return make_shift_strategy(space, metrics.evaluator, digits, cfg, seed=0)


def test_adaptation_is_one_cosine_schedule_over_the_search(nat_parts):
    space, metrics, objs = nat_parts
    cfg = NATConfig(policy="natv2", **{**SMALL, "adapt_warmup_steps": 1})
    search = nat_search(space, metrics, objs, cfg, seed=0)
    search.run()
    total = cfg.iterations * cfg.adapt_steps
    assert search.optimizer.param_groups[0]["lr"] == pytest.approx(lr_at(total - 1, total, cfg.adapt_lr, 1))
    assert search.optimizer.state  # momentum buffers carried across iterations, not a fresh optimizer each time


@pytest.mark.parametrize(
    "strategy,kw,versions_per_iteration",
    [
        ("per_iteration", {}, 2),  # one shifting update + one adaptation
        ("per_iteration", {"shift_on": "nondominated"}, 2),
        ("region", {"region_steps": 2}, 2),
        ("per_candidate", {"candidate_steps": 1}, None),  # one update per candidate + one adaptation
    ],
)
def test_nat_loop_with_shifting(nat_parts, digits, strategy, kw, versions_per_iteration):
    space, metrics, objs = nat_parts
    shift = _shift(space, metrics, digits, strategy, **kw)
    result = nat_search(space, metrics, objs, NATConfig(policy="natv2", **SMALL), seed=0, shift=shift).run()
    history = result.hv_history
    assert shift.updates >= SMALL["iterations"] and shift.passes > 0
    final = metrics.evaluator.version
    expected = (
        versions_per_iteration * SMALL["iterations"]
        if versions_per_iteration
        else SMALL["iterations"] + sum(h["candidates"] for h in history)
    )
    assert final == history[-1]["supernet_version"] == expected
    # fair re-evaluation: the archive (hence the front) is scored by the final weights only
    assert all(r["supernet_version"] == final for r in result.records)
    if strategy == "per_candidate":
        # the weights moved while the candidates were scored: archive and candidates are re-scored with the last
        # candidate's version before the update compares them (then the adaptation follows, one version later)
        for h in history[1:]:
            logged = [r for r in result.archive if r["generation"] == h["iteration"]]
            compared = sorted({r["supernet_version"] for r in logged})[-2]
            assert sum(r["supernet_version"] == compared for r in logged) >= SMALL["archive_size"] + h["candidates"]


class _Crash(Exception):
    pass


class _CrashingNAT(NATSearch):
    """A search whose process dies at its ``crash_at``-th evaluation."""

    crash_at = 0

    def evaluate(self, arch):
        if self._evaluations + 1 == self.crash_at:
            raise _Crash
        return super().evaluate(arch)


@pytest.mark.parametrize("where", ["between iterations", "inside an iteration"])
def test_nat_resume_after_a_crash_is_identical(where, trained_supernet, compact_space, digits, eval_config, tmp_path):
    def parts():
        objs = resolve_objectives(OBJS)
        evaluator = SubnetEvaluator(compact_space, copy.deepcopy(trained_supernet[0]), digits, eval_config)
        metrics = ArchitectureMetrics(evaluator, None, needed_metrics(objs, []))
        return metrics, objs, _shift(compact_space, metrics, digits, "per_iteration")

    cfg = NATConfig(policy="natv2", **SMALL)
    metrics, objs, shift = parts()
    whole = nat_search(compact_space, metrics, objs, cfg, seed=0, shift=shift).run()
    whole_weights = [p.detach().clone() for p in metrics.evaluator.supernet.parameters()]

    metrics, objs, shift = parts()
    log = Archive(tmp_path / "archive.jsonl")
    crashing = nat_search(
        compact_space, metrics, objs, cfg, seed=0, run_dir=tmp_path, log=log, shift=shift, cls=_CrashingNAT
    )
    # the first evaluation of iteration 2 (right after iteration 1 was saved), or its second one
    redone = 1 if where == "inside an iteration" else 0
    crashing.crash_at = whole.hv_history[1]["evaluated"] + 1 + redone
    with pytest.raises(_Crash):
        crashing.run()
    logged = len(log)
    metrics, objs, shift = parts()  # a new process: fresh weights, the state on disk
    resumed = nat_search(
        compact_space,
        metrics,
        objs,
        cfg,
        seed=0,
        run_dir=tmp_path,
        log=Archive(tmp_path / "archive.jsonl"),
        shift=shift,
    ).run()
    assert [(r["key"], r["metrics"]["error"]) for r in resumed.records] == [
        (r["key"], r["metrics"]["error"]) for r in whole.records
    ]
    assert resumed.hv_history == whole.hv_history  # hypervolumes, fronts, surrogate quality, evaluation counts
    assert all(torch.equal(a, b) for a, b in zip(whole_weights, metrics.evaluator.supernet.parameters()))
    # the log keeps what the crashed process did: the work of its unfinished iteration appears twice
    assert len(resumed.archive) == whole.hv_history[-1]["evaluated"] + redone
    assert logged == whole.hv_history[1]["evaluated"] + redone
    other = _shift(compact_space, metrics, digits, "region")
    with pytest.raises(ConfigError, match="other shift settings"):
        nat_search(compact_space, metrics, objs, cfg, seed=0, run_dir=tmp_path, shift=other).run()
    # a supernet trained anew (other weights) must not silently continue the old lineage's state
    metrics, objs, shift = parts()
    with torch.no_grad():
        next(metrics.evaluator.supernet.parameters()).add_(1.0)
    metrics = ArchitectureMetrics(
        SubnetEvaluator(compact_space, metrics.evaluator.supernet, digits, eval_config), None, metrics.needed
    )
    with pytest.raises(ConfigError, match="another supernet"):
        nat_search(compact_space, metrics, objs, cfg, seed=0, run_dir=tmp_path, shift=shift).run()
