"""Progress bars of long work (rich, on stderr)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def stderr_console() -> Console:
    """The console every command reports on (stderr, so stdout stays for tables and results); messages are
    plain text (no rich markup: a path or a value a user typed may hold brackets), styled with ``Text``."""
    return Console(stderr=True, markup=False)


@contextmanager
def progress_bar(description: str, total: float, console: Console | None = None, quiet: bool = False) -> Iterator[Any]:
    """A rich progress bar on stderr (a no-op when quiet); yields ``update(completed, info="")``."""
    if quiet:
        yield lambda *a, **k: None
        return
    columns = [
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console or stderr_console(), transient=False) as prog:
        task = prog.add_task(description, total=total, info="")
        yield lambda completed, info="": prog.update(task, completed=completed, info=info)
