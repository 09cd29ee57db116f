"""Compute every metric of an architecture that the search asked for, from one extracted subnet."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ... import records
from ...hardware import count_macs, count_params
from ...hardware.stitch import subnet_recipe
from ...search_spaces import Arch
from .latency import LatencySource
from .subnet import SubnetEvaluator


class ArchitectureMetrics:
    """``metrics(arch)`` -> {'error', 'accuracy', 'latency_ms', 'mmacs', 'mparams', ...}.

    Accuracy depends on the supernet weights and is cached by the :class:`SubnetEvaluator` per
    (architecture, supernet version); MACs, params and latency depend on the architecture only and
    are cached here (measured latency also on disk, per hardware fingerprint and protocol, by the profiler).
    """

    def __init__(self, evaluator: SubnetEvaluator, latency: LatencySource | None, needed: set[str]) -> None:
        if records.LATENCY in needed and latency is None:
            raise ValueError("latency requested but no latency source given")
        self.evaluator, self.latency, self.needed = evaluator, latency, needed
        self._cost: dict[str, dict[str, Any]] = {}

    def metrics(self, arch: Arch) -> dict[str, Any]:
        needs_accuracy = bool({records.ERROR, records.ACCURACY} & self.needed)
        subnet = None
        if arch.key() not in self._cost:  # extract once, for both the accuracy and the cost metrics
            subnet = (
                self.evaluator.subnet(arch)
                if needs_accuracy
                else self.evaluator.space.extract(self.evaluator.supernet, arch)
            )
        out: dict[str, Any] = {}
        if needs_accuracy:
            acc = self.evaluator.score(arch, "val", subnet=subnet).accuracy
            out.update({records.ACCURACY: acc, records.ERROR: 100.0 - acc})
        out.update(self.cost_metrics(arch, subnet))
        return out

    def cost_metrics(self, arch: Arch, subnet: nn.Module | None = None) -> dict[str, Any]:
        """MMACs, params and (if requested) latency; the architecture-only metrics."""
        key = arch.key()
        if key not in self._cost:
            space = self.evaluator.space
            model = subnet if subnet is not None else space.extract(self.evaluator.supernet, arch)
            shape = space.input_size(arch)
            cost: dict[str, Any] = {
                records.MMACS: count_macs(model, shape) / 1e6,
                records.MPARAMS: count_params(model) / 1e6,
            }
            if records.LATENCY in self.needed:
                cost.update(self.latency.latency(arch, model, shape, cost[records.MMACS]))
            self._cost[key] = cost
        return dict(self._cost[key])

    def prefetch(self, archs: list[Arch], accuracy: bool = True) -> None:
        """Get the latencies (and, with ``accuracy``, the val accuracies) of a whole population at once,
        in parallel where the source can: Dask latency workers, Dask ``eval`` workers.

        Pass ``accuracy=False`` when the supernet changes between the population's evaluations
        (per-candidate shifting): each accuracy must then come from the weights of its own turn.
        """
        if accuracy and self.evaluator.remote is not None and {records.ERROR, records.ACCURACY} & self.needed:
            self.evaluator.score_many(archs, "val")
        if records.LATENCY not in self.needed or not self.latency.parallel:
            return
        space, supernet = self.evaluator.space, self.evaluator.supernet
        items = {a.key(): a for a in archs if a.key() not in self._cost}
        models = self.latency.needs_models  # a background child makes its own
        self.latency.prefetch(  # recipes: a subnet is built only where its graph misses a cached block
            [
                (a, subnet_recipe(space, supernet, a) if models else None, tuple(space.input_size(a)))
                for a in items.values()
            ]
        )
