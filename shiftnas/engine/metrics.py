"""Compute every metric of an architecture that the search asked for, from one extracted subnet."""

from __future__ import annotations

from typing import Any

from ..hardware import LatencyProfiler, count_macs, count_params
from ..search_spaces import Arch
from .evaluation import SubnetEvaluator


class ArchitectureMetrics:
    """``metrics(arch)`` -> {'error', 'accuracy', 'latency_ms', 'mmacs', 'mparams', ...}.

    Accuracy depends on the supernet weights and is cached by the :class:`SubnetEvaluator` per
    (architecture, supernet version); MACs, params and latency depend on the architecture only and
    are cached here (latency also on disk, per hardware fingerprint, by the profiler).
    """

    def __init__(self, evaluator: SubnetEvaluator, profiler: LatencyProfiler | None, needed: set[str]) -> None:
        if "latency_ms" in needed and profiler is None:
            raise ValueError("latency requested but no latency profiler given")
        self.evaluator, self.profiler, self.needed = evaluator, profiler, needed
        self._cost: dict[str, dict[str, Any]] = {}

    def metrics(self, arch: Arch) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if {"error", "accuracy"} & self.needed:
            acc = self.evaluator.score(arch, "val").accuracy
            out.update(accuracy=acc, error=100.0 - acc)
        out.update(self.cost_metrics(arch))
        return out

    def cost_metrics(self, arch: Arch) -> dict[str, Any]:
        """MMACs, params and (if requested) latency; the architecture-only metrics."""
        key = arch.key()
        if key not in self._cost:
            space = self.evaluator.space
            model = space.extract(self.evaluator.supernet, arch)
            shape = space.input_size(arch)
            cost: dict[str, Any] = {"mmacs": count_macs(model, shape) / 1e6, "mparams": count_params(model) / 1e6}
            if "latency_ms" in self.needed:
                lat = self.profiler.profile(key, model, shape)
                cost.update(latency_ms=lat.median_ms, latency_p10_ms=lat.p10_ms, latency_spread=lat.spread)
            self._cost[key] = cost
        return dict(self._cost[key])

    def preload(self, arch: Arch, metrics: dict[str, Any]) -> None:
        """Seed the architecture-only cache from a stored record (resume without re-measuring)."""
        cost = {k: metrics[k] for k in ("mmacs", "mparams", "latency_ms", "latency_p10_ms", "latency_spread")
                if k in metrics}
        if "latency_ms" in self.needed and "latency_ms" not in cost:
            return
        self._cost.setdefault(arch.key(), cost)
