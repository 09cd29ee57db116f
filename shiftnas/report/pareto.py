"""The Pareto front as files (CSV + JSON) and the choice of one subnet from it."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pymoo.decomposition.asf import ASF

from .. import records
from ..engine.evaluation.objectives import Objective
from ..io import atomic_write_json, atomic_write_text
from ..registry import Registry

COLUMNS = [
    "key",
    "val_accuracy",
    records.TEST_ACCURACY,
    records.LATENCY,
    records.LATENCY_P10,
    records.LATENCY_RATIO,
    records.LATENCY_REFERENCE,
    records.LATENCY_MEASURED,
    records.LATENCY_UNCERTAINTY,
    records.LATENCY_BOUND,
    records.MMACS,
    records.MPARAMS,
    "supernet_version",
    "generation",
]


def front_rows(front: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows of the front, with the columns of ``pareto.csv``."""
    rows = []
    for r in front:
        m = r["metrics"]
        rows.append(
            {
                "key": r["key"],
                "val_accuracy": m.get(records.ACCURACY),
                **{c: m.get(c) for c in COLUMNS if c not in ("key", "val_accuracy", "supernet_version", "generation")},
                "supernet_version": r["supernet_version"],
                "generation": r["generation"],
            }
        )
    return rows


def write_front(
    front: list[dict[str, Any]], csv_path: Path, json_path: Path, extra: dict[str, Any] | None = None
) -> None:
    """Write the front as CSV (``COLUMNS``) and as JSON (full records, ``extra`` beside them), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for row in front_rows(front):
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_json(
        json_path,
        {"units": {"accuracy": "%", "latency": "ms", "macs": "MMACs", "params": "M"}, **(extra or {}), "front": front},
    )


PickFn = Callable[[list[dict[str, Any]], list[Objective]], dict[str, Any]]
PICKS: Registry[PickFn] = Registry("pick")


def pick(front: list[dict[str, Any]], how: str, objectives: list[Objective]) -> dict[str, Any]:
    """Choose one record of the front by the pick registered as ``how`` (see each one's docstring)."""
    choose = PICKS.get(how)
    if not front:
        raise ValueError("the Pareto front is empty (no feasible architecture found)")
    return choose(front, objectives)


@PICKS.register("knee")
def knee(front: list[dict[str, Any]], objectives: list[Objective]) -> dict[str, Any]:
    """The compromise point: the minimum of pymoo's achievement scalarising function with equal
    weights over min-max normalised objectives."""
    return _asf_min(front, objectives, np.arange(len(front)))


@PICKS.register("max-acc")
def max_accuracy(front: list[dict[str, Any]], objectives: list[Objective]) -> dict[str, Any]:
    """The lowest validation error (ties: fewer MACs)."""
    return min(front, key=lambda r: (r["metrics"][records.ERROR], r["metrics"][records.MMACS]))


@PICKS.register("min-latency")
def min_latency(front: list[dict[str, Any]], objectives: list[Objective]) -> dict[str, Any]:
    """The lowest latency (MACs if latency is not measured)."""
    col = records.LATENCY if records.LATENCY in front[0]["metrics"] else records.MMACS
    return min(front, key=lambda r: (r["metrics"][col], r["metrics"].get(records.ERROR, 0.0)))


@PICKS.register("trade-off")
def trade_off(front: list[dict[str, Any]], objectives: list[Objective]) -> dict[str, Any]:
    """The knee among the high trade-off points (the knee if there are none)."""
    high = high_tradeoff(front, objectives)
    return _asf_min(front, objectives, np.array(high) if high else np.arange(len(front)))


def _asf_min(front: list[dict[str, Any]], objectives: list[Objective], candidates: np.ndarray) -> dict[str, Any]:
    normalized = _normalized(front, objectives)
    weights = np.full(normalized.shape[1], 1.0 / normalized.shape[1])
    return front[int(candidates[ASF().do(normalized[candidates], weights).argmin()])]


def _normalized(front: list[dict[str, Any]], objectives: list[Objective]) -> np.ndarray:
    F = np.array([[r["metrics"][o.column] for o in objectives] for r in front], dtype=float)
    lo, hi = F.min(axis=0), F.max(axis=0)
    return (F - lo) / np.where(hi > lo, hi - lo, 1.0)


def high_tradeoff(front: list[dict[str, Any]], objectives: list[Objective]) -> list[int]:
    """Indices of the front's high trade-off points (pymoo's ``HighTradeoffPoints``, NAT's choice).

    A point qualifies when the least sacrifice per unit of gain towards its neighbours is an
    outlier in the upper tail; fronts of fewer than three points, or without outliers, have none.
    """
    if len(front) < 3:
        return []
    from pymoo.mcdm.high_tradeoff import HighTradeoffPoints

    found = HighTradeoffPoints().do(_normalized(front, objectives))
    return [] if found is None else sorted(int(i) for i in np.atleast_1d(found))
