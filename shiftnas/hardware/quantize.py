"""INT8 deployment: ONNX Runtime static quantization (QDQ, per-channel int8 weights, uint8 activations).

The subnet is exported in FP32 (``export_onnx``), pre-processed (shape inference, graph
optimisation) and quantized by ``onnxruntime.quantization.quantize_static`` with min-max
calibration on fixed images. Accuracy calibrates on real images (the BN-recalibration subset);
latency, which depends on the graph and not on the scales, may calibrate on seeded random images
(``random_calibration``) where no data is at hand (``shiftnas profile`` on a device).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .export import export_onnx
from .stitch import BlockExports, Subnet, SubnetRecipe

PRECISIONS = ("fp32", "int8")
CALIBRATION_BATCH = 32


class _Images:
    """``CalibrationDataReader``: the calibration images in batches, under the model's input name."""

    def __init__(self, name: str, images: np.ndarray) -> None:
        self.batches = iter(
            [{name: images[i : i + CALIBRATION_BATCH]} for i in range(0, len(images), CALIBRATION_BATCH)]
        )

    def get_next(self):
        return next(self.batches, None)


def random_calibration(input_shape_chw: Sequence[int], n: int = 16, seed: int = 0) -> np.ndarray:
    """Seeded uniform images in [0, 1) for a latency-only quantization."""
    return np.random.default_rng(seed).random((n, *(int(d) for d in input_shape_chw)), dtype=np.float32)


def quantize_int8(onnx_fp32: bytes, calibration: np.ndarray) -> bytes:
    """The INT8 (QDQ) model of ``onnx_fp32``, calibrated on ``calibration`` (N x C x H x W float32)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load_from_string(onnx_fp32).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="shiftnas-int8-") as tmp:
        fp32, pre, int8 = (Path(tmp) / f for f in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32.write_bytes(onnx_fp32)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(int8),
            _Images(name, np.ascontiguousarray(calibration, dtype=np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return int8.read_bytes()


def deployed_onnx(
    model: Subnet,
    input_shape: Sequence[int],
    precision: str = "fp32",
    calibration: np.ndarray | None = None,
    blocks: BlockExports | None = None,
) -> bytes:
    """The ONNX model that is deployed at ``precision``: FP32 as exported, or its INT8 quantization
    (calibrated on ``calibration``, else on seeded random images). With ``blocks`` the FP32 graph is stitched
    from its cached block exports: the same graph for timing, other weights (never for accuracy); a
    :class:`~shiftnas.hardware.stitch.SubnetRecipe` is built where its graph needs the modules."""
    if blocks is None:
        onnx_fp32 = export_onnx(model.build() if isinstance(model, SubnetRecipe) else model, tuple(input_shape))
    else:
        onnx_fp32 = blocks.export(model, input_shape)
    if precision == "fp32":
        return onnx_fp32
    if precision != "int8":
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    return quantize_int8(onnx_fp32, random_calibration(input_shape[1:]) if calibration is None else calibration)


def onnx_accuracy(onnx_bytes: bytes, images: torch.Tensor, labels: torch.Tensor, batch: int = 200) -> float:
    """Top-1 accuracy (%) of an ONNX classifier in ONNX Runtime (CPU, 1 thread); ``images`` are at the
    model's input resolution."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = 0
    for i in range(0, len(labels), batch):
        logits = sess.run(None, {name: images[i : i + batch].numpy().astype(np.float32)})[0]
        correct += int((logits.argmax(1) == labels[i : i + batch].numpy()).sum())
    return 100.0 * correct / max(1, len(labels))
