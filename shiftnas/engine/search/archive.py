"""The run's archive: every evaluated architecture with its metrics, append-only on disk.

Each record holds the generation, genome, architecture, metrics, and the supernet (``supernet_id``,
a hash of the weights the search started from, and ``supernet_version``, bumped by every update
during the search) that produced the accuracy (field names: ``shiftnas.records``). The file is
JSON Lines, appended and fsynced record by record and never rewritten, so a crash loses at most
the record being written (a torn last line is cut when the archive is reopened); it is also what
a resumed run replays from.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...io import append_jsonl, drop_torn_line, read_jsonl
from ...search_spaces import Arch


class Archive:
    """Append-only store of evaluated architectures (JSONL file, or in memory when ``path`` is None)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            drop_torn_line(self.path)  # else the next record would be appended onto the torn one
        self.records: list[dict[str, Any]] = read_jsonl(self.path) if self.path else []

    def add(
        self,
        arch: Arch,
        genome: np.ndarray,
        metrics: dict[str, Any],
        supernet_version: int,
        generation: int,
        supernet_id: str = "",
    ) -> dict[str, Any]:
        record = {
            "key": arch.key(),
            "arch": arch.to_dict(),
            "genome": [int(g) for g in genome],
            "metrics": metrics,
            "supernet_version": supernet_version,
            "supernet_id": supernet_id,
            "generation": generation,
            "time": time.time(),
        }
        self.records.append(record)
        if self.path:
            append_jsonl(self.path, record)
        return record

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)
