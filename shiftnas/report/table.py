"""A short terminal table of the Pareto front (rich)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from .pareto import front_rows


def front_table(front: list[dict[str, Any]], picked_key: str | None = None, max_rows: int = 15) -> Table:
    """The front as a rich table; the picked architecture is marked with '*'."""
    table = Table(title=f"Pareto front ({len(front)} architectures)")
    for col, justify in (("", "left"), ("architecture", "left"), ("val acc %", "right"), ("test acc %", "right"),
                         ("latency ms", "right"), ("MMACs", "right"), ("params M", "right")):
        table.add_column(col, justify=justify, overflow="fold")
    rows = front_rows(front)
    if len(rows) > max_rows:
        step = (len(rows) - 1) / (max_rows - 1)
        keep = {round(i * step) for i in range(max_rows)}
        rows = [r for i, r in enumerate(rows) if i in keep or r["key"] == picked_key]

    def fmt(v: Any, p: int) -> str:
        return "-" if v is None else f"{v:.{p}f}"

    for r in rows:
        table.add_row("*" if r["key"] == picked_key else "", r["key"], fmt(r["val_accuracy"], 2),
                      fmt(r["test_accuracy"], 2), fmt(r["latency_ms"], 3), fmt(r["mmacs"], 2), fmt(r["mparams"], 3))
    return table
