"""The Pareto front as files (CSV + JSON) and the choice of one subnet from it."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.decomposition.asf import ASF

from ..engine.objectives import Objective
from ..errors import ConfigError
from ..io import atomic_write_json, atomic_write_text

PICKS = ("knee", "max-acc", "min-latency", "trade-off")

COLUMNS = ["key", "val_accuracy", "test_accuracy", "latency_ms", "latency_p10_ms", "latency_ratio", "latency_reference",
           "latency_measured_ms", "mmacs", "mparams",
           "supernet_version", "generation"]


def front_rows(front: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows of the front, with the columns of ``pareto.csv``."""
    rows = []
    for r in front:
        m = r["metrics"]
        rows.append({"key": r["key"], "val_accuracy": m.get("accuracy"), "test_accuracy": m.get("test_accuracy"),
                     "latency_ms": m.get("latency_ms"), "latency_p10_ms": m.get("latency_p10_ms"),
                     "latency_ratio": m.get("latency_ratio"), "latency_reference": m.get("latency_reference"),
                     "latency_measured_ms": m.get("latency_measured_ms"),
                     "mmacs": m.get("mmacs"), "mparams": m.get("mparams"),
                     "supernet_version": r["supernet_version"], "generation": r["generation"]})
    return rows


def write_front(front: list[dict[str, Any]], out_dir: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``pareto.csv`` and ``pareto.json`` (full records) into ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for row in front_rows(front):
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(out_dir / "pareto.csv", buf.getvalue())
    atomic_write_json(out_dir / "pareto.json", {"units": {"accuracy": "%", "latency": "ms", "macs": "MMACs",
                                                          "params": "M"}, **(extra or {}), "front": front})


def pick(front: list[dict[str, Any]], how: str, objectives: list[Objective]) -> dict[str, Any]:
    """Choose one record of the front.

    ``knee``: the compromise point, i.e. the minimum of pymoo's achievement scalarising function
    with equal weights over min-max normalised objectives. ``max-acc``: the lowest validation
    error (ties: fewer MACs). ``min-latency``: the lowest latency (MACs if latency is not measured).
    ``trade-off``: the knee among the high trade-off points (the knee if there are none).
    """
    if not front:
        raise ValueError("the Pareto front is empty (no feasible architecture found)")
    if how not in PICKS:
        raise ConfigError(f"unknown pick '{how}'; choose one of: {', '.join(PICKS)}")
    if how == "max-acc":
        return min(front, key=lambda r: (r["metrics"]["error"], r["metrics"]["mmacs"]))
    if how == "min-latency":
        col = "latency_ms" if "latency_ms" in front[0]["metrics"] else "mmacs"
        return min(front, key=lambda r: (r["metrics"][col], r["metrics"].get("error", 0.0)))
    normalized = _normalized(front, objectives)
    candidates = np.arange(len(front))
    if how == "trade-off":
        high = high_tradeoff(front, objectives)
        candidates = np.array(high) if high else candidates
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
