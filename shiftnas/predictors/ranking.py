"""Ranking metrics for supernets and predictors (design doc ``methods.md`` §1, items 1-8).

Every function takes two 1-D arrays of equal length N >= 2:

* ``scores``: supernet / proxy / predictor score of each architecture (higher = better),
* ``truth``:  ground-truth (stand-alone) accuracy of the same architectures (higher = better).

Correlations follow scipy (Kendall τ_b, Spearman ρ, Pearson r). A correlation that is undefined
because one side is constant is returned as ``nan`` (scipy's ConstantInputWarning is silenced).

Tie rule used by the top-k metrics (precision@k, top-k percentile, local τ): when several
architectures tie at the cut-off, the one that comes first in the input wins (stable sort).
Bad input raises :class:`RankingError`, a ``ValueError`` with a one-line message.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from numbers import Real

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from shiftnas.errors import ShiftnasError

__all__ = [
    "RankingError",
    "kendall_tau",
    "spearman_rho",
    "pearson_r",
    "rmse",
    "local_kendall_tau",
    "sparse_kendall_tau",
    "sparse_bins",
    "precision_at_k",
    "top_k_percentile",
    "subsample_tau",
    "paired_bootstrap_tau_delta",
    "ranking_report",
]


class RankingError(ShiftnasError, ValueError):
    """Invalid input to a ranking metric (one-line message)."""


# ----------------------------------------------------------------------------- helpers


def _as_vector(x: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise RankingError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise RankingError(f"{name} must be a 1-D array, got shape {arr.shape}")
    return arr


def _check(scores: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = _as_vector(scores, "scores")
    g = _as_vector(truth, "truth")
    if s.shape != g.shape:
        raise RankingError(f"scores and truth differ in length ({s.size} vs {g.size})")
    if s.size < 2:
        raise RankingError(f"need at least 2 architectures, got {s.size}")
    if not np.all(np.isfinite(s)):
        raise RankingError("scores contain NaN or infinite values")
    if not np.all(np.isfinite(g)):
        raise RankingError("truth contains NaN or infinite values")
    return s, g


def _check_int(k: int, name: str, low: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < low:
        raise RankingError(f"{name} must be an integer >= {low}, got {k!r}")
    return int(k)


def _check_k(k: int, n: int) -> int:
    _check_int(k, "k", 1)
    if not 1 <= k <= n:
        raise RankingError(f"k must be between 1 and the number of architectures ({n}), got {k}")
    return int(k)


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, best first; ties go to the earlier index."""
    return np.argsort(-values, kind="stable")[:k]


def _stat(result: object) -> float:
    return float(result.statistic)  # type: ignore[attr-defined]


def _quiet(fn, *args, **kwargs) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return _stat(fn(*args, **kwargs))


def _tau(s: np.ndarray, g: np.ndarray) -> float:
    return _quiet(stats.kendalltau, s, g)  # τ_b is scipy's default variant


# ----------------------------------------------------------------------------- global metrics


def kendall_tau(scores: ArrayLike, truth: ArrayLike) -> float:
    """Kendall τ_b (scipy.stats.kendalltau); ``nan`` if one side is constant."""
    s, g = _check(scores, truth)
    return _tau(s, g)


def spearman_rho(scores: ArrayLike, truth: ArrayLike) -> float:
    """Spearman ρ (scipy.stats.spearmanr, average ranks on ties); ``nan`` if a side is constant."""
    s, g = _check(scores, truth)
    return _quiet(stats.spearmanr, s, g)


def pearson_r(scores: ArrayLike, truth: ArrayLike) -> float:
    """Pearson r (scipy.stats.pearsonr); ``nan`` if one side is constant."""
    s, g = _check(scores, truth)
    return _quiet(stats.pearsonr, s, g)


def rmse(scores: ArrayLike, truth: ArrayLike) -> float:
    """Root-mean-square error sqrt(mean((scores - truth)^2)); meaningful only on a common scale."""
    s, g = _check(scores, truth)
    return float(np.sqrt(np.mean((s - g) ** 2)))


# ----------------------------------------------------------------------------- local / sparse τ


def _local_count(top_fraction: float, n: int) -> int:
    ok = isinstance(top_fraction, Real) and not isinstance(top_fraction, bool)
    if not (ok and 0.0 < top_fraction <= 1.0):
        raise RankingError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    return math.ceil(top_fraction * n - 1e-9)


def local_kendall_tau(scores: ArrayLike, truth: ArrayLike, top_fraction: float) -> float:
    """τ_b over the architectures whose ground-truth rank is in the top ``top_fraction``.

    The subset is the ``ceil(top_fraction * N)`` best architectures by ``truth`` (ties at the
    cut-off: earlier index first). Local order-preserving of Supernet Shifting (methods.md §1.4).
    Raises RankingError if the subset has fewer than 2 architectures.
    """
    s, g = _check(scores, truth)
    m = _local_count(top_fraction, s.size)
    if m < 2:
        raise RankingError(
            f"local tau needs at least 2 architectures in the top {top_fraction:g} of "
            f"{s.size}, got {m}; use a larger sample or top_fraction"
        )
    idx = _top_k(g, m)
    return _tau(s[idx], g[idx])


def sparse_bins(truth: ArrayLike, threshold: float = 1e-3) -> np.ndarray:
    """Binned ground truth ``floor(g / threshold)`` as used by the sparse Kendall τ.

    ``truth`` is accuracy in [0, 1]; if any value is > 1 the whole vector is taken as percent and
    divided by 100 first. ``g / threshold`` is rounded to 9 decimals before flooring so that
    float noise (0.29 / 0.01 = 28.999...) does not move a value into the lower bin.
    """
    g = _as_vector(truth, "truth")
    if not (isinstance(threshold, Real) and threshold > 0 and math.isfinite(threshold)):
        raise RankingError(f"threshold must be a positive number, got {threshold!r}")
    if g.size and np.max(g) > 1.0:
        g = g / 100.0
    return np.floor(np.round(g / threshold, 9))


def sparse_kendall_tau(scores: ArrayLike, truth: ArrayLike, threshold: float = 1e-3) -> float:
    """Sparse Kendall τ (landmark code ``sparse_rank_by_simple_bin``; methods.md §1.7).

    Ground-truth accuracies within the same ``threshold``-wide bin (``floor(g / threshold)``)
    become tied ranks, then τ_b is taken between ``scores`` and the binned truth. ``truth`` is
    accuracy in [0, 1]; if any value is > 1 it is assumed to be percent and divided by 100.
    Default threshold 1e-3 = 0.1 % accuracy. ``nan`` if every architecture falls in one bin.
    """
    s, g = _check(scores, truth)
    return _tau(s, sparse_bins(g, threshold))


# ----------------------------------------------------------------------------- top-k metrics


def precision_at_k(scores: ArrayLike, truth: ArrayLike, k: int) -> float:
    """P@k = |top_k(scores) ∩ top_k(truth)| / k (ties at the cut-off: earlier index first)."""
    s, g = _check(scores, truth)
    k = _check_k(k, s.size)
    hits = np.intersect1d(_top_k(s, k), _top_k(g, k)).size
    return hits / k


def top_k_percentile(scores: ArrayLike, truth: ArrayLike, k: int) -> dict[str, float]:
    """Ground-truth percentile of the k best architectures according to ``scores``.

    For each of the k architectures with the highest scores, percentile = GT_rank / N, where
    GT_rank is its 1-based rank by ``truth`` in descending order (1 = best; tied ground-truth
    values share the best rank of the tie, scipy ``rankdata(method='min')``). Values lie in
    [1/N, 1]; smaller is better, a perfect ranker gives min = 1/N and max = k/N.
    Returns ``{'min', 'median', 'max'}`` over the k values (landmark ``compute_percentile``).
    """
    s, g = _check(scores, truth)
    k = _check_k(k, s.size)
    gt_rank = stats.rankdata(-g, method="min")
    pct = gt_rank[_top_k(s, k)] / s.size
    return {"min": float(pct.min()), "median": float(np.median(pct)), "max": float(pct.max())}


def subsample_tau(scores: ArrayLike, truth: ArrayLike, size: int, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """τ_b on ``repeats`` random subsets of ``size`` architectures (without replacement).

    Returns ``{'mean', 'min', 'max'}`` (methods.md §1.8; landmark uses 5 repeats of 10/20/50/100).
    Subsets whose τ is undefined (constant side) are ignored; all undefined gives ``nan``.
    Deterministic for a given ``seed`` (numpy ``default_rng``).
    """
    s, g = _check(scores, truth)
    size = _check_int(size, "subsample size", 2)
    if size > s.size:
        raise RankingError(f"subsample size {size} exceeds the number of architectures ({s.size})")
    repeats = _check_int(repeats, "repeats", 1)
    rng = np.random.default_rng(seed)
    taus = np.array(
        [_tau(s[idx], g[idx]) for idx in (rng.choice(s.size, size=size, replace=False) for _ in range(repeats))]
    )
    taus = taus[np.isfinite(taus)]
    if taus.size == 0:
        return {"mean": math.nan, "min": math.nan, "max": math.nan}
    return {"mean": float(taus.mean()), "min": float(taus.min()), "max": float(taus.max())}


def paired_bootstrap_tau_delta(
    draws: Sequence[ArrayLike], reference: ArrayLike, truth: ArrayLike, n: int = 1000, seed: int = 0
) -> list[float]:
    """95 % paired-bootstrap interval of (mean over ``draws`` of τ_b(draw, truth)) − τ_b(reference, truth).

    The architectures are resampled with replacement, the same ones for every side, so the interval
    says whether ``draws`` (several fits' scores of the same architectures) rank ``truth`` better than
    ``reference`` beyond the noise of which architectures were held out. Deterministic for ``seed``.
    """
    g = _as_vector(truth, "truth")
    r = _check(reference, g)[0]
    ds = [_check(d, g)[0] for d in draws]
    if not ds:
        raise RankingError("paired_bootstrap_tau_delta needs at least one draw")
    n = _check_int(n, "bootstrap resamples", 1)
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(n):
        i = rng.integers(0, g.size, g.size)
        deltas.append(np.mean([_tau(d[i], g[i]) for d in ds]) - _tau(r[i], g[i]))
    return [float(np.nanpercentile(deltas, 2.5)), float(np.nanpercentile(deltas, 97.5))]


# ----------------------------------------------------------------------------- report


def _pct_label(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def ranking_report(
    scores: ArrayLike,
    truth: ArrayLike,
    ks: Sequence[int] = (5, 10),
    top_fractions: Sequence[float] = (0.1, 0.2),
    subsample_sizes: Sequence[int] = (10, 20, 50, 100),
    sparse_threshold: float = 1e-3,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """All ranking metrics in one flat dict of floats.

    Keys: ``n``, ``kendall_tau``, ``spearman_rho``, ``pearson_r``, ``rmse``, ``sparse_tau``,
    ``local_tau@{p}%`` per top fraction (e.g. ``local_tau@10%``), per k ``precision@{k}`` and
    ``top{k}_percentile_{min,median,max}``, per subsample size ``subsample_tau@{m}_{mean,min,max}``.
    Entries that need more architectures than given (k > N, fewer than 2 in the top fraction,
    subsample size > N) are left out. ``rmse`` / ``pearson_r`` only make sense when scores and
    truth share a scale (predictor vs accuracy); τ/ρ-based entries never depend on scale.
    """
    s, g = _check(scores, truth)
    n = s.size
    out: dict[str, float] = {
        "n": float(n),
        "kendall_tau": _tau(s, g),
        "spearman_rho": _quiet(stats.spearmanr, s, g),
        "pearson_r": _quiet(stats.pearsonr, s, g),
        "rmse": rmse(s, g),
        "sparse_tau": sparse_kendall_tau(s, g, sparse_threshold),
    }
    for f in top_fractions:
        if _local_count(f, n) >= 2:
            out[f"local_tau@{_pct_label(f)}"] = local_kendall_tau(s, g, f)
    for k in ks:
        if _check_int(k, "k", 1) <= n:
            out[f"precision@{k}"] = precision_at_k(s, g, k)
            for stat, value in top_k_percentile(s, g, k).items():
                out[f"top{k}_percentile_{stat}"] = value
    for m in subsample_sizes:
        if _check_int(m, "subsample size", 2) <= n:
            for stat, value in subsample_tau(s, g, m, repeats=repeats, seed=seed).items():
                out[f"subsample_tau@{m}_{stat}"] = value
    return out
