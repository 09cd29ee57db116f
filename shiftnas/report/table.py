"""A short terminal table of the Pareto front (rich)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from .. import records
from .pareto import front_rows


def front_table(front: list[dict[str, Any]], picked_key: str | None = None, max_rows: int = 15) -> Table:
    """The front as a rich table; the picked architecture is marked with '*'."""
    table = Table(title=f"Pareto front ({len(front)} architectures)")
    for col, justify in (
        ("", "left"),
        ("architecture", "left"),
        ("val acc %", "right"),
        ("test acc %", "right"),
        ("latency ms", "right"),
        ("MMACs", "right"),
        ("params M", "right"),
    ):
        table.add_column(col, justify=justify, overflow="fold")
    rows = front_rows(front)
    if len(rows) > max_rows:
        step = (len(rows) - 1) / (max_rows - 1)
        keep = {round(i * step) for i in range(max_rows)}
        rows = [r for i, r in enumerate(rows) if i in keep or r["key"] == picked_key]

    def fmt(v: Any, p: int) -> str:
        return "-" if v is None else f"{v:.{p}f}"

    for r in rows:
        table.add_row(
            "*" if r["key"] == picked_key else "",
            r["key"],
            fmt(r["val_accuracy"], 2),
            fmt(r[records.TEST_ACCURACY], 2),
            fmt(r[records.LATENCY], 3),
            fmt(r[records.MMACS], 2),
            fmt(r[records.MPARAMS], 3),
        )
    return table


def latency_check_line(check: dict[str, Any]) -> str:
    """One line on predicted vs re-measured latency of the front."""
    if not check["checked"]:
        return f"latency was predicted ({check['dataset']}); the front was not re-measured: {check['reason']}"
    tau = f", Kendall tau {check['kendall_tau']:.2f}" if "kendall_tau" in check else ""
    bound = (
        f"; {check['within_bound']} of {check['n']} measured under their latency at confidence {check['confidence']:g}"
        if "within_bound" in check
        else ""
    )
    if "within_limits" in check:
        bound += f"; {check['within_limits']} of {check['n']} measured within {', '.join(check['latency_limits'])}"
    if check.get("on_dataset_scale", check["n"]) < check["n"]:
        bound += (
            f"; only {check['on_dataset_scale']} of {check['n']} read on the dataset's scale (the rest raw: read against "
            "a reference the dataset has no typical latency for)"
        )
    return (
        f"predicted vs re-measured latency of the {check['n']} front architectures: "
        f"MAPE {check['mape']:.1f}%{tau} ({check['predictor']} predictor){bound}"
    )


def finetune_table(results: list[dict[str, Any]]) -> Table:
    """Test accuracy before/after fine-tuning, epochs, params, MACs, latency."""
    table = Table(title="fine-tuned subnets (test accuracy read once, after training)")
    for col in ("subnet", "test acc before", "test acc after", "epochs", "params M", "MMACs", "latency ms"):
        table.add_column(col, justify="right" if col != "subnet" else "left")
    for r in results:
        lat = r.get(records.LATENCY)
        table.add_row(
            r["key"],
            f"{r['test_accuracy_before']:.2f}",
            f"{r['test_accuracy_after']:.2f}",
            str(r["best_epoch"]),
            f"{r['mparams']:.3f}",
            f"{r['mmacs']:.2f}",
            f"{lat:.3f}" if lat is not None else "-",
        )
    return table


def predictor_cv_table(cv: dict[str, dict[str, float]], chosen: str, n: int) -> Table:
    """Cross-validated quality of every latency predictor family; the chosen one marked."""
    folds = next(iter(cv.values())).get("folds", 5)
    how = "leave-one-out" if folds == n else f"{folds}-fold"
    table = Table(title=f"latency predictors, {n} architectures, {how} cross-validation (pooled)")
    for col in ("predictor", "Kendall tau", "Spearman rho", "MAPE %", "within 10 %"):
        table.add_column(col, justify="right")
    for kind, r in cv.items():
        mark = " (chosen)" if kind == chosen else ""
        table.add_row(
            kind + mark,
            f"{r['kendall_tau']:.3f}±{r['kendall_tau_std']:.3f}",
            f"{r['spearman_rho']:.3f}",
            f"{r['mape']:.1f}",
            f"{r['within_10pct']:.0f}%",
        )
    return table


def latency_table(title: str, median_ms: float, p10_ms: float, p90_ms: float, spread: float, n_runs: int) -> Table:
    """One measured latency: median, percentiles, block spread, timed runs."""
    table = Table(title=title)
    for col in ("median ms", "p10 ms", "p90 ms", "block spread", "timed runs"):
        table.add_column(col, justify="right")
    table.add_row(f"{median_ms:.3f}", f"{p10_ms:.3f}", f"{p90_ms:.3f}", f"{100 * spread:.1f}%", str(n_runs))
    return table


def metrics_table(title: str, values: dict[str, Any]) -> Table:
    """A two-column table of named values (e.g. a ranking report)."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in values.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table
