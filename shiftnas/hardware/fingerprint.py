"""Identify the hardware and runtime settings a latency measurement was taken under."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

from shiftnas.config import LatencyConfig


def cpu_model_name() -> str:
    """CPU model from ``/proc/cpuinfo`` ('model name'), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True)
class HardwareFingerprint:
    """What a latency number depends on besides the model; part of every cache key."""

    cpu_model: str
    cores: int
    provider: str
    ort_version: str
    intra_threads: int
    inter_threads: int
    batch_size: int
    precision: str = "fp32"  # of the measured model: fp32 | int8

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """Short stable hash (16 hex chars) of all fields (``precision`` only when not fp32, so the keys of
        datasets written before INT8 existed stay valid; a latency cache adds the protocol: ``cache_key``)."""
        fields = self.as_dict()
        if fields["precision"] == "fp32":
            del fields["precision"]
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def hardware_fingerprint(
    provider: str = "CPUExecutionProvider",
    intra_threads: int = 1,
    inter_threads: int = 1,
    batch_size: int = 1,
    precision: str = "fp32",
) -> HardwareFingerprint:
    """Fingerprint of this machine for the given ONNX Runtime provider and settings."""
    import onnxruntime as ort

    return HardwareFingerprint(
        cpu_model=cpu_model_name(),
        cores=os.cpu_count() or 1,
        provider=provider,
        ort_version=ort.__version__,
        intra_threads=int(intra_threads),
        inter_threads=int(inter_threads),
        batch_size=int(batch_size),
        precision=precision,
    )


def fingerprint_of(cfg: LatencyConfig) -> HardwareFingerprint:
    """Fingerprint of this machine for the measurement settings ``cfg``."""
    return hardware_fingerprint(cfg.provider, cfg.intra_threads, cfg.inter_threads, cfg.batch_size, cfg.precision)
