"""Latency predictors fitted from an on-device latency dataset (``shiftnas profile --space``).

Four families, compared by cross-validation on the dataset and the best one kept:

* ``lut``: a per-block lookup table learned end to end. Every active layer contributes a
  non-negative cost per stage: depthwise, pointwise and fixed parts scaled by the input area, plus a
  fixed cost that does not scale (a kernel launch, an executor step: at batch 1 on a GPU, or on a CPU
  with small inputs, it dominates); the stem/head and per-call costs besides, all on top of the
  ``layers`` line. Fitted with non-negative least squares, the table's terms shrunk towards that line
  by a ridge that fades with n. OFA's latency table, calibrated on whole networks, so the boundary
  reorders and executor overhead that isolated blocks miss (latency.md §4.2) are absorbed.
* ``layers``: ``a * active layers + b * MMACs + c``, all non-negative: three numbers, learnable from
  a handful of measurements.
* ``macs``: ``a * MMACs + b`` with ``a, b >= 0`` (monotone), the baseline that is hard to beat on a
  CPU at batch 1 (latency.md §4.2).
* ``gbm``: gradient boosting (scikit-learn) on the integer genome, resolution and MMACs; only with
  enough data (``GBM_MIN``) and only when it beats the structured families by more than a tie.

With a ``prior`` (a predictor fitted on another device, ``--prior OLD.json``), a fifth candidate,
``transfer``, keeps the prior's structure and refits ``a * prior(x) + f * layers + m * MMACs + b`` (all
``>= 0``) on the new device's few samples.

Cross-validation pools the out-of-fold predictions (leave-one-out up to 20 samples) before it scores
them, so tiny folds do not turn the choice into a coin toss. Selection: the best pooled Kendall tau;
within a tie of it (``TIE`` up to 20 samples, shrinking as 1/sqrt(n) beyond) the first of ``transfer``,
``lut``, ``layers``, ``macs``.
The chosen predictor's pooled relative error is its uncertainty, recorded with every prediction; its
pooled out-of-fold ratios measured / predicted give :meth:`LatencyPredictor.upper`, a latency the
architecture stays under with a chosen confidence (``hardware.latency_confidence``: what a latency
constraint then bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import nnls

from ..errors import ShiftnasError
from ..search_spaces import Arch, SearchSpace
from .ranking import kendall_tau, rmse, spearman_rho

CANDIDATES = ("lut", "layers", "macs", "gbm")
STRUCTURED = ("transfer", "lut", "layers", "macs")  # the order of preference among tied families
TIE = 0.02  # Kendall tau differences below this are noise up to LOO_MAX samples; beyond, it falls as 1/sqrt(n)
GBM_MIN = 30  # fewer measurements than this: gradient boosting is not a candidate
LOO_MAX = 20  # this many measurements or fewer: leave-one-out cross-validation
MIN_SAMPLES = 5
UNSHRUNK = 3  # lut's last columns: the ``layers`` family's features (active layers, MMACs, constant)
RIDGE = 50.0  # the table's shrinkage towards the ``layers`` line: weight RIDGE / n, the data's ~n (issue 18's bench)


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
        self._max_res = max(space.resolutions, default=0) or None

    def _area(self, arch: Arch) -> float:
        return (arch.resolution / (self._max_res or arch.resolution)) ** 2


class _LUT(_Model):
    """Per-block table on top of the ``layers`` line: an active layer of stage ``s`` adds
    ``area * (a_s * t1 + b_s * t2 + c_s) + f_s`` to ``f * active layers + m * MMACs + k``.

    ``t1, t2`` are the block's own cost terms (``Arch.block_terms``): for an inverted-residual layer a
    depthwise conv (~ e * k^2) and two pointwise convs (~ e), for a ResNet bottleneck its 3x3 conv
    (~ (w e)^2) and 1x1 convs (~ w^2 e); with a fixed part, all proportional to the feature-map area,
    plus ``f_s``, a cost per active layer that does not scale with the area (kernel launches, executor
    steps); a per-network cost that scales with area (stem, head). All non-negative (NNLS); the table's
    terms (per stage and stem/head) carry a ridge of weight ``RIDGE / n`` against the data's ~n (columns
    scaled to unit RMS): with 10 measurements it pulls the fit halfway towards the line, with 20 an
    eighth of the way, with hundreds not at all.
    4 x stages + 4 numbers instead of one free entry per (stage, k, e).
    """

    def _features(self, archs: Sequence[Arch], mmacs: Sequence[float]) -> np.ndarray:
        """The table's terms (4 per stage, then area), then the unshrunk active layers, MMACs, 1."""
        n_stages = max(len(a.stages) for a in archs)
        X = np.zeros((len(archs), 4 * n_stages + 1))
        for row, arch in enumerate(archs):
            area = self._area(arch)
            X[row, -1] = area
            for s, (t1, t2) in arch.block_terms():
                X[row, 4 * s : 4 * s + 4] += [area * t1, area * t2, area, 1.0]
        return np.hstack([X, _Layers._features(archs, mmacs)])

    def fit(self, archs, mmacs, y):
        X = self._features(archs, mmacs)
        rms = np.sqrt((X**2).mean(axis=0))
        self.scale_ = np.where(rms > 0, rms, 1.0)
        table = X.shape[1] - UNSHRUNK
        penalty = np.sqrt(RIDGE / len(y)) * np.eye(table, X.shape[1])
        A = np.vstack([X / self.scale_, penalty])
        coef, _ = nnls(A, np.concatenate([np.asarray(y, float), np.zeros(table)]))
        self.coef_ = coef / self.scale_
        return self

    def predict(self, archs, mmacs):
        return self._features(archs, mmacs) @ self.coef_


class _Layers(_Model):
    """``a * active layers + b * MMACs + c``, non-negative."""

    @staticmethod
    def _features(archs, mmacs) -> np.ndarray:
        return np.column_stack([[sum(a.depths) for a in archs], np.asarray(mmacs, float), np.ones(len(archs))])

    def fit(self, archs, mmacs, y):
        self.coef_, _ = nnls(self._features(archs, mmacs), np.asarray(y, float))
        return self

    def predict(self, archs, mmacs):
        return self._features(archs, mmacs) @ self.coef_


class _MACs(_Model):
    """``a * MMACs + b`` with ``a, b >= 0``: more MACs never predict less latency."""

    def fit(self, archs, mmacs, y):
        X = np.column_stack([np.asarray(mmacs, float), np.ones(len(y))])
        self.coef_, _ = nnls(X, np.asarray(y, float))
        return self

    def predict(self, archs, mmacs):
        return self.coef_[0] * np.asarray(mmacs, float) + self.coef_[1]


class _Transfer(_Model):
    """``a * prior(x) + f * active layers + m * MMACs + b``, all non-negative: another device's predictor
    rescaled to this one, with the per-layer and per-MAC costs refitted (what changes most between
    precisions and providers: INT8 layers cost a different share than FP32 ones)."""

    def __init__(self, space: SearchSpace, seed: int, prior: LatencyPredictor) -> None:
        super().__init__(space, seed)
        self.prior = prior

    def _features(self, archs, mmacs) -> np.ndarray:
        return np.column_stack([self.prior.predict(archs, mmacs), _Layers._features(archs, mmacs)])

    def fit(self, archs, mmacs, y):
        self.coef_, _ = nnls(self._features(archs, mmacs), np.asarray(y, float))
        return self

    def predict(self, archs, mmacs):
        return self._features(archs, mmacs) @ self.coef_


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


_FAMILIES = {"lut": _LUT, "layers": _Layers, "macs": _MACs, "gbm": _GBM}


@dataclass
class LatencyPredictor:
    """The chosen predictor, refitted on the whole dataset, with the cross-validation that chose it."""

    kind: str
    model: Any
    cv: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> pooled CV errors (and *_std)
    n_train: int = 0
    ratios: list[float] = field(default_factory=list)  # the chosen family's out-of-fold measured / predicted, sorted

    def predict(self, archs: Sequence[Arch], mmacs: Sequence[float]) -> np.ndarray:
        """Predicted latency (ms) of each architecture (``mmacs`` is its MMACs)."""
        return np.maximum(self.model.predict(list(archs), mmacs), 1e-6)

    def bound_factor(self, confidence: float) -> float:
        """What a prediction is multiplied by to be a latency the architecture stays under with probability
        ``confidence``: the ``ceil((n + 1) confidence)``-th smallest of the n cross-validated ratios measured /
        predicted (split conformal prediction's rank; with 20 measurements and 0.9, the 19th)."""
        rank = math.ceil((len(self.ratios) + 1) * confidence - 1e-9)
        if rank > len(self.ratios):
            need = math.ceil(confidence / (1 - confidence) - 1e-9)
            raise ShiftnasError(
                f"a latency bound at confidence {confidence:g} needs at least {need} profiled architectures, the "
                f"dataset has {len(self.ratios)}; profile more (`shiftnas profile --space ... --samples {need}`) "
                "or lower hardware.latency_confidence"
            )
        return float(self.ratios[rank - 1])

    def upper(self, archs: Sequence[Arch], mmacs: Sequence[float], confidence: float) -> np.ndarray:
        """A latency (ms) each architecture stays under with probability ``confidence`` (on average over
        architectures like the profiled ones): the prediction times :meth:`bound_factor`."""
        return self.predict(archs, mmacs) * self.bound_factor(confidence)

    @property
    def relative_error(self) -> float:
        """The chosen family's cross-validated mean absolute relative error (0.05 = 5 %)."""
        return float(self.cv.get(self.kind, {}).get("mape", float("nan")) / 100)


def _make(kind: str, space: SearchSpace, seed: int, prior: LatencyPredictor | None) -> _Model:
    return _Transfer(space, seed, prior) if kind == "transfer" else _FAMILIES[kind](space, seed)


def cross_validate(
    kind: str,
    space: SearchSpace,
    archs: list[Arch],
    mmacs: np.ndarray,
    y: np.ndarray,
    folds: int = 5,
    seed: int = 0,
    prior: LatencyPredictor | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Held-out errors of one family: every measurement predicted by a model fitted without its fold
    (leave-one-out up to ``LOO_MAX`` measurements), scored together; ``kendall_tau_std`` is the spread
    of tau over the folds that hold at least three measurements. Also returns those predictions."""
    from sklearn.model_selection import KFold

    k = len(y) if len(y) <= LOO_MAX else folds
    pred = np.empty_like(y)
    fold_taus = []
    for train, test in KFold(k, shuffle=True, random_state=seed).split(y):
        model = _make(kind, space, seed, prior).fit([archs[i] for i in train], mmacs[train], y[train])
        pred[test] = model.predict([archs[i] for i in test], mmacs[test])
        if len(test) >= 3:
            fold_taus.append(kendall_tau(pred[test], y[test]))
    pred = np.maximum(pred, 1e-6)
    out = prediction_errors(y, pred)
    out["kendall_tau_std"] = float(np.std(fold_taus)) if fold_taus else 0.0
    out["folds"] = k
    return out, pred


def tie(n: int) -> float:
    """Kendall tau differences below this are noise with ``n`` measurements (tau's error falls as 1/sqrt(n))."""
    return TIE * min(1.0, (LOO_MAX / max(n, 1)) ** 0.5)


def choose(cv: dict[str, dict[str, float]], n: int = LOO_MAX) -> str:
    """Best Kendall tau; among the families within ``tie(n)`` of it the first of ``STRUCTURED``: ``transfer``
    (the prior's structure, four numbers refitted), then ``lut`` (the ``layers`` line plus a table shrunk
    towards it until the data can tell), ``layers``, ``macs``; gradient boosting only when
    it beats them all clearly (bench/results/latency_predictors.md and the README's reading of it)."""
    best = max(r["kendall_tau"] for r in cv.values())
    tied = [k for k, r in cv.items() if r["kendall_tau"] >= best - tie(n)]
    preferred = [k for k in STRUCTURED if k in tied]
    return preferred[0] if preferred else min(tied, key=lambda k: cv[k]["mape"])


def fit_latency_predictor(
    space: SearchSpace,
    archs: Sequence[Arch],
    mmacs: Sequence[float],
    latency_ms: Sequence[float],
    candidates: Sequence[str] = CANDIDATES,
    folds: int = 5,
    seed: int = 0,
    prior: LatencyPredictor | None = None,
) -> LatencyPredictor:
    """Cross-validate ``candidates`` (``transfer`` too, with a ``prior``), keep the best and refit it on all
    the data. ``gbm`` is left out below ``GBM_MIN`` measurements."""
    archs, mmacs, y = list(archs), np.asarray(mmacs, float), np.asarray(latency_ms, float)
    unknown = [c for c in candidates if c not in _FAMILIES]
    if unknown:
        raise ShiftnasError(f"unknown latency predictor '{unknown[0]}'; choose from {', '.join(_FAMILIES)}")
    if len(y) < MIN_SAMPLES:
        raise ShiftnasError(
            f"a latency predictor needs at least {MIN_SAMPLES} measured architectures, got {len(y)}; "
            "profile more with `shiftnas profile --space ... --samples N`"
        )
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ShiftnasError("the latency dataset holds non-positive or non-finite latencies")
    kinds = [c for c in candidates if c != "gbm" or len(y) >= GBM_MIN or list(candidates) == ["gbm"]]
    if prior is not None:
        kinds = ["transfer", *kinds]
    held_out = {kind: cross_validate(kind, space, archs, mmacs, y, folds, seed, prior) for kind in kinds}
    cv = {kind: errors for kind, (errors, _) in held_out.items()}
    kind = choose(cv, len(y))
    model = _make(kind, space, seed, prior).fit(archs, mmacs, y)
    ratios = sorted(float(r) for r in y / held_out[kind][1])
    return LatencyPredictor(kind, model, cv, n_train=len(y), ratios=ratios)


def predictor_from_dataset(space: SearchSpace, dataset, prior=None, **kwargs) -> LatencyPredictor:
    """Fit a predictor on a :class:`~shiftnas.engine.evaluation.latency_dataset.LatencyDataset` of
    ``space``; with ``prior`` (another device's dataset) the ``transfer`` candidate joins."""
    for ds in (dataset, prior):
        if ds is not None and ds.space != space.describe():
            raise ShiftnasError(
                f"the latency dataset was measured on space {ds.space}, but the search runs on {space.describe()}"
            )
    base = predictor_from_dataset(space, prior, **kwargs) if prior is not None else None
    archs = dataset.archs()
    mmacs = [r["mmacs"] for r in dataset.records]
    return fit_latency_predictor(space, archs, mmacs, dataset.latencies(), prior=base, **kwargs)
