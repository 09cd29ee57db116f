"""``report.html``: one self-contained, interactive page per run (plotly, its JavaScript inlined, no server)."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import records

COST_AXES = {records.LATENCY: "latency (ms)", records.MMACS: "MMACs", records.MPARAMS: "params (M)"}
HOVER = (
    (records.ACCURACY, "accuracy %", ".2f"),
    (records.TEST_ACCURACY, "test accuracy %", ".2f"),
    (records.LATENCY, "latency ms", ".3f"),
    (records.LATENCY_MEASURED, "measured latency ms (dataset scale)", ".3f"),
    (records.MMACS, "MMACs", ".2f"),
    (records.MPARAMS, "params M", ".3f"),
)


def _hover(record: dict[str, Any]) -> str:
    m = record["metrics"]
    lines = [f"<b>{html.escape(record['key'])}</b>"]
    lines += [f"{label}: {m[k]:{fmt}}" for k, label, fmt in HOVER if m.get(k) is not None]
    lines.append(f"supernet version: {record.get('supernet_version', 0)} · generation {record.get('generation', '-')}")
    return "<br>".join(lines)


def front_figure(evaluated: list[dict], front: list[dict], picked: str | None) -> go.Figure | None:
    """Accuracy against each cost axis the run has: every evaluated architecture, the front, the pick."""
    if not evaluated:
        return None
    axes = [c for c in COST_AXES if any(c in r["metrics"] for r in evaluated)]
    if not axes:
        return None
    fig = make_subplots(rows=1, cols=len(axes), shared_yaxes=True, horizontal_spacing=0.06)
    groups = (
        ("evaluated", evaluated, dict(size=6, color="rgba(120,120,120,0.45)")),
        ("Pareto front", front, dict(size=9, color="#1f77b4")),
        ("picked", [r for r in front if r["key"] == picked], dict(size=16, color="#d62728", symbol="star")),
    )
    for col, axis in enumerate(axes, start=1):
        for name, group, marker in groups:
            rows = [r for r in group if axis in r["metrics"] and records.ACCURACY in r["metrics"]]
            if not rows:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r["metrics"][axis] for r in rows],
                    y=[r["metrics"][records.ACCURACY] for r in rows],
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    marker=marker,
                    text=[_hover(r) for r in rows],
                    hovertemplate="%{text}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text=COST_AXES[axis], row=1, col=col)
    fig.update_yaxes(title_text="validation accuracy (%)", row=1, col=1)
    fig.update_layout(height=480, margin=dict(t=30, l=60, r=20, b=50), template="plotly_white")
    return fig


def hypervolume_figure(history: list[dict]) -> go.Figure | None:
    if not history:
        return None
    fig = go.Figure(
        go.Scatter(
            x=[h["generation"] for h in history],
            y=[h["hypervolume"] for h in history],
            mode="lines+markers",
            text=[f"{h.get('evaluated', '?')} evaluated" for h in history],
            hovertemplate="step %{x}: %{y:.4f} (%{text})<extra></extra>",
        )
    )
    fig.update_layout(
        height=320,
        margin=dict(t=30, l=60, r=20, b=50),
        template="plotly_white",
        xaxis_title="generation / iteration",
        yaxis_title="normalised hypervolume",
    )
    return fig


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"


def latency_check_section(check: dict | None) -> str:
    if not check:
        return ""
    if not check.get("checked"):
        return f"<h2>Latency predictor check</h2><p>Not re-measured: {html.escape(str(check.get('reason', '')))}</p>"
    keys = ("predictor", "n", "kendall_tau", "spearman_rho", "mape", "within_10pct", "confidence", "within_bound")
    keys += ("within_limits", "dataset")
    fields = [(k, check[k]) for k in keys if k in check]
    return "<h2>Latency predictor check (the front re-measured)</h2>" + _table(
        [k for k, _ in fields], [[v if isinstance(v, (str, int)) else _fmt(v) for _, v in fields]]
    )


def finetune_section(results: dict | None) -> str:
    if not results or not results.get("subnets"):
        return ""
    rows = [
        [
            s["key"],
            _fmt(s.get("test_accuracy_before"), 2),
            _fmt(s.get("test_accuracy_after"), 2),
            s.get("best_epoch", "–"),
            _fmt(s.get(records.MMACS), 2),
            _fmt(s.get(records.LATENCY)),
        ]
        for s in results["subnets"]
    ]
    header = ["subnet", "test acc. before %", "test acc. after %", "best epoch", "MMACs", "latency ms"]
    return "<h2>Fine-tuned subnets</h2>" + _table(header, rows)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 20px; } td, th { border: 1px solid #ddd; padding: 4px 8px; }
th { background: #f4f4f4; } code { background: #f4f4f4; padding: 1px 4px; }
"""


def render_report(
    title: str,
    evaluated: list[dict],
    pareto: dict,
    history: list[dict],
    summary: dict,
    finetuned: dict | None,
) -> str:
    """The page: the interactive front and hypervolume, the latency-predictor check and fine-tuning
    results when the run has them. ``pareto`` is ``pareto.json``'s content, ``summary`` ``summary.json``'s."""
    front = pareto.get("front", [])
    picked = (pareto.get("picked") or {}).get("key")
    parts = [f"<h1>shiftnas run <code>{html.escape(title)}</code></h1>"]
    facts = [f"{len(evaluated)} evaluations", f"{len(front)} Pareto-optimal"]
    if pareto.get("objectives"):
        facts.append("objectives: " + ", ".join(pareto["objectives"]))
    if picked:
        facts.append(f"picked ({html.escape(str(pareto['picked'].get('how')))}): <code>{html.escape(picked)}</code>")
    parts.append("<p>" + " · ".join(facts) + "</p>")
    first = True
    for heading, fig in (
        ("Pareto front (hover a point for its architecture)", front_figure(evaluated, front, picked)),
        ("Hypervolume per step", hypervolume_figure(history)),
    ):
        if fig is None:
            continue
        # the first figure carries plotly.js inline, so the page works offline
        parts.append(f"<h2>{heading}</h2>" + fig.to_html(full_html=False, include_plotlyjs=first))
        first = False
    parts.append(latency_check_section(summary.get("latency_check")))
    parts.append(finetune_section(finetuned))
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>shiftnas report</title>'
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
