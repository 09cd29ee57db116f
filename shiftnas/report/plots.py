"""Plots of a run: the Pareto front against every evaluated architecture, and the hypervolume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .. import records  # noqa: E402
from ..io import atomic_write_bytes  # noqa: E402


def _save(fig, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_front(
    evaluated: list[dict[str, Any]],
    front: list[dict[str, Any]],
    path: str | Path,
    picked_key: str | None = None,
    title: str = "",
) -> Path:
    """Accuracy vs latency and vs MMACs: all evaluated architectures grey, the front highlighted."""
    labels = {records.LATENCY: "latency (ms, ONNX Runtime)", records.MMACS: "MMACs", records.MPARAMS: "params (M)"}
    cost_axes = [c for c in labels if front and c in front[0]["metrics"]][:2]
    fig, axes = plt.subplots(1, len(cost_axes), figsize=(5.5 * len(cost_axes), 4.2), squeeze=False)
    for ax, col in zip(axes[0], cost_axes):
        xs = [r["metrics"][col] for r in evaluated if col in r["metrics"]]
        ys = [r["metrics"][records.ACCURACY] for r in evaluated if col in r["metrics"]]
        ax.scatter(xs, ys, s=12, c="0.75", label="evaluated")
        pts = sorted((r["metrics"][col], r["metrics"][records.ACCURACY], r["key"]) for r in front)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=28, c="tab:blue", label="Pareto front")
        for x, y, key in pts:
            if key == picked_key:
                ax.scatter([x], [y], s=120, facecolors="none", edgecolors="tab:red", linewidths=2, label="picked")
        ax.set_xlabel(labels[col])
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))


def plot_hypervolume(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Normalised hypervolume per generation."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([h["generation"] for h in history], [h["hypervolume"] for h in history], marker="o")
    ax.set_xlabel("generation")
    ax.set_ylabel("normalised hypervolume")
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))
