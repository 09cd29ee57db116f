"""``shiftnas profile MODEL.onnx``: latency of an ONNX model on this machine."""

from __future__ import annotations

from pathlib import Path

import onnx
from rich.console import Console
from rich.table import Table

from .errors import ShiftnasError
from .hardware import LatencyConfig, measure_latency


def onnx_input_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    """Shape (C, H, W) of the model's first input; the batch dimension is dropped."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != 4 or any(s is None for s in shape[1:]):
        raise ShiftnasError(f"expected an image model with input N x C x H x W and fixed C/H/W, got {shape}")
    return tuple(shape[1:])


def profile_onnx_file(path: str | Path, threads: int = 1, batch_size: int = 1, repeats: int = 3, runs: int = 50,
                      warmup: int = 10, provider: str = "CPUExecutionProvider", console: Console | None = None):
    """Measure and print the latency of the ONNX model at ``path``; returns the LatencyResult."""
    path = Path(path)
    if not path.is_file():
        raise ShiftnasError(f"ONNX model not found: {path}")
    try:
        data = path.read_bytes()
        model = onnx.load_from_string(data)
    except Exception as exc:
        raise ShiftnasError(f"{path} is not a readable ONNX model: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    shape = onnx_input_shape(model)
    cfg = LatencyConfig(intra_threads=threads, warmup=warmup, repeats=repeats, runs=runs, batch_size=batch_size,
                        provider=provider)
    result = measure_latency(data, shape, cfg)
    table = Table(title=f"{path.name}: input {batch_size}x{'x'.join(map(str, shape))}, {provider}, {threads} thread(s)")
    for col in ("median ms", "p10 ms", "p90 ms", "block spread", "timed runs"):
        table.add_column(col, justify="right")
    table.add_row(f"{result.median_ms:.3f}", f"{result.p10_ms:.3f}", f"{result.p90_ms:.3f}",
                  f"{100 * result.spread:.1f}%", str(result.n_runs))
    (console or Console()).print(table)
    return result
