"""Objectives and constraints: what the search minimises and which bounds it must respect.

Every objective is minimised in the unit it is reported in: ``error`` (100 - val accuracy, %),
``latency`` (median ms, ONNX Runtime on this machine), ``macs`` (MMACs: Conv+Gemm
multiply-accumulates of the deployed graph) and ``params`` (millions).
Constraints are written like ``latency<=5ms``, ``macs<=10M`` or ``accuracy>=97``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ... import records
from ...errors import ConfigError
from ...registry import Registry


@dataclass(frozen=True)
class Objective:
    """A minimised quantity of an architecture and where it comes from.

    ``cheap`` objectives depend on the architecture only and are computed exactly (MACs, params,
    latency); the others are measured through the supernet's weights (validation error), which is
    what a surrogate (``--mode nat``) predicts.
    """

    name: str
    column: str  # key of the metric in a record's ``metrics`` (see ``shiftnas.records``)
    unit: str
    label: str  # axis / table label
    cheap: bool

    def value(self, metrics: dict[str, float]) -> float:
        """This objective's value in a record's ``metrics``."""
        return float(metrics[self.column])


OBJECTIVES: Registry[Objective] = Registry("objective")
for _objective in (
    Objective("error", records.ERROR, "%", "val error (%)", cheap=False),
    Objective("latency", records.LATENCY, "ms", "latency (ms)", cheap=True),
    Objective("macs", records.MMACS, "MMACs", "MMACs", cheap=True),
    Objective("params", records.MPARAMS, "M", "params (M)", cheap=True),
):
    OBJECTIVES.add(_objective.name, _objective)


def resolve_objectives(names: list[str]) -> list[Objective]:
    """The objectives named ``names`` (at least two, no duplicates)."""
    if len(names) < 2:
        raise ConfigError(f"a multi-objective search needs at least two objectives, got {names}")
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate objectives in {names}")
    return [OBJECTIVES.get(n) for n in names]


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

    @property
    def cheap(self) -> bool:
        """True when the bounded metric depends on the architecture only (not on supernet weights)."""
        return self.column not in (records.ERROR, records.ACCURACY)


_UNITS = {
    "latency": (records.LATENCY, {"": 1.0, "ms": 1.0, "s": 1000.0, "us": 1e-3}),
    "macs": (records.MMACS, {"": 1.0, "m": 1.0, "mmacs": 1.0, "k": 1e-3, "g": 1e3}),
    "params": (records.MPARAMS, {"": 1.0, "m": 1.0, "k": 1e-3}),
    "error": (records.ERROR, {"": 1.0, "%": 1.0}),
    "accuracy": (records.ACCURACY, {"": 1.0, "%": 1.0}),
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
        raise ConfigError(
            f"constraint '{text}': unknown unit '{unit}' for {metric}; use one of "
            f"{', '.join(u or '(none)' for u in units)}"
        )
    if metric == "accuracy" and op in ("<=", "<"):
        raise ConfigError(f"constraint '{text}': accuracy bounds must be lower bounds (>=)")
    if metric != "accuracy" and op in (">=", ">"):
        raise ConfigError(f"constraint '{text}': {metric} bounds must be upper bounds (<=)")
    return Constraint(text=text.strip(), column=column, op=op, bound=number * units[unit])


def needed_metrics(objectives: list[Objective], constraints: list[Constraint]) -> set[str]:
    """Metric columns the search must compute for every architecture."""
    cols = {o.column for o in objectives} | {c.column for c in constraints}
    if records.ACCURACY in cols:
        cols |= {records.ERROR}
    if records.LATENCY_BOUND in cols:  # computed by the latency source with the prediction
        cols |= {records.LATENCY}
    return cols


def with_confidence(constraints: list[Constraint], confidence: float | None) -> list[Constraint]:
    """The constraints with every latency bound applied to the latency reached with ``confidence``
    (``latency_bound_ms``) instead of the predicted latency; unchanged with ``confidence`` None."""
    if confidence is None:
        return constraints
    return [replace(c, column=records.LATENCY_BOUND) if c.column == records.LATENCY else c for c in constraints]
