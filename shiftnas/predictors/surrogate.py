"""Surrogate accuracy predictors for the NAT / NATv2 search (methods.md §4.3a, §4.4).

All map integer genomes to the supernet's validation error and are deterministic per seed:

* ``lgbm``: LightGBM with the huber objective on the raw integer genome, a 10-fold ensemble (one
  model per 9-fold training part, prediction = their mean): the NATv2 default.
* ``rbf``: an ensemble of cubic RBF interpolants with a linear tail, each on a random subset of
  the genes (NAT's predictor), built on ``scipy.interpolate.RBFInterpolator``.
* ``gp``: a Gaussian process (scikit-learn) with an anisotropic RBF kernel plus noise.
* ``as``: adaptive switching (NSGANetV2): 10-fold cross-validated Kendall tau of every family;
  the winner maximises mean - std, then is refitted on all the data.

LightGBM's default ``min_child_samples=20`` cannot split a 30-architecture archive; it is capped
at a tenth of the training set (the only deviation from "other parameters default").
"""

from __future__ import annotations

import abc
import warnings
from typing import Any

import numpy as np

from ..registry import Registry
from .ranking import kendall_tau, pearson_r, rmse, spearman_rho


def fit_quality(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE, Pearson r, Spearman rho and Kendall tau of predictions (logged every iteration)."""
    return {
        "rmse": rmse(predicted, truth),
        "pearson_r": pearson_r(predicted, truth),
        "spearman_rho": spearman_rho(predicted, truth),
        "kendall_tau": kendall_tau(predicted, truth),
    }


class Surrogate(abc.ABC):
    """``fit(X, y)`` on integer genomes, then ``predict(X)``."""

    name: str = ""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @abc.abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray) -> Surrogate:
        """Fit on genomes ``X`` (n x genes) and targets ``y``."""

    @abc.abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted targets of ``X``."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def _folds(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold

    return list(KFold(min(k, n), shuffle=True, random_state=seed).split(np.arange(n)))


class LGBMEnsemble(Surrogate):
    name = "lgbm"

    def __init__(self, seed: int = 0, folds: int = 10) -> None:
        super().__init__(seed)
        self.folds = folds

    def fit(self, X, y):
        from lightgbm import LGBMRegressor

        X, y = np.asarray(X, float), np.asarray(y, float)
        self.models = []
        for train, _ in _folds(len(y), self.folds, self.seed):
            model = LGBMRegressor(
                objective="huber",
                random_state=self.seed,
                verbose=-1,
                deterministic=True,
                n_jobs=1,
                min_child_samples=max(2, min(20, len(train) // 10)),
            )
            self.models.append(model.fit(X[train], y[train]))
        return self

    def predict(self, X):
        X = np.asarray(X, float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # feature-name warnings on plain arrays
            return np.mean([m.predict(X) for m in self.models], axis=0)


def _independent_columns(X: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The columns of ``cols`` that keep ``[1, X[:, kept]]`` of full column rank (in order).

    The linear tail of an RBF interpolant is unsolvable when its genes are constant or collinear on
    the data (a converged archive often has genes that move together); such genes are dropped.
    """
    kept: list[int] = []
    basis = np.ones((len(X), 1))
    for c in cols:
        trial = np.column_stack([basis, X[:, c]])
        if np.linalg.matrix_rank(trial) == trial.shape[1]:
            kept.append(int(c))
            basis = trial
    return np.array(kept, dtype=int)


class RBFEnsemble(Surrogate):
    name = "rbf"

    def __init__(self, seed: int = 0, n_models: int = 100) -> None:
        super().__init__(seed)
        self.n_models = n_models

    def fit(self, X, y):
        from scipy.interpolate import RBFInterpolator

        X, y = np.asarray(X, float), np.asarray(y, float)
        rng = np.random.default_rng(self.seed)
        varying = np.flatnonzero(X.std(axis=0) > 0) if len(X) > 1 else np.arange(X.shape[1])
        varying = varying if len(varying) else np.arange(X.shape[1])
        self.models = []
        for _ in range(self.n_models):
            # a linear tail in d genes needs d + 1 points: subsets stay below the archive size
            size = int(rng.integers(1, max(1, min(len(varying), len(y) - 1)) + 1))
            cols = _independent_columns(X, np.sort(rng.choice(varying, size=size, replace=False)))
            # a tiny smoothing keeps the system solvable when a gene subset repeats points
            interp = RBFInterpolator(
                X[:, cols], y, kernel="cubic", degree=1 if len(y) > len(cols) else 0, smoothing=1e-6
            )
            self.models.append((cols, interp))
        return self

    def predict(self, X):
        X = np.asarray(X, float)
        return np.mean([interp(X[:, cols]) for cols, interp in self.models], axis=0)


class GPSurrogate(Surrogate):
    name = "gp"

    def fit(self, X, y):
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        X, y = np.asarray(X, float), np.asarray(y, float)
        self.scale = np.maximum(X.max(axis=0) - X.min(axis=0), 1.0)
        kernel = ConstantKernel() * RBF(
            length_scale=np.ones(X.shape[1]), length_scale_bounds=(1e-2, 1e3)
        ) + WhiteKernel(noise_level=1e-2, noise_level_bounds=(1e-6, 1e1))
        self.model = GaussianProcessRegressor(kernel, normalize_y=True, random_state=self.seed, n_restarts_optimizer=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings at bounds on tiny archives
            self.model.fit(X / self.scale, y)
        return self

    def predict(self, X):
        return self.model.predict(np.asarray(X, float) / self.scale)


_FAMILIES: dict[str, type[Surrogate]] = {"lgbm": LGBMEnsemble, "rbf": RBFEnsemble, "gp": GPSurrogate}
SURROGATES: Registry[type[Surrogate]] = Registry("surrogate")  # nat.surrogate


def cv_kendall(name: str, X: np.ndarray, y: np.ndarray, folds: int = 10, seed: int = 0) -> np.ndarray:
    """Kendall tau on each held-out fold of a ``folds``-fold split (folds of < 2 points are skipped)."""
    taus = []
    for train, test in _folds(len(y), folds, seed):
        if len(test) < 2:
            continue
        model = _FAMILIES[name](seed).fit(X[train], y[train])
        tau = kendall_tau(model.predict(X[test]), y[test])
        taus.append(0.0 if np.isnan(tau) else tau)
    return np.array(taus)


class AdaptiveSwitching(Surrogate):
    """Pick the family with the best cross-validated Kendall tau (mean - std), refit on all data."""

    name = "as"

    def __init__(self, seed: int = 0, candidates: tuple[str, ...] = ("lgbm", "rbf", "gp"), folds: int = 10) -> None:
        super().__init__(seed)
        self.candidates, self.folds = candidates, folds

    def fit(self, X, y):
        X, y = np.asarray(X, float), np.asarray(y, float)
        self.cv = {}
        for name in self.candidates:
            taus = cv_kendall(name, X, y, self.folds, self.seed)
            self.cv[name] = {
                "mean": float(taus.mean()),
                "std": float(taus.std()),
                "score": float(taus.mean() - taus.std()),
            }
        self.chosen = max(self.candidates, key=lambda n: self.cv[n]["score"])
        self.model = _FAMILIES[self.chosen](self.seed).fit(X, y)
        return self

    def predict(self, X):
        return self.model.predict(X)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "chosen": self.chosen, "cv_kendall_tau": self.cv}


for _name, _cls in {**_FAMILIES, "as": AdaptiveSwitching}.items():
    SURROGATES.add(_name, _cls)


def make_surrogate(name: str, seed: int = 0) -> Surrogate:
    """A fresh surrogate by name: lgbm | rbf | gp | as."""
    return SURROGATES.get(name)(seed)
