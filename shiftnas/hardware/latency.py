"""ONNX Runtime latency measurement, a SQLite result cache, and a profiler tying them together.

Protocol (latency.md §2.4-2.5): explicit thread counts, ``ORT_SEQUENTIAL``, ``ORT_ENABLE_ALL``,
spinning off, a fixed seeded input at the deployment batch size, ``repeats`` blocks each with its
own warm-up (in a fresh session, or with ``candidate_sessions="once"`` in one session re-warmed per
block), ``perf_counter_ns`` around every ``run``. With reference
models the candidate and the references run interleaved, run by run, so that whatever slows the
machine down slows them alike: the paired ratio to the nearest reference is the most stable
estimate here (2-6 % under contention where the median moved 90-490 %), and a block in which a
reference drifted more than ``drift`` from its own median over the blocks is measured again.
By default (``reference_sessions="kept"``) each reference's warmed session is kept for the process,
and (``references_timed="nearest"``) blocks after the first time only the reference nearest the
candidate; ``references_timed="guessed"`` picks that reference before the first block from the
candidate's warm-up and each reference's latency timed once per process. These are the defaults of
``LatencyConfig`` (``shiftnas profile``); a search's ``HardwareConfig`` times the candidate alone in one
session (bench/results/latency_protocols.md).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from shiftnas.config import LatencyConfig
from shiftnas.errors import ShiftnasError
from shiftnas.hardware.fingerprint import HardwareFingerprint, fingerprint_of
from shiftnas.hardware.quantize import deployed_onnx
from shiftnas.hardware.stitch import BlockExports, Subnet

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
    ratio: float | None = None  # paired ratio to the nearest reference (median over blocks)
    reference: str | None = None  # name of that reference
    reference_ms: float | None = None  # that reference's median latency in the same blocks
    ratios: dict[str, float] = field(default_factory=dict)  # paired ratio to every reference
    reference_drift: float = 0.0  # largest move of a reference's block median from its median, kept blocks
    remeasured: int = 0  # blocks measured again because a reference drifted
    cost: dict[str, float] = field(default_factory=dict)  # wall seconds spent: sessions, warm-up, timed runs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyResult:
        return cls(**d)


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def provider_options(provider: str) -> dict[str, str]:
    """Per-provider options for a measurement (latency.md §2.6): final-quality conv algorithms, TRT caches."""
    if provider == "CUDAExecutionProvider":
        return {"device_id": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"}
    if provider == "TensorrtExecutionProvider":
        cache = str(Path.home() / ".cache" / "shiftnas" / "trt")
        return {
            "device_id": "0",
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": cache,
        }
    return {}


def check_provider(provider: str) -> None:
    """Raise a one-line error naming the package to install if ``provider`` is not in this build."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider not in available:
        pkg = _PROVIDER_PACKAGES.get(provider, "an onnxruntime build that includes it")
        raise ShiftnasError(
            f"{provider} is not available in this onnxruntime build; install {pkg} (available: {', '.join(available)})"
        )


def make_session(onnx_bytes: bytes, cfg: LatencyConfig, profile_prefix: str | None = None):
    """ONNX Runtime session configured for measurement; never falls back to another provider.

    ``profile_prefix`` turns ONNX Runtime's own profiler on (it costs ~7.5%: never time with it).
    """
    import onnxruntime as ort

    check_provider(cfg.provider)
    if cfg.intra_threads < 1 or cfg.inter_threads < 1:
        raise ShiftnasError("thread counts must be >= 1 (0 would let ORT pick and pin threads)")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(cfg.intra_threads)
    so.inter_op_num_threads = int(cfg.inter_threads)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    providers: list = [cfg.provider]
    if cfg.provider != "CPUExecutionProvider":
        # nodes the provider cannot run go to the CPU (as deployed), but a provider that fails to
        # load must not silently turn the whole session into a CPU session: checked below
        providers = [(cfg.provider, provider_options(cfg.provider)), "CPUExecutionProvider"]
    try:
        sess = ort.InferenceSession(onnx_bytes, sess_options=so, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/RuntimeException types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShiftnasError(f"ONNX Runtime could not create a {cfg.provider} session: {first}") from None
    if sess.get_providers()[0] != cfg.provider:
        raise ShiftnasError(
            f"{cfg.provider} failed to load (ONNX Runtime fell back to {sess.get_providers()[0]}); "
            f"check the CUDA/cuDNN/TensorRT libraries that {_PROVIDER_PACKAGES.get(cfg.provider, 'it')} needs"
        )
    return sess


@dataclass(frozen=True)
class ModelUnderTest:
    """An ONNX model and the (C, H, W) it is fed; references are ModelUnderTests with a name."""

    name: str
    onnx_bytes: bytes
    chw: tuple[int, ...]


REWARM_RUNS = 2  # untimed runs of a kept session at the start of each block
_KEPT_SESSIONS_MAX = 8  # kept reference runners per process (a run has at most 3 references per setting)
_kept: OrderedDict[tuple, Callable[[], Any]] = OrderedDict()
_typical_ms: dict[tuple, float] = {}  # each reference's latency, timed once per process (for ``guessed``)


def _session_key(ref: ModelUnderTest, cfg: LatencyConfig) -> tuple:
    return (ref, cfg.provider, cfg.intra_threads, cfg.inter_threads, cfg.batch_size)


def _open(m: ModelUnderTest, cfg: LatencyConfig) -> Callable[[], Any]:
    """A runner of ``m`` in a new session on its seeded input (every model gets the same first draw)."""
    x = np.random.default_rng(0).standard_normal((int(cfg.batch_size), *m.chw)).astype(np.float32)
    return _runner(make_session(m.onnx_bytes, cfg), x, cfg.provider)


def _timed_warmup(runner: Callable[[], Any], n: int) -> float:
    """Run ``runner`` ``n`` times; the median ms of the second half (the first runs still settle)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        runner()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(times[n // 2 :])) if times else float("nan")


def _kept_runner(ref: ModelUnderTest, cfg: LatencyConfig) -> Callable[[], Any]:
    """A runner of ``ref`` under ``cfg``'s session settings, opened and warmed once per process."""
    key = _session_key(ref, cfg)
    runner = _kept.get(key)
    if runner is None:
        runner = _open(ref, cfg)
        _typical_ms[key] = _timed_warmup(runner, max(cfg.warmup, 1))
        _kept[key] = runner
        while len(_kept) > _KEPT_SESSIONS_MAX:
            _kept.popitem(last=False)
    else:
        _kept.move_to_end(key)
    return runner


def _typical_latency(ref: ModelUnderTest, cfg: LatencyConfig) -> float:
    """``ref``'s latency from its warm-up runs, timed once per process (a kept session's own warm-up)."""
    key = _session_key(ref, cfg)
    if key not in _typical_ms:
        if cfg.reference_sessions == "kept":
            _kept_runner(ref, cfg)
        else:
            _typical_ms[key] = _timed_warmup(_open(ref, cfg), max(cfg.warmup, 1))
    return _typical_ms[key]


def _block(
    candidate: ModelUnderTest,
    references: Sequence[ModelUnderTest],
    cfg: LatencyConfig,
    cost: dict[str, float],
    candidate_runner: Callable[[], Any] | None = None,
) -> np.ndarray:
    """One block: the candidate's session (``candidate_runner``, re-warmed, or a fresh one), kept or fresh
    sessions for the references (per ``cfg.reference_sessions``), warm-up, then ``cfg.runs`` rounds running
    every model once (ms; row 0 is the candidate). Adds the wall seconds of each phase to ``cost``."""
    start = time.perf_counter()
    kept = cfg.reference_sessions == "kept"
    if candidate_runner is None:
        runners, warmups = [_open(candidate, cfg)], [cfg.warmup]
    else:
        runners, warmups = [candidate_runner], [min(cfg.warmup, REWARM_RUNS)]
    for ref in references:
        runners.append(_kept_runner(ref, cfg) if kept else _open(ref, cfg))
        warmups.append(min(cfg.warmup, REWARM_RUNS) if kept else cfg.warmup)
    t1 = time.perf_counter()
    for i in range(max(warmups)):
        for run, n in zip(runners, warmups):
            if i < n:
                run()
    t2 = time.perf_counter()
    times = np.empty((len(runners), cfg.runs), dtype=np.float64)
    for i in range(cfg.runs):  # interleaved run by run: candidate, reference 1, reference 2, ...
        for j, run in enumerate(runners):
            t0 = time.perf_counter_ns()
            run()
            times[j, i] = time.perf_counter_ns() - t0
    times /= 1e6
    for phase, seconds in (
        ("sessions_s", t1 - start),
        ("warmup_s", t2 - t1),
        ("candidate_runs_s", times[0].sum() / 1e3),
        ("reference_runs_s", times[1:].sum() / 1e3),
    ):
        cost[phase] = cost.get(phase, 0.0) + float(seconds)
    return times


def _nearest(candidate_ms: float, reference_ms: dict[str, float]) -> str:
    """The reference whose latency is closest to the candidate's on a log scale (it cancels contention best)."""
    return min(reference_ms, key=lambda n: abs(np.log(reference_ms[n] / candidate_ms)))


def _runner(sess, x: np.ndarray, provider: str):
    """A no-argument callable running ``sess`` on ``x``.

    On a GPU the input and output stay on the device (IO binding), so the time is the model's, not
    the host-device copies'; ``run_with_iobinding`` synchronises the stream before returning, so
    wall-clock timing around it is valid (latency.md §2.6).
    """
    name = sess.get_inputs()[0].name
    if provider not in GPU_PROVIDERS:
        feed = {name: x}
        return lambda: sess.run(None, feed)
    import onnxruntime as ort

    binding = sess.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    for out in sess.get_outputs():
        binding.bind_output(out.name, "cuda")
    return lambda: sess.run_with_iobinding(binding)


def _reference_drift(blocks: list[np.ndarray]) -> np.ndarray:
    """Per block, the largest relative move of a reference's median from its median over the blocks."""
    medians = np.array([np.median(b[1:], axis=1) for b in blocks])  # blocks x references
    centre = np.median(medians, axis=0)
    return np.max(np.abs(medians / centre - 1.0), axis=1)


def measure_latency(
    onnx_bytes: bytes,
    input_shape_chw: Sequence[int],
    cfg: LatencyConfig | None = None,
    references: Sequence[ModelUnderTest] = (),
) -> LatencyResult:
    """Time ``cfg.repeats`` blocks of ``cfg.runs`` runs, interleaved with ``references`` if given."""
    cfg = cfg or LatencyConfig()
    chw = tuple(int(d) for d in input_shape_chw)
    candidate = ModelUnderTest("candidate", onnx_bytes, chw)
    timed = list(references)
    cost: dict[str, float] = {}
    runner = None
    if cfg.candidate_sessions == "once":  # one session, warmed here; each block re-warms it briefly
        start = time.perf_counter()
        runner = _open(candidate, cfg)
        t1 = time.perf_counter()
        warm_ms = _timed_warmup(runner, max(cfg.warmup, 1))
        cost["sessions_s"], cost["warmup_s"] = t1 - start, time.perf_counter() - t1
    if timed and cfg.references_timed == "guessed":
        if runner is None:
            start = time.perf_counter()
            warm_ms = _timed_warmup(_open(candidate, cfg), max(cfg.warmup, 1))
            cost["warmup_s"] = time.perf_counter() - start
        name = _nearest(warm_ms, {r.name: _typical_latency(r, cfg) for r in timed})
        timed = [r for r in timed if r.name == name]
    first = _block(candidate, timed, cfg, cost, runner)
    if len(timed) > 1 and cfg.references_timed == "nearest":
        name = _nearest(
            float(np.median(first[0])), {r.name: float(np.median(first[j])) for j, r in enumerate(timed, 1)}
        )
        j = next(j for j, r in enumerate(timed, start=1) if r.name == name)
        timed, first = [timed[j - 1]], first[[0, j]]
    blocks = [first] + [_block(candidate, timed, cfg, cost, runner) for _ in range(cfg.repeats - 1)]
    remeasured = 0
    if timed and cfg.repeats > 1:
        while remeasured < cfg.max_remeasure:
            drift = _reference_drift(blocks)
            worst = int(np.argmax(drift))
            if drift[worst] <= cfg.drift:
                break
            blocks[worst] = _block(candidate, timed, cfg, cost, runner)
            remeasured += 1
    cand = [b[0] for b in blocks]
    medians = [float(np.median(b)) for b in cand]
    median = float(np.median(medians))
    pooled = np.concatenate(cand)
    ratios: dict[str, float] = {}
    for j, ref in enumerate(timed, start=1):
        ratios[ref.name] = float(np.median([np.median(b[0] / b[j]) for b in blocks]))
    nearest, ref_ms = None, {}
    if timed:  # the reference of the most similar latency cancels contention best (latency.md §2.4)
        ref_ms = {
            r.name: float(np.median(np.concatenate([b[j] for b in blocks]))) for j, r in enumerate(timed, start=1)
        }
        nearest = _nearest(median, ref_ms)
    return LatencyResult(
        median_ms=median,
        p10_ms=float(np.percentile(pooled, 10)),
        p90_ms=float(np.percentile(pooled, 90)),
        spread=(max(medians) - min(medians)) / median if median > 0 else 0.0,
        block_medians_ms=medians,
        n_runs=int(pooled.size),
        fingerprint=fingerprint_of(cfg).as_dict(),
        input_shape=[int(cfg.batch_size), *chw],
        ratio=ratios[nearest] if nearest else None,
        reference=nearest,
        reference_ms=ref_ms[nearest] if nearest else None,
        ratios=ratios,
        reference_drift=float(_reference_drift(blocks).max()) if timed and cfg.repeats > 1 else 0.0,
        remeasured=remeasured,
        cost=cost,
    )


def _shape_str(shape: Sequence[int] | str) -> str:
    return shape if isinstance(shape, str) else "x".join(str(int(d)) for d in shape)


def _fp_key(fp: HardwareFingerprint | str) -> str:
    return fp if isinstance(fp, str) else fp.key()


DEVICE_SETTINGS = ("provider", "intra_threads", "inter_threads", "batch_size")  # in the device fingerprint


def measurement_protocol(cfg: LatencyConfig) -> dict[str, Any]:
    """``cfg``'s measurement settings beyond the device's: precision, blocks, runs, warm-up, references, sessions."""
    return {f.name: getattr(cfg, f.name) for f in fields(LatencyConfig) if f.name not in DEVICE_SETTINGS}


def cache_key(fingerprint: HardwareFingerprint, cfg: LatencyConfig) -> str:
    """The key a result measured on ``fingerprint`` with ``cfg``'s protocol is cached under: the device's key and a
    hash of the protocol, so runs of two protocols that share a cache never read each other's medians."""
    blob = json.dumps(measurement_protocol(cfg), sort_keys=True, separators=(",", ":"))
    return f"{fingerprint.key()}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


class LatencyCache:
    """SQLite store of LatencyResults keyed by (arch key, input shape, fingerprint key: a device's, or with
    :func:`cache_key` a device's and a protocol's)."""

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

    def get(self, arch_key: str, shape: Sequence[int] | str, fp: HardwareFingerprint | str) -> LatencyResult | None:
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

    def __enter__(self) -> LatencyCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LatencyProfiler:
    """Cached end-to-end latency of a model: cache lookup, export, measure (with references), store."""

    def __init__(
        self,
        cfg: LatencyConfig | None = None,
        cache: LatencyCache | None = None,
        fingerprint: HardwareFingerprint | None = None,
        references: Sequence[ModelUnderTest] = (),
    ) -> None:
        self.cfg = cfg or LatencyConfig()
        self.fingerprint = fingerprint or fingerprint_of(self.cfg)
        self.cache = cache
        self.references = list(references)
        self.cache_key = cache_key(self.fingerprint, self.cfg)  # the device and the protocol
        self.n_measured = 0  # measurements actually taken (cache misses)
        self.blocks = BlockExports()  # the measured graphs are stitched from cached block exports

    def lookup(self, arch_key: str, input_shape_chw: Sequence[int]) -> LatencyResult | None:
        """The cached result for this device and protocol, if any."""
        if self.cache is None:
            return None
        return self.cache.get(arch_key, tuple(int(d) for d in input_shape_chw), self.cache_key)

    def store(self, arch_key: str, input_shape_chw: Sequence[int], result: LatencyResult) -> LatencyResult:
        """Count and cache a fresh measurement."""
        result.fingerprint = self.fingerprint.as_dict()
        self.n_measured += 1
        if self.cache is not None:
            self.cache.put(arch_key, tuple(int(d) for d in input_shape_chw), self.cache_key, result)
        return result

    def export(self, model: Subnet, input_shape_chw: Sequence[int]) -> bytes:
        """The graph that gets measured: deployable activations, the configured batch size and precision, stitched
        from cached block exports (the same operators as the whole export; for timing only; a
        :class:`~shiftnas.hardware.stitch.SubnetRecipe` is built only where a block is not cached)."""
        shape = (self.cfg.batch_size, *(int(d) for d in input_shape_chw))
        return deployed_onnx(model, shape, self.cfg.precision, blocks=self.blocks)

    def profile(self, arch_key: str, model: Subnet, input_shape_chw: Sequence[int]) -> LatencyResult:
        """Latency of ``model`` (identified by ``arch_key``) at ``input_shape_chw``."""
        hit = self.lookup(arch_key, input_shape_chw)
        if hit is not None:
            return hit
        result = measure_latency(self.export(model, input_shape_chw), input_shape_chw, self.cfg, self.references)
        return self.store(arch_key, input_shape_chw, result)
