"""ONNX export of static subnets, and a PyTorch-vs-ONNX Runtime parity check.

Exporter choice: the legacy TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) takes
0.5-1 s per subnet here against 5-18 s for the dynamo exporter, and both give graphs with the same
ORT latency (paired ratio 1.0005) and the same parity with PyTorch (latency.md §3). Bulk latency
profiling exports hundreds of subnets, so we use legacy. If a future torch removes it, we fall
back to ``dynamo=True, external_data=False`` (a single self-contained file, opset >= 18).
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from shiftnas.errors import ExportError, one_line
from shiftnas.hardware.deploy import deployable
from shiftnas.io import atomic_write_bytes

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
_DYNAMIC_AXES = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
_SPATIAL_AXES = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch"}}
_DYNAMO_MIN_OPSET = 18  # dynamo's torchlib cannot produce lower opsets (latency.md §3 pitfall 2)


class _LegacyUnavailable(Exception):
    """The TorchScript exporter is not shipped by this torch."""


def _legacy_available() -> bool:
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        return False
    try:
        return importlib.util.find_spec("torch.onnx._internal.torchscript_exporter") is not None
    except (ImportError, ValueError):
        return False


def _export_legacy(model: nn.Module, example: torch.Tensor, opset: int, spatial: bool = False) -> bytes:
    if not _legacy_available():
        raise _LegacyUnavailable
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (example,),
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=_SPATIAL_AXES if spatial else _DYNAMIC_AXES,
                do_constant_folding=True,
            )
    except (ImportError, NotImplementedError) as exc:  # exporter removed/stubbed out
        raise _LegacyUnavailable from exc
    return buf.getvalue()


def _export_dynamo(model: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            external_data=False,
            opset_version=max(opset, _DYNAMO_MIN_OPSET),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    buf = io.BytesIO()
    program.save(buf, external_data=False)
    return buf.getvalue()


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    path: str | Path | None = None,
    opset: int = 17,
    any_size: bool = False,
) -> bytes:
    """Export ``deployable(model)`` to a single-file ONNX graph and return its bytes.

    ``input_shape`` is NCHW for the example input; the batch axis is dynamic in the graph
    (input ``input``, output ``logits``), with ``any_size`` also the input's height and width where the
    TorchScript exporter is used (the dynamo fallback keeps them fixed). If ``path`` is given the file is
    written atomically.
    Raises ExportError if the exporter fails or ``onnx.checker`` rejects the graph.
    """
    import onnx

    if len(input_shape) != 4:
        raise ExportError(f"input_shape must be (N, C, H, W), got {tuple(input_shape)}")
    net = deployable(model)
    param = next(net.parameters(), None)
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(tuple(int(d) for d in input_shape), generator=gen)
    if param is not None:
        example = example.to(device=param.device, dtype=param.dtype)
    try:
        try:
            data = _export_legacy(net, example, opset, spatial=any_size)
        except _LegacyUnavailable:
            data = _export_dynamo(net, example, opset)
    except ExportError:
        raise
    except Exception as exc:  # the exporters raise many unrelated types
        raise ExportError(f"ONNX export failed: {one_line(exc, with_type=True)}") from exc
    try:
        onnx.checker.check_model(onnx.load_from_string(data))
    except Exception as exc:
        raise ExportError(f"exported ONNX graph is invalid: {one_line(exc, with_type=True)}") from exc
    if path is not None:
        atomic_write_bytes(path, data)
    return data


@dataclass
class ParityReport:
    """Largest |PyTorch - ONNX Runtime| output difference over the tested batch sizes; ``ok`` when every
    output is within ``tolerance + rtol * |PyTorch output|`` (``numpy.allclose``; latency.md recommends 1e-4 and 1e-3)."""

    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    tolerance: float
    ok: bool
    rtol: float = 1e-3


def _ort_session(onnx_bytes_or_path: bytes | str | Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    src = onnx_bytes_or_path if isinstance(onnx_bytes_or_path, bytes) else str(onnx_bytes_or_path)
    return ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])


def check_parity(
    model: nn.Module,
    onnx_bytes_or_path: bytes | str | Path,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = (1, 2),
    tolerance: float = 1e-4,
    seed: int = 0,
    rtol: float = 1e-3,
) -> ParityReport:
    """Run ``model`` (eval, no_grad) and the ONNX graph in ORT CPU on the same random inputs.

    ``input_shape`` is (C, H, W) or (N, C, H, W) (N is ignored; ``batch_sizes`` are used).
    The model's train/eval mode is restored afterwards.
    """
    chw = tuple(int(d) for d in input_shape)[-3:]
    try:
        sess = _ort_session(onnx_bytes_or_path)
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load the graph: {one_line(exc, with_type=True)}") from exc
    in_name = sess.get_inputs()[0].name
    param = next(model.parameters(), None)
    was_training = model.training
    rng = np.random.default_rng(seed)
    worst, ok = 0.0, True
    model.eval()
    try:
        for bs in batch_sizes:
            x = rng.standard_normal((int(bs), *chw)).astype(np.float32)
            xt = torch.from_numpy(x)
            if param is not None:
                xt = xt.to(device=param.device, dtype=param.dtype)
            with torch.no_grad():
                ref = model(xt).detach().float().cpu().numpy()
            try:
                got = sess.run(None, {in_name: x})[0]
            except Exception as exc:
                raise ExportError(f"ONNX Runtime failed at batch {bs}: {one_line(exc, with_type=True)}") from exc
            if got.shape != ref.shape:
                raise ExportError(f"ONNX output shape {got.shape} != PyTorch {ref.shape} at batch {bs}")
            diff = np.abs(got.astype(np.float64) - ref)
            worst = max(worst, float(np.max(diff)))
            ok = ok and bool(np.all(diff <= tolerance + rtol * np.abs(ref)))
    finally:
        model.train(was_training)
    ok = ok and bool(np.isfinite(worst))
    return ParityReport(worst, tuple(int(b) for b in batch_sizes), float(tolerance), ok, float(rtol))


def assert_parity(
    model: nn.Module,
    onnx_bytes_or_path: bytes | str | Path,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = (1, 2),
    tolerance: float = 1e-4,
    seed: int = 0,
    rtol: float = 1e-3,
) -> ParityReport:
    """``check_parity`` that raises ExportError when an output is off by more than ``tolerance + rtol * |it|``."""
    report = check_parity(model, onnx_bytes_or_path, input_shape, batch_sizes, tolerance, seed, rtol)
    if not report.ok:
        raise ExportError(
            f"ONNX output differs from PyTorch by {report.max_abs_diff:.3g} "
            f"(more than {tolerance:g} + {rtol:g} x |output|)"
        )
    return report
