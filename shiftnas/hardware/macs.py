"""Multiply-accumulate (MAC) and parameter counts. Unit: MACs (divide by 1e6 for MMACs).

MACs are those of Conv and Linear/Gemm/MatMul only: bias, BatchNorm (folded into the conv at
export), activations, pooling and element-wise ops are not counted (latency.md §5).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from shiftnas.errors import ShiftnasError

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_macs(model: nn.Module, input_shape_chw: Sequence[int]) -> int:
    """MACs of every Conv and Linear in a batch-1 forward pass.

    Conv = output elements x Cin/groups x prod(kernel); Linear = in_features x output elements.
    Forward hooks on one eval-mode, no_grad forward (hooks removed, train/eval mode restored;
    the model is otherwise untouched). Equals fvcore's ``by_operator()['conv'] + ['linear']``
    and the Conv/Gemm MACs of the exported ONNX graph exactly, at a fraction of fvcore's cost
    (fvcore JIT-traces the model).
    """
    total = 0

    def conv_hook(m: nn.Module, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(m: nn.Module, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, _CONVS):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    param = next(model.parameters(), None)
    x = torch.zeros(1, *(int(d) for d in input_shape_chw))
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)


def count_params(model: nn.Module) -> int:
    """Number of parameter values (all parameters, trainable or not)."""
    return int(sum(p.numel() for p in model.parameters()))


def _dims(value_info: Any) -> list[int] | None:
    tt = value_info.type.tensor_type
    if not tt.HasField("shape"):
        return None
    # symbolic or unknown dims (the dynamic batch axis) count as 1
    return [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def onnx_macs(onnx_bytes_or_model: bytes | str | Path | Any) -> int:
    """Conv/Gemm/MatMul MACs of an ONNX graph at batch 1, after shape inference.

    Conv = prod(out_shape) x Cin/group x kH x kW (from the weight's shape [Cout, Cin/g, kH, kW]);
    Gemm = prod(out_shape) x K; MatMul = prod(out_shape) x A's last dim. Symbolic dims count as 1.
    """
    import onnx

    if isinstance(onnx_bytes_or_model, bytes):
        model = onnx.load_from_string(onnx_bytes_or_model)
    elif isinstance(onnx_bytes_or_model, (str, Path)):
        model = onnx.load(str(onnx_bytes_or_model))
    else:
        model = onnx_bytes_or_model
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = model.graph
    shapes: dict[str, list[int] | None] = {}
    for vi in (*g.input, *g.value_info, *g.output):
        shapes[vi.name] = _dims(vi)
    for init in g.initializer:
        shapes[init.name] = list(init.dims)

    def shape(name: str, node: Any) -> list[int]:
        s = shapes.get(name)
        if s is None:
            raise ShiftnasError(f"ONNX shape inference gave no shape for {name!r} ({node.op_type})")
        return s

    total = 0
    for node in g.node:
        if node.op_type == "Conv":
            w = shape(node.input[1], node)
            total += math.prod(shape(node.output[0], node)) * math.prod(w[1:])
        elif node.op_type == "Gemm":
            b = shape(node.input[1], node)
            k = b[1] if _attr(node, "transB", 0) else b[0]
            total += math.prod(shape(node.output[0], node)) * k
        elif node.op_type == "MatMul":
            a = shape(node.input[0], node)
            total += math.prod(shape(node.output[0], node)) * a[-1]
    return int(total)
