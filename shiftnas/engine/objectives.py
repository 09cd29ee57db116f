"""Objectives and constraints: what the search minimises and which bounds it must respect.

Every objective is minimised in the unit it is reported in: ``error`` (100 - val accuracy, %),
``latency`` (median ms, ONNX Runtime on this machine), ``macs`` (MMACs: Conv+Gemm
multiply-accumulates of the deployed graph) and ``params`` (millions).
Constraints are written like ``latency<=5ms``, ``macs<=10M`` or ``accuracy>=97``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Objective:
    name: str
    column: str        # key of the metric in a record's ``metrics`` dict
    unit: str
    label: str         # axis / table label


OBJECTIVES: dict[str, Objective] = {
    "error": Objective("error", "error", "%", "val error (%)"),
    "latency": Objective("latency", "latency_ms", "ms", "latency (ms)"),
    "macs": Objective("macs", "mmacs", "MMACs", "MMACs"),
    "params": Objective("params", "mparams", "M", "params (M)"),
}


def resolve_objectives(names: list[str]) -> list[Objective]:
    """Validate objective names (at least two, no duplicates, ``error`` usually among them)."""
    if len(names) < 2:
        raise ConfigError(f"a multi-objective search needs at least two objectives, got {names}")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ConfigError(f"unknown objective '{unknown[0]}'; choose from: {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate objectives in {names}")
    return [OBJECTIVES[n] for n in names]


@dataclass(frozen=True)
class Constraint:
    """``metric <op> bound`` as a pymoo inequality ``g <= 0``."""

    text: str
    column: str
    op: str
    bound: float

    def g(self, metrics: dict[str, float]) -> float:
        value = metrics[self.column]
        return value - self.bound if self.op in ("<=", "<") else self.bound - value


_UNITS = {
    "latency": ("latency_ms", {"": 1.0, "ms": 1.0, "s": 1000.0, "us": 1e-3}),
    "macs": ("mmacs", {"": 1.0, "m": 1.0, "mmacs": 1.0, "k": 1e-3, "g": 1e3}),
    "params": ("mparams", {"": 1.0, "m": 1.0, "k": 1e-3}),
    "error": ("error", {"": 1.0, "%": 1.0}),
    "accuracy": ("accuracy", {"": 1.0, "%": 1.0}),
}
_PATTERN = re.compile(r"^\s*([a-z]+)\s*(<=|>=|<|>)\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*([a-z%]*)\s*$", re.I)


def parse_constraint(text: str) -> Constraint:
    """Parse ``latency<=5ms`` / ``macs<=10M`` / ``params<=1.5M`` / ``accuracy>=97%``."""
    m = _PATTERN.match(text)
    if not m:
        raise ConfigError(f"malformed constraint '{text}'; expected e.g. 'latency<=5ms' or 'macs<=10M'")
    metric, op, number, unit = m.group(1).lower(), m.group(2), float(m.group(3)), m.group(4).lower()
    if metric not in _UNITS:
        raise ConfigError(f"constraint '{text}': unknown metric '{metric}'; use one of {', '.join(_UNITS)}")
    column, units = _UNITS[metric]
    if unit not in units:
        raise ConfigError(f"constraint '{text}': unknown unit '{unit}' for {metric}; use one of "
                          f"{', '.join(u or '(none)' for u in units)}")
    if metric == "accuracy" and op in ("<=", "<"):
        raise ConfigError(f"constraint '{text}': accuracy bounds must be lower bounds (>=)")
    if metric != "accuracy" and op in (">=", ">"):
        raise ConfigError(f"constraint '{text}': {metric} bounds must be upper bounds (<=)")
    return Constraint(text=text.strip(), column=column, op=op, bound=number * units[unit])


def needed_metrics(objectives: list[Objective], constraints: list[Constraint]) -> set[str]:
    """Metric columns the search must compute for every architecture."""
    cols = {o.column for o in objectives} | {c.column for c in constraints}
    if "accuracy" in cols:
        cols |= {"error"}
    return cols
