"""How good a front is against the true one: hypervolume fraction and IGD+ (pymoo's indicators).

Both work on objectives normalised by the true front's ideal and nadir points (every objective
minimised), so one fixed reference point (1.1 in every normalised objective) serves every method and
budget of a benchmark. ``hv_fraction`` is the hypervolume of a front divided by the true front's
(1.0: the true front is found); ``igd_plus`` is pymoo's IGD+ from the true front (0.0: found).
"""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.indicators.igd_plus import IGDPlus

from .base import nondominated

REFERENCE = 1.1


def true_front(F: np.ndarray) -> np.ndarray:
    """The non-dominated rows of every architecture's objective values ``F``."""
    F = np.asarray(F, dtype=float)
    return np.unique(F[nondominated(F)], axis=0)


def normalizer(front: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ideal, nadir) of the true front; a constant objective gets a unit range."""
    ideal, nadir = front.min(axis=0), front.max(axis=0)
    return ideal, np.where(nadir > ideal, nadir, ideal + 1.0)


def _norm(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> np.ndarray:
    return (np.asarray(F, dtype=float).reshape(-1, len(ideal)) - ideal) / (nadir - ideal)


def hv_fraction(F: np.ndarray, front: np.ndarray, reference: float = REFERENCE) -> float:
    """Hypervolume of ``F`` over the true ``front``'s (normalised, reference point ``reference``)."""
    ideal, nadir = normalizer(front)
    ref = np.full(front.shape[1], reference)
    hv = HV(ref_point=ref)
    found = _norm(F, ideal, nadir)
    found = found[(found < ref).all(axis=1)]
    return float(hv(found) / hv(_norm(front, ideal, nadir))) if len(found) else 0.0


def igd_plus(F: np.ndarray, front: np.ndarray) -> float:
    """pymoo's IGD+ of ``F`` from the true ``front`` (normalised objectives)."""
    ideal, nadir = normalizer(front)
    return float(IGDPlus(_norm(front, ideal, nadir))(_norm(F, ideal, nadir)))
