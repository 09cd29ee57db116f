"""Hardware objectives: ONNX export, on-device latency, MACs and parameter counts."""

from shiftnas.hardware.deploy import deployable
from shiftnas.hardware.export import ParityReport, assert_parity, check_parity, export_onnx
from shiftnas.hardware.fingerprint import HardwareFingerprint, hardware_fingerprint
from shiftnas.hardware.latency import (
    LatencyCache,
    LatencyProfiler,
    LatencyResult,
    ModelUnderTest,
    make_session,
    measure_latency,
)
from shiftnas.hardware.macs import count_macs, count_params, onnx_macs

__all__ = [
    "HardwareFingerprint",
    "LatencyCache",
    "LatencyProfiler",
    "LatencyResult",
    "ModelUnderTest",
    "ParityReport",
    "assert_parity",
    "check_parity",
    "count_macs",
    "count_params",
    "deployable",
    "export_onnx",
    "hardware_fingerprint",
    "make_session",
    "measure_latency",
    "onnx_macs",
]
