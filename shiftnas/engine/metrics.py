"""Compute every metric of an architecture that the search asked for, from one extracted subnet."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

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
        needs_accuracy = bool({"error", "accuracy"} & self.needed)
        subnet = None
        if arch.key() not in self._cost:  # extract once, for both the accuracy and the cost metrics
            subnet = self.evaluator.subnet(arch) if needs_accuracy else self.evaluator.space.extract(
                self.evaluator.supernet, arch)
        out: dict[str, Any] = {}
        if needs_accuracy:
            acc = self.evaluator.score(arch, "val", subnet=subnet).accuracy
            out.update(accuracy=acc, error=100.0 - acc)
        out.update(self.cost_metrics(arch, subnet))
        return out

    def cost_metrics(self, arch: Arch, subnet: nn.Module | None = None) -> dict[str, Any]:
        """MMACs, params and (if requested) latency; the architecture-only metrics."""
        key = arch.key()
        if key not in self._cost:
            space = self.evaluator.space
            model = subnet if subnet is not None else space.extract(self.evaluator.supernet, arch)
            shape = space.input_size(arch)
            cost: dict[str, Any] = {"mmacs": count_macs(model, shape) / 1e6, "mparams": count_params(model) / 1e6}
            if "latency_ms" in self.needed:
                lat = self.profiler.profile(key, model, shape)
                cost.update(latency_ms=lat.median_ms, latency_p10_ms=lat.p10_ms, latency_spread=lat.spread)
            self._cost[key] = cost
        return dict(self._cost[key])
