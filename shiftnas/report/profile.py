"""Pictures and tables of an ONNX Runtime per-node profile (``hardware.node_profile``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from rich.table import Table

from ..hardware.node_profile import NodeProfile
from ..io import atomic_write_bytes


def _short(name: str, width: int = 52) -> str:
    """Exporter node name shortened: first and last three path components, clipped in the middle."""
    parts = [p for p in name.replace("_output_0", "").split("/") if p] or [name]
    s = "/".join(parts) if len(parts) <= 4 else "/".join([parts[0], "…", *parts[-3:]])
    return s if len(s) <= width else s[: width // 2 - 1] + "…" + s[-(width - width // 2) :]


def plot_node_profile(profile: NodeProfile, path: str | Path, top: int = 20, title: str | None = None) -> Path:
    """PNG: share per op type (left) and the ``top`` most expensive nodes (right); atomic write."""
    from .plots import plt

    nodes = profile.nodes[:top]
    rows = max(len(nodes), len(profile.by_op))
    fig, (a, b) = plt.subplots(
        1, 2, figsize=(13, max(3.0, 0.3 * rows + 1.5)), layout="constrained", gridspec_kw={"width_ratios": [1, 1.5]}
    )
    for ax, labels, vals, color in (
        (a, [o.op_type for o in profile.by_op], [100 * o.share for o in profile.by_op], "tab:blue"),
        (b, [f"{_short(t.name)} ({t.op_type})" for t in nodes], [t.mean_us for t in nodes], "tab:orange"),
    ):
        y = np.arange(len(labels))  # numeric positions: repeated labels must not merge into one bar
        ax.barh(y, vals, color=color)
        ax.set_yticks(y, labels, fontsize=8 if ax is b else 9)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    a.set_xlabel("share of kernel time (%)")
    a.set_title("per op type")
    b.set_xlabel("µs per run")
    b.set_title(f"top {len(nodes)} of {len(profile.nodes)} nodes")
    fig.suptitle(
        title
        or f"ORT node profile: {profile.runs} runs, run {profile.run_ms:.3f} ms, "
        f"kernels {profile.kernel_ms:.3f} ms (profiled: not a latency figure)",
        fontsize=10,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(Path(path), buf.getvalue())


def node_profile_table(profile: NodeProfile, top: int = 15) -> Table:
    """``rich`` table of the ``top`` op types: op type, nodes, µs/run, share %."""
    t = Table(
        title=f"Kernel time per op type ({profile.runs} profiled runs)",
        caption=f"run {profile.run_ms:.3f} ms (median), kernels {profile.kernel_ms:.3f} ms; "
        "profiling adds ~7.5%: attribution only, not latency",
    )
    for col in ("op type", "nodes", "µs/run", "share %"):
        t.add_column(col, justify="left" if col == "op type" else "right")
    for o in profile.by_op[:top]:
        t.add_row(o.op_type, str(o.count), f"{o.total_us:.1f}", f"{100 * o.share:.1f}")
    return t


def top_nodes_table(profile: NodeProfile, top: int = 15) -> Table:
    """``rich`` table of the ``top`` most expensive nodes: node, op type, provider, µs/run, share %."""
    t = Table(title=f"Top {min(top, len(profile.nodes))} of {len(profile.nodes)} nodes")
    for col in ("node", "op type", "provider", "µs/run", "share %"):
        t.add_column(col, justify="right" if col in ("µs/run", "share %") else "left")
    for n in profile.nodes[:top]:
        t.add_row(
            _short(n.name, 48),
            n.op_type,
            n.provider.replace("ExecutionProvider", ""),
            f"{n.mean_us:.1f}",
            f"{100 * n.share:.1f}",
        )
    return t
