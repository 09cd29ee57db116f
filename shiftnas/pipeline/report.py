"""``shiftnas report RUN``: (re)build a run's ``report.html`` from its files."""

from __future__ import annotations

from pathlib import Path

from ..errors import ShiftnasError
from ..io import atomic_write_text, read_jsonl
from ..report.html import render_report
from .rundir import RunDir


def write_report(rundir: RunDir) -> Path:
    """Write ``report.html`` of a run that has at least its archive; the parts it lacks are left out."""
    if not rundir.archive.is_file():
        raise ShiftnasError(f"{rundir} has no archive.jsonl: not a shiftnas run directory, or nothing was evaluated")

    def load(path: Path, default):
        return rundir.read_json(path) if path.is_file() else default

    page = render_report(
        rundir.path.resolve().name,
        read_jsonl(rundir.archive),
        load(rundir.pareto_json, {}),
        load(rundir.hypervolume_json, []),
        load(rundir.summary, {}),
        load(rundir.finetune_results, None),
    )
    return atomic_write_text(rundir.report, page)
