"""Where the search's latency objective comes from: measured (here or on Dask workers) or predicted.

``hardware.latency: measured`` times every new architecture with ONNX Runtime (cached per hardware
fingerprint and measurement protocol); ``predicted:DEVICE.json`` fits a predictor on a dataset measured on the deployment
device and answers in microseconds. Both expose ``latency(arch, model, chw, mmacs) -> metrics``
and ``prefetch(items)`` (measure a whole population at once, where that runs in parallel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

from torch import nn

from ... import records as rec
from ...config import LatencyConfig
from ...errors import ConfigError
from ...hardware import LatencyCache, LatencyProfiler, LatencyResult
from ...hardware.fingerprint import HardwareFingerprint, fingerprint_of
from ...hardware.stitch import Subnet
from ...predictors.latency import LatencyPredictor, prediction_errors
from ...search_spaces import Arch, SearchSpace, arch_from_dict


class LatencySource(Protocol):
    parallel: bool  # whether prefetch measures a population at once (else it is never called)
    needs_models: bool  # whether prefetch's items must carry the subnets (recipes; else they carry None)

    def latency(self, arch: Arch, model: nn.Module, chw: Sequence[int], mmacs: float) -> dict[str, Any]:
        """The latency metrics of one architecture."""

    def prefetch(self, items: list[tuple[Arch, Subnet | None, tuple[int, ...]]]) -> None:
        """Make the latencies of ``items`` ready (a no-op where measuring is sequential anyway)."""

    def close(self) -> None:
        """Release what the source holds (a measuring process, a connection)."""


def latency_metrics(result: LatencyResult) -> dict[str, Any]:
    """The metrics a measured latency adds to an architecture's record."""
    out = {rec.LATENCY: result.median_ms, rec.LATENCY_P10: result.p10_ms, rec.LATENCY_SPREAD: result.spread}
    if result.ratio is not None:
        out.update({rec.LATENCY_RATIO: result.ratio, rec.LATENCY_REFERENCE: result.reference})
    return out


class MeasuredLatency:
    """Measure with ``profiler`` (cached); with a ``measurer`` (Dask) a population goes out at once."""

    needs_models = True

    def __init__(self, profiler: LatencyProfiler, measurer: Any = None) -> None:
        self.profiler, self.measurer = profiler, measurer
        self.parallel = measurer is not None

    def latency(self, arch: Arch, model: nn.Module, chw: Sequence[int], mmacs: float) -> dict[str, Any]:
        return latency_metrics(self.profiler.profile(arch.key(), model, chw))

    def prefetch(self, items: list[tuple[Arch, Subnet, tuple[int, ...]]]) -> None:
        from ...hardware.remote import measure_job

        todo = {a.key(): (a, m, chw) for a, m, chw in items if self.profiler.lookup(a.key(), chw) is None}
        if not todo:
            return
        cfg, refs = self.profiler.cfg, self.profiler.references
        jobs = [(self.profiler.export(m, chw), chw, cfg) for _, m, chw in todo.values()]
        for (key, (_, _, chw)), result in zip(todo.items(), self.measurer.map(measure_job, jobs, shared=refs)):
            self.profiler.store(key, chw, result)

    def close(self) -> None:
        if self.measurer is not None:
            self.measurer.close()


class PredictedLatency:
    """Latency from a predictor fitted on an on-device dataset (``predicted:DEVICE.json``); with a
    ``confidence``, also the latency each architecture stays under with that probability."""

    needs_models = False

    def __init__(
        self,
        predictor: LatencyPredictor,
        source: str,
        dataset: Any = None,
        confidence: float | None = None,
        digest: str | None = None,
    ) -> None:
        self.predictor, self.source, self.dataset, self.confidence = predictor, source, dataset, confidence
        self.digest = digest  # of the dataset file (and its prior's) as loaded: a run dir records it
        self.factor = None if confidence is None else predictor.bound_factor(confidence)  # refused here if too few
        self.parallel = False
        self.n_queries = 0

    def latency(self, arch: Arch, model: nn.Module, chw: Sequence[int], mmacs: float) -> dict[str, Any]:
        self.n_queries += 1
        ms = float(self.predictor.predict([arch], [mmacs])[0])
        out = {rec.LATENCY: ms, rec.LATENCY_UNCERTAINTY: ms * self.predictor.relative_error}
        if self.factor is not None:
            out[rec.LATENCY_BOUND] = ms * self.factor
        return out

    def prefetch(self, items: list[tuple[Arch, Subnet | None, tuple[int, ...]]]) -> None:
        return None

    def close(self) -> None:
        return None


def parse_latency_mode(text: str) -> tuple[str, Path | None]:
    """``measured`` or ``predicted:DEVICE.json`` -> (mode, dataset path)."""
    if text == "measured":
        return "measured", None
    if text.startswith("predicted:") and len(text) > len("predicted:"):
        return "predicted", Path(text.split(":", 1)[1])
    raise ConfigError(f"hardware.latency must be 'measured' or 'predicted:DEVICE.json', got '{text}'")


def build_latency_source(
    space: SearchSpace,
    supernet: nn.Module,
    cfg: LatencyConfig,
    mode: str,
    cache_path: Path | str,
    dask: str | None = None,
    dask_timeout: float | None = None,
    background: bool = False,
    num_classes: int | None = None,
    confidence: float | None = None,
) -> LatencySource:
    """The latency source a run's ``hardware`` settings ask for (see the module docstring); ``background``
    measures in a child process beside the accuracy work (needs ``num_classes``; ignored with ``dask``);
    ``confidence``: predicted latency also at that confidence (``hardware.latency_confidence``; measured
    latency has none: :func:`~shiftnas.pipeline.context.prepare` refuses it there)."""
    kind, dataset_path = parse_latency_mode(mode)
    if kind == "predicted":
        from ...predictors.latency import predictor_from_dataset
        from .latency_dataset import LatencyDataset

        dataset = LatencyDataset.load(dataset_path)
        digest = dataset.digest(dataset_path)
        predictor = predictor_from_dataset(space, dataset, prior=dataset.load_prior(dataset_path))
        return PredictedLatency(predictor, str(dataset_path), dataset, confidence, digest)
    measured = measured_latency(space, supernet, cfg, cache_path, dask, dask_timeout)
    if background and not dask:
        from .background_latency import BackgroundLatency

        if num_classes is None:
            raise ValueError("background measurement needs the supernet's number of classes")
        return BackgroundLatency(measured.profiler, space, supernet, num_classes)
    return measured


def measured_latency(
    space: SearchSpace,
    supernet: nn.Module,
    cfg: LatencyConfig,
    cache_path: Path | str,
    dask: str | None = None,
    dask_timeout: float | None = None,
) -> MeasuredLatency:
    """Measured latency with references from ``space``, here or on the Dask workers at ``dask``
    (no measurement awaited longer than ``dask_timeout`` seconds)."""
    from .latency_dataset import reference_models

    references = reference_models(space, supernet, cfg)  # before a Dask client exists that could be left open
    measurer = None
    fingerprint = fingerprint_of(cfg)
    if dask:
        from ...hardware.remote import DaskMeasurer

        measurer = DaskMeasurer(dask, task_timeout=dask_timeout)
        fingerprint = measurer.fingerprint(cfg)
    profiler = LatencyProfiler(cfg, cache=LatencyCache(cache_path), fingerprint=fingerprint, references=references)
    return MeasuredLatency(profiler, measurer)


def check_predictions(
    source: PredictedLatency,
    records: list[dict[str, Any]],
    space: SearchSpace,
    supernet: nn.Module,
    cfg: LatencyConfig,
    cache_path: Path | str,
    dask: str | None = None,
    dask_timeout: float | None = None,
) -> dict[str, Any]:
    """Re-measure ``records`` (the final front) when this run can reach the profiled device.

    Adds ``latency_measured_ms`` to each record's metrics and returns predicted-vs-measured errors (with a
    confidence, how many measured within their ``latency_bound_ms``); on another device nothing is measured
    and the reason is returned instead. The front is measured as the dataset was (its references, blocks,
    runs and sessions, whatever this run's own settings) and put on the dataset's scale (the ratio to a
    reference times that reference's typical latency in the dataset, as the predictor was fitted), so
    that how fast the machine happens to be now does not count as prediction error.
    """
    cfg = source.dataset.measured_with(cfg)
    here = dask_fingerprint(cfg, dask, dask_timeout) if dask else fingerprint_of(cfg)
    if here.key() != source.dataset.fingerprint_key:
        return {
            "checked": False,
            "reason": f"the latency dataset was measured on {source.dataset.fingerprint}, "
            f"this run measures on {here.as_dict()}",
        }
    measured = measured_latency(space, supernet, cfg, cache_path, dask, dask_timeout)
    try:
        archs = [arch_from_dict(r["arch"]) for r in records]
        items = [(a, space.extract(supernet, a), tuple(space.input_size(a))) for a in archs]
        if measured.parallel:
            measured.prefetch(items)
        typical = source.dataset.typical_reference_ms()
        on_scale = 0  # members read against a reference of the dataset (the rest: raw medians, e.g. from a
        for record, (arch, model, chw) in zip(records, items):  # reference the dataset never had as nearest)
            m = measured.latency(arch, model, chw, 0.0)
            on_scale += m.get(rec.LATENCY_REFERENCE) in typical
            as_measured = {
                "median_ms": m[rec.LATENCY],
                "ratio": m.get(rec.LATENCY_RATIO),
                "reference": m.get(rec.LATENCY_REFERENCE),
            }
            record["metrics"][rec.LATENCY_MEASURED] = source.dataset.on_scale(as_measured, typical)
    finally:  # the Dask client, the cache's SQLite connection
        try:
            measured.close()
        finally:
            measured.profiler.cache.close()
    pred = [r["metrics"][rec.LATENCY] for r in records]
    true = [r["metrics"][rec.LATENCY_MEASURED] for r in records]
    report: dict[str, Any] = {"checked": True, "n": len(records), "predictor": source.predictor.kind}
    if typical:  # a dataset with references: how many re-measurements could be put on its scale
        report["on_dataset_scale"] = on_scale
    if len(records) >= 2:
        report.update(prediction_errors(true, pred))
    else:
        report["mape"] = float(100 * abs(pred[0] - true[0]) / true[0]) if records else None
    if source.confidence is not None and records:  # how often the device kept to the bounds the search used
        bounds = [r["metrics"][rec.LATENCY_BOUND] for r in records]
        report["confidence"] = source.confidence
        report["within_bound"] = sum(t <= b for t, b in zip(true, bounds))
    return report


def dask_fingerprint(cfg: LatencyConfig, address: str, timeout: float | None = None) -> HardwareFingerprint:
    """The hardware fingerprint of the Dask latency workers at ``address``."""
    from ...hardware.remote import DaskMeasurer

    with DaskMeasurer(address, task_timeout=timeout) as measurer:
        return measurer.fingerprint(cfg)
