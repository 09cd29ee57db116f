"""Metrics of a table space: the search asks the table instead of a supernet.

:class:`TableMetrics` answers what :class:`~shiftnas.engine.evaluation.metrics.ArchitectureMetrics`
answers (``metrics``, ``cost_metrics``, ``prefetch``, ``needed``, ``evaluator``), so every searcher
runs on a table unchanged. ``noise="mean"`` looks up the mean accuracy over the table's seeds;
``noise="seed"`` draws one seed's accuracy per query (seeded), so the oracle is as noisy as a real
training. The test accuracy of a final front is the table's mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import records
from ...errors import ConfigError
from ...search_spaces.table import TableArch, TableSpace


class TableEvaluator:
    """The weights-version view of a table: one fixed version, no supernet to update."""

    supernet = None
    version = 0

    def __init__(self, space: TableSpace) -> None:
        self.supernet_id = space.fingerprint
        self.n_evaluations = 0

    def bump_version(self) -> int:
        raise ConfigError("a table space has no supernet to update (no shifting or adaptation on a table)")


class TableMetrics:
    """``metrics(arch)`` from the table: accuracy / error (mean or one seed's) and the cost columns."""

    latency = None

    def __init__(self, space: TableSpace, needed: set[str], noise: str = "mean", seed: int = 0) -> None:
        missing = sorted(c for c in needed if c not in space.columns)
        if missing:
            raise ConfigError(
                f"table {space.path.name} has no column for {', '.join(missing)} "
                f"(it has: {', '.join(sorted(space.columns))})"
            )
        if noise not in ("mean", "seed"):
            raise ConfigError(f"table.noise must be 'mean' or 'seed', got '{noise}'")
        self.space, self.needed, self.noise = space, needed, noise
        self.evaluator = TableEvaluator(space)
        self.rng = np.random.default_rng([seed, 4242])

    def accuracy(self, arch: TableArch) -> float:
        """What one query of ``arch`` returns (an evaluation)."""
        row = self.space.row(arch)
        self.evaluator.n_evaluations += 1
        if self.noise == "seed":
            return float(row.accuracies[int(self.rng.integers(len(row.accuracies)))])
        return row.mean_accuracy

    def metrics(self, arch: TableArch) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if {records.ERROR, records.ACCURACY} & self.needed:
            acc = self.accuracy(arch)
            out.update({records.ACCURACY: acc, records.ERROR: 100.0 - acc})
        out.update(self.cost_metrics(arch))
        return out

    def cost_metrics(self, arch: TableArch, subnet: Any = None) -> dict[str, Any]:
        """The table's cost columns of ``arch`` (exact)."""
        return dict(self.space.row(arch).costs)

    def test_accuracy(self, arch: TableArch) -> float:
        """The table's mean accuracy over its seeds (what a front is reported with)."""
        return self.space.row(arch).mean_accuracy

    def prefetch(self, archs: list, accuracy: bool = True) -> None:
        """Nothing to fetch ahead: every answer is a table lookup."""
        return None
