"""Latency predictors fitted from an on-device latency dataset (``shiftnas profile --space``).

Three candidates, compared by k-fold cross-validation on the dataset and the better one kept:

* ``lut``: a per-block lookup table learned end to end. Every active layer contributes a
  non-negative cost per (stage, kernel, expand), factorised as depthwise + pointwise + fixed parts
  and scaled by the input area, plus the stem/head and per-call costs; fitted with non-negative
  least squares. It is OFA's latency table, but calibrated on whole networks, so the boundary
  reorders and executor overhead that isolated blocks miss (latency.md §4.2: raw block sums
  under-estimate by ~11 %) are absorbed.
* ``macs``: ``a * MMACs + b``, the baseline that is hard to beat on a CPU (latency.md §4.2).
* ``gbm``: gradient boosting (scikit-learn) on the integer genome, resolution and MMACs.

Selection: the highest mean cross-validated Kendall tau; models within 0.02 of it count as tied
and the lowest MAPE among them wins (tau decides the search's ranking, MAPE the constraint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import nnls

from ..errors import ShiftnasError
from ..search_spaces import Arch, SearchSpace
from .ranking import kendall_tau, rmse, spearman_rho

CANDIDATES = ("lut", "macs", "gbm")
TIE = 0.02  # Kendall tau differences below this are noise at these sample sizes


def prediction_errors(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """Kendall tau, Spearman rho, MAPE (%), RMSE (ms) and the share within +-10 %."""
    t, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    rel = np.abs(p - t) / t
    return {
        "kendall_tau": kendall_tau(p, t),
        "spearman_rho": spearman_rho(p, t),
        "mape": float(100 * rel.mean()),
        "rmse_ms": rmse(p, t),
        "within_10pct": float(100 * np.mean(rel <= 0.10)),
    }


class _Model:
    """One predictor family: ``fit(archs, mmacs, y)`` then ``predict(archs, mmacs)``."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space, self.seed = space, seed
        self._max_res = max(getattr(getattr(space, "spec", None), "resolutions", [0]) or [0]) or None

    def _area(self, arch: Arch) -> float:
        return (arch.resolution / (self._max_res or arch.resolution)) ** 2


class _LUT(_Model):
    """Per-block table whose entries are ``area * (a_s * e * k^2 + b_s * e + c_s)`` for stage ``s``.

    An inverted-residual layer costs a depthwise conv (~ e * k^2), two pointwise convs (~ e) and a
    fixed part, all proportional to the feature-map area; the three coefficients per stage are
    fitted non-negative, plus a per-network cost that scales with area (stem, head) and a constant
    (the per-call overhead). 3 x stages + 2 numbers instead of one free entry per (stage, k, e):
    a table this size is learnable from tens of end-to-end measurements.
    """

    def _features(self, archs: Sequence[Arch]) -> np.ndarray:
        n_stages = max(len(a.stages) for a in archs)
        X = np.zeros((len(archs), 3 * n_stages + 2))
        for row, arch in enumerate(archs):
            area = self._area(arch)
            X[row, -2:] = (area, 1.0)
            for s, stage in enumerate(arch.stages):
                for k, e in stage:
                    X[row, 3 * s : 3 * s + 3] += area * np.array([e * k * k / 49.0, e / 6.0, 1.0])
        return X

    def fit(self, archs, mmacs, y):
        self.coef_, _ = nnls(self._features(archs), np.asarray(y, float))
        return self

    def predict(self, archs, mmacs):
        return self._features(archs) @ self.coef_


class _MACs(_Model):
    def fit(self, archs, mmacs, y):
        self.coef_ = np.polyfit(np.asarray(mmacs, float), np.asarray(y, float), 1)
        return self

    def predict(self, archs, mmacs):
        return np.polyval(self.coef_, np.asarray(mmacs, float))


class _GBM(_Model):
    def _features(self, archs, mmacs):
        return np.column_stack(
            [np.array([self.space.encode(a) for a in archs]), [a.resolution for a in archs], np.asarray(mmacs, float)]
        )

    def fit(self, archs, mmacs, y):
        from sklearn.ensemble import GradientBoostingRegressor

        self.model_ = GradientBoostingRegressor(
            n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=self.seed
        )
        self.model_.fit(self._features(archs, mmacs), np.asarray(y, float))
        return self

    def predict(self, archs, mmacs):
        return self.model_.predict(self._features(archs, mmacs))


_FAMILIES = {"lut": _LUT, "macs": _MACs, "gbm": _GBM}


@dataclass
class LatencyPredictor:
    """The chosen predictor, refitted on the whole dataset, with the cross-validation that chose it."""

    kind: str
    model: Any
    cv: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> mean (and *_std) CV errors
    n_train: int = 0

    def predict(self, archs: Sequence[Arch], mmacs: Sequence[float]) -> np.ndarray:
        """Predicted latency (ms) of each architecture (``mmacs`` is its MMACs)."""
        return np.maximum(self.model.predict(list(archs), mmacs), 1e-6)


def cross_validate(
    kind: str, space: SearchSpace, archs: list[Arch], mmacs: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0
) -> dict[str, float]:
    """Mean and std over ``folds`` folds of the held-out errors of one predictor family."""
    from sklearn.model_selection import KFold

    per_fold = []
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(y):
        model = _FAMILIES[kind](space, seed).fit([archs[i] for i in train], mmacs[train], y[train])
        per_fold.append(prediction_errors(y[test], model.predict([archs[i] for i in test], mmacs[test])))
    out = {}
    for metric in per_fold[0]:
        values = [f[metric] for f in per_fold]
        out[metric], out[f"{metric}_std"] = float(np.mean(values)), float(np.std(values))
    return out


def choose(cv: dict[str, dict[str, float]]) -> str:
    """Best mean Kendall tau; within ``TIE`` of it, the lowest MAPE."""
    best = max(r["kendall_tau"] for r in cv.values())
    tied = [k for k, r in cv.items() if r["kendall_tau"] >= best - TIE]
    return min(tied, key=lambda k: cv[k]["mape"])


def fit_latency_predictor(
    space: SearchSpace,
    archs: Sequence[Arch],
    mmacs: Sequence[float],
    latency_ms: Sequence[float],
    candidates: Sequence[str] = CANDIDATES,
    folds: int = 5,
    seed: int = 0,
) -> LatencyPredictor:
    """Cross-validate ``candidates``, keep the better one and refit it on all the data."""
    archs, mmacs, y = list(archs), np.asarray(mmacs, float), np.asarray(latency_ms, float)
    unknown = [c for c in candidates if c not in _FAMILIES]
    if unknown:
        raise ShiftnasError(f"unknown latency predictor '{unknown[0]}'; choose from {', '.join(_FAMILIES)}")
    if len(y) < 2 * folds:
        raise ShiftnasError(
            f"a latency predictor needs at least {2 * folds} measured architectures, got {len(y)}; "
            "profile more with `shiftnas profile --space ... --samples N`"
        )
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ShiftnasError("the latency dataset holds non-positive or non-finite latencies")
    cv = {kind: cross_validate(kind, space, archs, mmacs, y, folds, seed) for kind in candidates}
    kind = choose(cv)
    model = _FAMILIES[kind](space, seed).fit(archs, mmacs, y)
    return LatencyPredictor(kind, model, cv, n_train=len(y))


def predictor_from_dataset(space: SearchSpace, dataset, **kwargs) -> LatencyPredictor:
    """Fit a predictor on a :class:`~shiftnas.engine.latency_dataset.LatencyDataset` of ``space``."""
    if dataset.space != space.describe():
        raise ShiftnasError(
            f"the latency dataset was measured on space {dataset.space}, but the search runs on {space.describe()}"
        )
    archs = dataset.archs()
    return fit_latency_predictor(space, archs, [r["mmacs"] for r in dataset.records], dataset.latencies(), **kwargs)
