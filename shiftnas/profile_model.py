"""``shiftnas profile``: latency of one ONNX model (with a per-node profile), or a device's latency dataset."""

from __future__ import annotations

from pathlib import Path

import onnx
from rich.console import Console
from rich.table import Table

from .errors import ShiftnasError
from .hardware import LatencyConfig, measure_latency
from .hardware.node_profile import node_profile_table, plot_node_profile, profile_nodes, top_nodes_table


def onnx_input_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    """Shape (C, H, W) of the model's first input; the batch dimension is dropped."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != 4 or any(s is None for s in shape[1:]):
        raise ShiftnasError(f"expected an image model with input N x C x H x W and fixed C/H/W, got {shape}")
    return tuple(shape[1:])


def profile_onnx_file(path: str | Path, cfg: LatencyConfig, nodes: bool = True, plot: str | Path | None = None,
                      console: Console | None = None):
    """Measure and print the latency of the ONNX model at ``path``, then (``nodes``) where its time goes.

    The per-node profile is taken in a separate session (ONNX Runtime's profiler slows runs down by
    ~7.5 %), printed as tables and drawn as a bar chart at ``plot`` (default ``<model>.profile.png``).
    Returns ``(LatencyResult, NodeProfile | None)``.
    """
    path = Path(path)
    console = console or Console()
    if not path.is_file():
        raise ShiftnasError(f"ONNX model not found: {path}")
    try:
        data = path.read_bytes()
        model = onnx.load_from_string(data)
    except Exception as exc:
        raise ShiftnasError(f"{path} is not a readable ONNX model: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    shape = onnx_input_shape(model)
    result = measure_latency(data, shape, cfg)
    table = Table(title=f"{path.name}: input {cfg.batch_size}x{'x'.join(map(str, shape))}, {cfg.provider}, "
                        f"{cfg.intra_threads} thread(s)")
    for col in ("median ms", "p10 ms", "p90 ms", "block spread", "timed runs"):
        table.add_column(col, justify="right")
    table.add_row(f"{result.median_ms:.3f}", f"{result.p10_ms:.3f}", f"{result.p90_ms:.3f}",
                  f"{100 * result.spread:.1f}%", str(result.n_runs))
    console.print(table)
    profile = None
    if nodes:
        profile = profile_nodes(data, shape, cfg, runs=max(cfg.runs, 10))
        console.print(node_profile_table(profile))
        console.print(top_nodes_table(profile, top=10))
        png = plot_node_profile(profile, plot or path.with_suffix(".profile.png"), title=path.name)
        console.print(f"per-node profile chart: {png}")
    return result, profile
