"""ONNX Runtime latency measurement, a SQLite result cache, and a profiler tying them together.

Protocol (latency.md §2.5): explicit thread counts, ``ORT_SEQUENTIAL``, ``ORT_ENABLE_ALL``,
spinning off, a fixed seeded input at the deployment batch size, ``repeats`` blocks each in a
fresh session with its own warm-up, ``perf_counter_ns`` around every ``run``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from shiftnas.errors import ShiftnasError
from shiftnas.hardware.export import export_onnx
from shiftnas.hardware.fingerprint import HardwareFingerprint, hardware_fingerprint

# Which pip package provides each execution provider (for the "not available" message).
_PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu (with TensorRT)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
    "CoreMLExecutionProvider": "onnxruntime (macOS build)",
    "ROCMExecutionProvider": "onnxruntime-rocm",
    "QNNExecutionProvider": "onnxruntime-qnn",
}


@dataclass
class LatencyConfig:
    """Session settings and sampling plan for one latency measurement."""

    intra_threads: int = 1
    inter_threads: int = 1
    warmup: int = 10  # untimed runs at the start of every block
    repeats: int = 3  # blocks, each in a fresh session
    runs: int = 30  # timed runs per block
    batch_size: int = 1
    provider: str = "CPUExecutionProvider"

    def fingerprint(self) -> HardwareFingerprint:
        return hardware_fingerprint(
            self.provider, self.intra_threads, self.inter_threads, self.batch_size
        )


@dataclass
class LatencyResult:
    """Latency statistics in milliseconds.

    ``median_ms`` is the median of the block medians (robust to one disturbed block);
    ``p10_ms``/``p90_ms`` are percentiles of all timed runs pooled;
    ``spread`` = (max block median - min block median) / median_ms.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    spread: float
    block_medians_ms: list[float]
    n_runs: int
    fingerprint: dict[str, Any]
    input_shape: list[int] = field(default_factory=list)  # NCHW actually fed to the session

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatencyResult":
        return cls(**d)


def make_session(onnx_bytes: bytes, cfg: LatencyConfig):
    """ONNX Runtime session configured for measurement; never falls back to another provider."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if cfg.provider not in available:
        pkg = _PROVIDER_PACKAGES.get(cfg.provider, "an onnxruntime build that includes it")
        raise ShiftnasError(
            f"{cfg.provider} is not available in this onnxruntime build; install {pkg} "
            f"(available: {', '.join(available)})"
        )
    if cfg.intra_threads < 1 or cfg.inter_threads < 1:
        raise ShiftnasError("thread counts must be >= 1 (0 would let ORT pick and pin threads)")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(cfg.intra_threads)
    so.inter_op_num_threads = int(cfg.inter_threads)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, sess_options=so, providers=[cfg.provider])


def measure_latency(
    onnx_bytes: bytes, input_shape_chw: Sequence[int], cfg: LatencyConfig | None = None
) -> LatencyResult:
    """Time ``cfg.repeats`` blocks of ``cfg.runs`` runs on a fixed seeded input (batch ``cfg.batch_size``)."""
    cfg = cfg or LatencyConfig()
    if cfg.repeats < 1 or cfg.runs < 1 or cfg.warmup < 0 or cfg.batch_size < 1:
        raise ShiftnasError(f"invalid latency config: {cfg}")
    shape = (int(cfg.batch_size), *(int(d) for d in input_shape_chw))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    blocks: list[np.ndarray] = []
    for _ in range(cfg.repeats):
        sess = make_session(onnx_bytes, cfg)
        feed = {sess.get_inputs()[0].name: x}
        for _ in range(cfg.warmup):
            sess.run(None, feed)
        times = np.empty(cfg.runs, dtype=np.float64)
        for i in range(cfg.runs):
            t0 = time.perf_counter_ns()
            sess.run(None, feed)
            times[i] = time.perf_counter_ns() - t0
        blocks.append(times / 1e6)
        del sess
    pooled = np.concatenate(blocks)
    medians = [float(np.median(b)) for b in blocks]
    median = float(np.median(medians))
    return LatencyResult(
        median_ms=median,
        p10_ms=float(np.percentile(pooled, 10)),
        p90_ms=float(np.percentile(pooled, 90)),
        spread=(max(medians) - min(medians)) / median if median > 0 else 0.0,
        block_medians_ms=medians,
        n_runs=int(pooled.size),
        fingerprint=cfg.fingerprint().as_dict(),
        input_shape=list(shape),
    )


def _shape_str(shape: Sequence[int] | str) -> str:
    return shape if isinstance(shape, str) else "x".join(str(int(d)) for d in shape)


def _fp_key(fp: HardwareFingerprint | str) -> str:
    return fp if isinstance(fp, str) else fp.key()


class LatencyCache:
    """SQLite store of LatencyResults keyed by (arch key, input shape, fingerprint key)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path)
        with self._conn:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS latency ("
                " arch_key TEXT NOT NULL, input_shape TEXT NOT NULL, fingerprint TEXT NOT NULL,"
                " result TEXT NOT NULL, created REAL NOT NULL,"
                " PRIMARY KEY (arch_key, input_shape, fingerprint))"
            )

    def get(
        self, arch_key: str, shape: Sequence[int] | str, fp: HardwareFingerprint | str
    ) -> LatencyResult | None:
        row = self._conn.execute(
            "SELECT result FROM latency WHERE arch_key=? AND input_shape=? AND fingerprint=?",
            (arch_key, _shape_str(shape), _fp_key(fp)),
        ).fetchone()
        return None if row is None else LatencyResult.from_dict(json.loads(row[0]))

    def put(
        self,
        arch_key: str,
        shape: Sequence[int] | str,
        fp: HardwareFingerprint | str,
        result: LatencyResult,
    ) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?, ?)",
                (arch_key, _shape_str(shape), _fp_key(fp), json.dumps(result.as_dict()), time.time()),
            )

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM latency").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "LatencyCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LatencyProfiler:
    """Cached end-to-end latency of a model: cache lookup, export, measure, store."""

    def __init__(
        self,
        cfg: LatencyConfig | None = None,
        cache: LatencyCache | None = None,
        fingerprint: HardwareFingerprint | None = None,
    ) -> None:
        self.cfg = cfg or LatencyConfig()
        self.fingerprint = fingerprint or self.cfg.fingerprint()
        self.cache = cache
        self.n_measured = 0  # measurements actually taken (cache misses)

    def profile(
        self, arch_key: str, model: nn.Module, input_shape_chw: Sequence[int]
    ) -> LatencyResult:
        """Latency of ``model`` (identified by ``arch_key``) at ``input_shape_chw``."""
        chw = tuple(int(d) for d in input_shape_chw)
        if self.cache is not None:
            hit = self.cache.get(arch_key, chw, self.fingerprint)
            if hit is not None:
                return hit
        onnx_bytes = export_onnx(model, (self.cfg.batch_size, *chw))
        result = measure_latency(onnx_bytes, chw, self.cfg)
        result.fingerprint = self.fingerprint.as_dict()
        self.n_measured += 1
        if self.cache is not None:
            self.cache.put(arch_key, chw, self.fingerprint, result)
        return result
