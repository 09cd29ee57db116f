"""How far a ground-truth table can be trusted to rank: its noise ceiling and the cheap proxies to beat.

Computed from the records of a :class:`~shiftnas.engine.groundtruth.GroundTruthTable` (one value per
architecture and seed; higher is better, so losses are negated):

* ``seed_tau``: Kendall τ_b between two seeds' values over the architectures trained with both, per
  seed pair, and their mean: the ceiling a ranking against one seed of this table can reach;
* ``local_seed_tau@P%``: the same over the top P % of those architectures by the mean of the two
  seeds (chosen by both, so neither is favoured): the best architectures are the ones a search
  must order;
* ``holdout_seed_tau``: over the architectures with three or more seeds (the best ones, picked by
  their first seeds): τ between the last seed, which took no part in picking them, and the mean
  of the others;
* ``sigma_arch`` / ``sigma_seed``: the spread of the per-architecture means (std, ddof=1) against
  the seed-to-seed noise (root-mean of the per-architecture variances, ddof=1, over the
  architectures with two or more seeds), and their ratio;
* ``proxy_tau``: τ of the cheap proxies (MMACs and params, larger taken as better) against the
  per-architecture mean, globally and over the top 20 %: what a ranking must beat to be worth its cost.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import numpy as np

from ...errors import ShiftnasError
from ...predictors.ranking import kendall_tau, local_kendall_tau
from .table import GroundTruthTable

METRICS = {"test_accuracy": 1.0, "test_loss": -1.0}  # metric -> sign that makes higher better
TOP_FRACTIONS = (0.2, 0.1)


def seed_matrix(table: GroundTruthTable, metric: str = "test_accuracy") -> tuple[list[str], list[int], np.ndarray]:
    """(keys, seeds, values[key, seed]) with NaN where an architecture lacks a seed; higher is better."""
    if metric not in METRICS:
        raise ShiftnasError(f"unknown ground-truth metric '{metric}'; choose one of: {', '.join(METRICS)}")
    keys = table.keys()
    seeds = sorted({int(r["seed"]) for r in table.records})
    values = np.full((len(keys), len(seeds)), np.nan)
    row, col = {k: i for i, k in enumerate(keys)}, {s: j for j, s in enumerate(seeds)}
    for r in table.records:
        if metric not in r:
            raise ShiftnasError(f"table {table.path} has no '{metric}' in its records (made by an older shiftnas)")
        values[row[r["key"]], col[int(r["seed"])]] = METRICS[metric] * float(r[metric])
    return keys, seeds, values


def top_by_mean(x: np.ndarray, y: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the ``ceil(fraction * n)`` best by the mean of ``x`` and ``y`` (ties: earlier first)."""
    count = math.ceil(fraction * len(x) - 1e-9)
    return np.argsort(-(x + y), kind="stable")[:count]


def seed_taus(values: np.ndarray, seeds: list[int], top_fraction: float | None = None) -> dict[str, float]:
    """τ_b per seed pair (``"0-1"``) over the architectures with both seeds, optionally over their top."""
    out = {}
    for a, b in itertools.combinations(range(len(seeds)), 2):
        both = ~np.isnan(values[:, a]) & ~np.isnan(values[:, b])
        x, y = values[both, a], values[both, b]
        if top_fraction is not None:
            idx = top_by_mean(x, y, top_fraction)
            x, y = x[idx], y[idx]
        if len(x) >= 3:  # τ of two points is ±1: no information
            out[f"{seeds[a]}-{seeds[b]}"] = kendall_tau(x, y)
    return out


def holdout_seed_tau(values: np.ndarray) -> dict[str, float] | None:
    """τ between each architecture's last seed and the mean of its earlier ones (≥ 3 seeds only)."""
    counts = (~np.isnan(values)).sum(axis=1)
    rows = np.flatnonzero(counts >= 3)
    if len(rows) < 3:
        return None
    last, rest = [], []
    for i in rows:
        seen = values[i][~np.isnan(values[i])]
        last.append(seen[-1])
        rest.append(seen[:-1].mean())
    return {"n": len(rows), "tau": kendall_tau(last, rest)}


def spread(values: np.ndarray) -> dict[str, float]:
    """sigma_arch (std of the per-architecture means), sigma_seed (pooled seed noise) and their ratio."""
    means = np.nanmean(values, axis=1)
    multi = (~np.isnan(values)).sum(axis=1) >= 2
    if multi.sum() < 1 or len(means) < 2:
        raise ShiftnasError("the reliability of a table needs at least two architectures, one with two seeds")
    sigma_seed = float(np.sqrt(np.mean(np.nanvar(values[multi], axis=1, ddof=1))))
    sigma_arch = float(np.std(means, ddof=1))
    ratio = sigma_arch / sigma_seed if sigma_seed > 0 else math.inf
    return {"sigma_arch": sigma_arch, "sigma_seed": sigma_seed, "ratio": ratio}


def proxy_taus(table: GroundTruthTable, means: np.ndarray) -> dict[str, float]:
    """τ of MMACs and params (larger = better) against ``means``, globally and over the top 20 %."""
    rows = table.rows()
    out = {}
    for proxy, column in (("macs", "mmacs"), ("params", "params_m")):
        cost = np.array([r[column] for r in rows], dtype=float)
        out[proxy] = kendall_tau(cost, means)
        if math.ceil(0.2 * len(means) - 1e-9) >= 3:
            out[f"{proxy}@top20%"] = local_kendall_tau(cost, means, 0.2)
    return out


def _mean_of(taus: dict[str, float]) -> float:
    finite = [t for t in taus.values() if math.isfinite(t)]
    return float(np.mean(finite)) if finite else math.nan


def reliability_report(table: GroundTruthTable, metric: str = "test_accuracy") -> dict[str, Any]:
    """Every reliability figure of ``table`` for one metric (see the module docstring)."""
    keys, seeds, values = seed_matrix(table, metric)
    if len(seeds) < 2:
        raise ShiftnasError(f"table {table.path} has one seed only: its reliability needs two or more")
    means = np.nanmean(values, axis=1)
    report: dict[str, Any] = {
        "metric": metric,
        "n_architectures": len(keys),
        "seeds": seeds,
        "n_per_seed": {str(s): int((~np.isnan(values[:, j])).sum()) for j, s in enumerate(seeds)},
        "n_per_memory_format": dict(Counter(r.get("memory_format", "nchw") for r in table.records)),
        "seed_tau": seed_taus(values, seeds),
    }
    report["seed_tau_mean"] = _mean_of(report["seed_tau"])
    for f in TOP_FRACTIONS:
        label = f"{f * 100:g}%"
        report[f"local_seed_tau@{label}"] = local = seed_taus(values, seeds, f)
        report[f"local_seed_tau@{label}_mean"] = _mean_of(local)
    report["holdout_seed_tau"] = holdout_seed_tau(values)
    report.update(spread(values))
    report["proxy_tau"] = proxy_taus(table, means)
    report["range"] = {
        "min": float(np.nanmin(values)) * METRICS[metric],
        "max": float(np.nanmax(values)) * METRICS[metric],
    }
    return report


def acceptance(report: dict[str, Any], min_ratio: float = 3.0, min_tau: float = 0.6) -> dict[str, bool]:
    """The pilot's acceptance test (issue 12): sigma_arch / sigma_seed >= 3 and seed-vs-seed τ >= 0.6."""
    return {"ratio": report["ratio"] >= min_ratio, "seed_tau": report["seed_tau_mean"] >= min_tau}


def report_markdown(table: GroundTruthTable, reports: list[dict[str, Any]]) -> str:
    """A short markdown summary of :func:`reliability_report` results (one column per metric)."""

    def fmt(x: Any) -> str:
        return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"

    lines = [
        f"# Reliability of `{table.path.name}`",
        "",
        f"{reports[0]['n_architectures']} architectures; records per seed: "
        + ", ".join(f"seed {s}: {n}" for s, n in reports[0]["n_per_seed"].items())
        + "; trained in "
        + ", ".join(f"{f}: {n}" for f, n in reports[0]["n_per_memory_format"].items())
        + " (the layout changes float rounding only, README).",
        "",
        "| | " + " | ".join(r["metric"] for r in reports) + " |",
        "|---|" + "---|" * len(reports),
    ]
    rows = [
        ("seed-vs-seed τ (mean over pairs)", lambda r: r["seed_tau_mean"]),
        ("local seed-vs-seed τ, top 20 %", lambda r: r["local_seed_tau@20%_mean"]),
        ("local seed-vs-seed τ, top 10 %", lambda r: r["local_seed_tau@10%_mean"]),
        ("held-out seed τ among the best", lambda r: (r["holdout_seed_tau"] or {}).get("tau")),
        ("σ_arch", lambda r: r["sigma_arch"]),
        ("σ_seed", lambda r: r["sigma_seed"]),
        ("σ_arch / σ_seed", lambda r: r["ratio"]),
        ("τ(MACs, mean)", lambda r: r["proxy_tau"]["macs"]),
        ("τ(params, mean)", lambda r: r["proxy_tau"]["params"]),
        ("τ(MACs, mean), top 20 %", lambda r: r["proxy_tau"].get("macs@top20%")),
        ("τ(params, mean), top 20 %", lambda r: r["proxy_tau"].get("params@top20%")),
    ]
    for label, get in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(get(r)) for r in reports) + " |")
    holdout = reports[0]["holdout_seed_tau"]
    if holdout:
        lines += [
            "",
            f"Held-out seed τ: over the {holdout['n']} architectures with ≥ 3 seeds, the last seed "
            "against the mean of the earlier ones (which picked them).",
        ]
    lines += [
        "",
        "Losses are negated (higher is better) before any τ; σ in the metric's unit (accuracy: percentage points).",
    ]
    return "\n".join(lines) + "\n"
