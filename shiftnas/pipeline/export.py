"""``shiftnas export``: export any subnet of a finished run's Pareto front to ONNX (read-only on the run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..engine.evaluation.objectives import resolve_objectives
from ..errors import ShiftnasError
from ..hardware.quantize import PRECISIONS
from ..report import PICKS, pick
from .context import load_finished_run
from .run import export_subnet
from .rundir import RunDir


def select_records(
    front: list[dict[str, Any]], how: str, cfg: RunConfig, rundir: RunDir, allow_front: bool = False
) -> list[dict[str, Any]]:
    """``front`` (all of it), a pick (knee, max-acc, ...) or an architecture key of ``pareto.csv``."""
    if allow_front and how == "front":
        return list(front)
    if how in PICKS:
        return [pick(front, how, resolve_objectives(cfg.search.objectives))]
    matches = [r for r in front if r["key"] == how]
    if not matches:
        choices = ("front, " if allow_front else "") + ", ".join(PICKS)
        raise ShiftnasError(f"'{how}' is neither {choices} nor a key in {rundir.pareto_csv}")
    return matches[:1]


def export_from_run(
    run_dir: str | Path, how: str = "knee", out: str | Path | None = None, precision: str | None = None
) -> dict[str, Any]:
    """Pick ``how`` (knee | max-acc | min-latency | trade-off | an architecture key) from ``run_dir`` and export
    it at ``precision`` (default: the run's ``hardware.precision``)."""
    rundir = RunDir(run_dir)
    front = rundir.front()
    cfg = rundir.load_config()
    if precision is not None and precision not in PRECISIONS:
        raise ShiftnasError(f"--deploy must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    record = select_records(front, how, cfg, rundir)[0]
    run = load_finished_run(rundir, int(record.get("supernet_version", 0)), cfg)
    if precision is not None:
        run.evaluator.precision = precision
    path = Path(out) if out else rundir.subnet(how if how in PICKS else record["key"])
    return export_subnet(run.space, run.evaluator, record, path)
