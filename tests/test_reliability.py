"""The reliability report of a ground-truth table (noise ceiling, spread, proxies) against scipy/numpy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from shiftnas.cli import app
from shiftnas.engine.groundtruth.reliability import acceptance, reliability_report, seed_matrix, seed_taus
from shiftnas.engine.groundtruth.table import FORMAT, GroundTruthTable, meta_path
from shiftnas.errors import ShiftnasError
from shiftnas.search_spaces import Arch

N = 12


def _arch(i: int) -> Arch:
    kernel, expand = (3, 5, 7)[i % 3], (3, 4, 6)[(i // 3) % 3]
    return Arch(
        stages=tuple(((kernel, expand),) * (1 + (i // 9) + (s == 0)) for s in range(4)), resolution=20 + 4 * (i % 2)
    )


def _write_table(
    path: Path,
    values: dict[int, np.ndarray],
    macs: np.ndarray,
    params: np.ndarray,
    losses: dict[int, np.ndarray] | None = None,
) -> GroundTruthTable:
    """A table file of N architectures with the given per-seed accuracies (NaN: not trained)."""
    lines = []
    for seed, acc in values.items():
        for i, a in enumerate(acc):
            if math.isnan(a):
                continue
            loss = float(losses[seed][i]) if losses else 1.0 - a / 100
            lines.append(
                json.dumps(
                    {
                        "key": _arch(i).key(),
                        "arch": _arch(i).to_dict(),
                        "seed": seed,
                        "val_accuracy": float(a),
                        "test_accuracy": float(a),
                        "test_loss": loss,
                        "val_loss": loss,
                        "seconds": 1.0,
                        "macs": int(macs[i]),
                        "params": int(params[i]),
                    }
                )
            )
    path.write_text("\n".join(lines) + "\n")
    meta_path(path).write_text(
        json.dumps(
            {
                "format": FORMAT,
                "space": {"name": "compact-mbv3"},
                "data": {"name": "fashion-mnist"},
                "recipe": {},
                "seeds": list(values),
            }
        )
    )
    return GroundTruthTable(path)


@pytest.fixture
def known(tmp_path: Path):
    rng = np.random.default_rng(3)
    quality = np.linspace(84.0, 90.0, N)
    acc = {s: quality + rng.normal(0, 0.4, N) for s in (0, 1)}
    acc[2] = np.full(N, np.nan)
    best = np.argsort(-(acc[0] + acc[1]))[:5]
    acc[2][best] = quality[best] + rng.normal(0, 0.4, 5)
    macs = (quality * 1e5 + rng.normal(0, 2e5, N)).round()
    params = rng.permutation(N) * 1000 + 5000
    return _write_table(tmp_path / "t.jsonl", acc, macs, params), acc, macs, params


def test_seed_matrix_places_each_record(known):
    table, acc, _, _ = known
    keys, seeds, values = seed_matrix(table)
    assert seeds == [0, 1, 2] and keys == [_arch(i).key() for i in range(N)]
    np.testing.assert_allclose(values[:, 0], acc[0])
    assert np.isnan(values[:, 2]).sum() == N - 5
    _, _, loss = seed_matrix(table, "test_loss")
    np.testing.assert_allclose(loss[:, 0], -(1.0 - acc[0] / 100))  # losses negated: higher is better


def test_report_matches_scipy_and_numpy(known):
    table, acc, macs, params = known
    r = reliability_report(table)
    assert r["seed_tau"]["0-1"] == pytest.approx(stats.kendalltau(acc[0], acc[1]).statistic)
    five = ~np.isnan(acc[2])
    assert r["seed_tau"]["0-2"] == pytest.approx(stats.kendalltau(acc[0][five], acc[2][five]).statistic)
    assert r["seed_tau_mean"] == pytest.approx(np.mean(list(r["seed_tau"].values())))
    # local: the top 20 % (ceil(2.4) = 3) by the mean of seeds 0 and 1
    top = np.argsort(-(acc[0] + acc[1]), kind="stable")[:3]
    assert r["local_seed_tau@20%"]["0-1"] == pytest.approx(stats.kendalltau(acc[0][top], acc[1][top]).statistic)
    assert "0-2" not in r["local_seed_tau@20%"]  # 5 architectures with both: top 20 % is 1, too few
    # held-out seed: seed 2 against the mean of seeds 0, 1 over the five with three seeds
    assert r["holdout_seed_tau"]["n"] == 5
    expected = stats.kendalltau(acc[2][five], (acc[0][five] + acc[1][five]) / 2).statistic
    assert r["holdout_seed_tau"]["tau"] == pytest.approx(expected)
    # spread: std of the per-architecture means vs the pooled seed variance
    stacked = np.vstack([acc[0], acc[1], acc[2]]).T
    means = np.nanmean(stacked, axis=1)
    assert r["sigma_arch"] == pytest.approx(np.std(means, ddof=1))
    assert r["sigma_seed"] == pytest.approx(np.sqrt(np.mean(np.nanvar(stacked, axis=1, ddof=1))))
    assert r["ratio"] == pytest.approx(r["sigma_arch"] / r["sigma_seed"])
    assert r["proxy_tau"]["macs"] == pytest.approx(stats.kendalltau(macs, means).statistic)
    assert r["proxy_tau"]["params"] == pytest.approx(stats.kendalltau(params, means).statistic)
    assert acceptance(r) == {"ratio": r["ratio"] >= 3, "seed_tau": r["seed_tau_mean"] >= 0.6}
    assert r["n_per_memory_format"] == {"nchw": len(table.records)}  # records without the field: NCHW


def test_a_table_of_pure_seed_noise_fails_the_acceptance_test(tmp_path: Path):
    rng = np.random.default_rng(0)
    acc = {s: 88 + rng.normal(0, 0.5, 40) for s in (0, 1)}  # every architecture the same: noise only
    table = _write_table(tmp_path / "noise.jsonl", acc, rng.integers(1e6, 2e7, 40), rng.integers(1e5, 1e6, 40))
    r = reliability_report(table)
    assert abs(r["seed_tau_mean"]) < 0.3 and r["ratio"] < 1.5
    assert acceptance(r) == {"ratio": False, "seed_tau": False}


def test_seed_taus_need_three_common_architectures():
    values = np.array([[1.0, 2.0], [2.0, 1.0], [np.nan, 3.0]])
    assert seed_taus(values, [0, 1]) == {}


def test_one_seed_is_refused(tmp_path: Path):
    table = _write_table(tmp_path / "one.jsonl", {0: np.linspace(80, 90, 5)}, np.arange(5) + 1, np.arange(5) + 1)
    with pytest.raises(ShiftnasError, match="one seed only"):
        reliability_report(table)


def test_cli_report_writes_json_and_markdown(known, tmp_path: Path):
    table, _, _, _ = known
    result = CliRunner().invoke(app, ["groundtruth", "--report", str(table.path)])
    assert result.exit_code == 0, result.output
    assert "seed-vs-seed τ" in result.output and "σ_arch / σ_seed" in result.output
    written = json.loads(table.path.with_suffix(".reliability.json").read_text())
    assert [r["metric"] for r in written["reports"]] == ["test_accuracy", "test_loss"]
    assert written["reports"][0]["seed_tau"] == reliability_report(table)["seed_tau"]
    assert table.path.with_suffix(".reliability.md").read_text().startswith("# Reliability of `t.jsonl`")
    missing = CliRunner().invoke(app, ["groundtruth", "--report", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2 and "ground-truth table not found" in missing.output
