"""``shiftnas profile``: the latency of one ONNX model (with ONNX Runtime's per-node profile), or a
latency dataset of this device over a search space (``--space SPACE --samples N --out DEVICE.json``)."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import onnx
from rich.console import Console

from ..config import LatencyConfig
from ..engine.evaluation.latency_dataset import build_latency_dataset
from ..errors import ConfigError, ShiftnasError
from ..hardware import measure_latency
from ..hardware.fingerprint import fingerprint_of
from ..hardware.node_profile import profile_nodes
from ..hardware.quantize import quantize_int8, random_calibration
from ..predictors.latency import MIN_SAMPLES, LatencyPredictor, predictor_from_dataset
from ..report.profile import node_profile_table, plot_node_profile, top_nodes_table
from ..report.table import latency_table, predictor_cv_table
from ..search_spaces import get_space
from ..search_spaces.table import is_table
from .progress import progress_bar, stderr_console


def profile_space(
    space_name: str,
    out: Path,
    samples: int,
    cfg: LatencyConfig,
    resolutions: str | None = None,
    seed: int = 0,
    dask: str | None = None,
    console: Console | None = None,
    prior: Path | None = None,
    dask_timeout: float = 600.0,
):
    """Measure ``samples`` architectures of a space (resumable), then cross-validate the latency predictors
    (with ``prior``, another device's dataset, the transfer from it too; remembered in the dataset).

    With ``dask``, each measurement runs on a ``latency`` worker and must finish within ``dask_timeout`` s
    (a pool whose workers all left fails with a one-line error instead of hanging)."""
    console = console or stderr_console()
    try:
        res = [int(r) for r in resolutions.split(",") if r.strip()] if resolutions else None
    except ValueError:
        raise ConfigError(f"--resolutions must be comma-separated integers, got '{resolutions}'") from None
    if is_table(space_name):
        raise ShiftnasError(f"{space_name} is a table space: there is no network to export and profile")
    space = get_space(space_name, **({"resolutions": res} if res else {}))
    if prior is not None:  # checked before anything is measured
        from ..engine.evaluation.latency_dataset import LatencyDataset

        if LatencyDataset.load(prior).space != space.describe():
            raise ShiftnasError(f"--prior {prior} was measured on another space than {space.describe()}")
    measure, fingerprint, chunk, measurer = None, fingerprint_of(cfg), 1, None
    if dask:
        from ..hardware.remote import DaskMeasurer, measure_job

        measurer = DaskMeasurer(dask, task_timeout=dask_timeout)
        fingerprint = measurer.fingerprint(cfg)
        chunk = 2 * measurer.n_workers
        measure = lambda jobs, refs: measurer.map(measure_job, jobs, shared=refs)  # noqa: E731
    bar = ExitStack()  # opened on the first progress report, after the settings were checked
    update = None

    def progress(done: int, total: int, key: str) -> None:
        nonlocal update
        if update is None:
            update = bar.enter_context(
                progress_bar(f"profiling {space.name} on {fingerprint.cpu_model} ({cfg.provider})", total, console)
            )
        update(done, info=key[:40])

    try:
        with bar:
            dataset = build_latency_dataset(
                space,
                out,
                samples,
                cfg,
                fingerprint,
                seed=seed,
                **({"measure": measure} if measure else {}),
                chunk=chunk,
                progress=progress,
            )
    finally:
        if measurer is not None:
            measurer.close()
    if prior is not None:  # remembered relative to the dataset, so the two files move together
        relative = os.path.relpath(Path(prior).resolve(), Path(out).resolve().parent)
        if dataset.prior != relative:
            dataset.prior = relative
            dataset.save(out)
    console.print(f"{len(dataset.records)} architectures in {out}")
    if len(dataset.records) >= MIN_SAMPLES:
        predictor = predictor_from_dataset(space, dataset, prior=dataset.load_prior(out))
        Console(markup=False).print(predictor_cv_table(predictor.cv, predictor.kind, len(dataset.records)))
        console.print(bound_factors_line(predictor))
    console.print(f"use it in a search: shiftnas run --set hardware.latency=predicted:{out}")
    return dataset


def bound_factors_line(predictor: LatencyPredictor, confidences: tuple[float, ...] = (0.8, 0.9, 0.95)) -> str:
    """What ``hardware.latency_confidence`` would cost: the factor on a prediction at each confidence that
    this many profiled architectures support."""
    factors = []
    for c in confidences:
        try:
            factors.append(f"{c:g}: x{predictor.bound_factor(c):.3f}")
        except ShiftnasError:
            factors.append(f"{c:g}: needs more samples")
    return "latency at a confidence (hardware.latency_confidence), the prediction times " + ", ".join(factors)


def onnx_input_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    """Shape (C, H, W) of the model's first input; the batch dimension is dropped."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != 4 or any(s is None for s in shape[1:]):
        raise ShiftnasError(f"expected an image model with input N x C x H x W and fixed C/H/W, got {shape}")
    return tuple(shape[1:])


def profile_onnx_file(
    path: str | Path,
    cfg: LatencyConfig,
    nodes: bool = True,
    plot: str | Path | None = None,
    console: Console | None = None,
):
    """Measure and print the latency of the ONNX model at ``path``, then (``nodes``) where its time goes.

    The per-node profile is taken in a separate session (ONNX Runtime's profiler slows runs down by
    ~7.5 %), printed as tables and drawn as a bar chart at ``plot`` (default ``<model>.profile.png``).
    Returns ``(LatencyResult, NodeProfile | None)``.
    """
    path = Path(path)
    console = console or Console(markup=False)
    if not path.is_file():
        raise ShiftnasError(f"ONNX model not found: {path}")
    try:
        data = path.read_bytes()
        model = onnx.load_from_string(data)
    except Exception as exc:
        raise ShiftnasError(
            f"{path} is not a readable ONNX model: {str(exc).splitlines()[0] if str(exc) else exc}"
        ) from None
    shape = onnx_input_shape(model)
    if cfg.precision == "int8":  # latency of its INT8 quantization (calibrated on seeded random images)
        data = quantize_int8(data, random_calibration(shape))
    result = measure_latency(data, shape, cfg)
    console.print(
        latency_table(
            f"{path.name}: input {cfg.batch_size}x{'x'.join(map(str, shape))}, {cfg.precision}, {cfg.provider}, "
            f"{cfg.intra_threads} thread(s)",
            result.median_ms,
            result.p10_ms,
            result.p90_ms,
            result.spread,
            result.n_runs,
        )
    )
    profile = None
    if nodes:
        profile = profile_nodes(data, shape, cfg, runs=max(cfg.runs, 10))
        console.print(node_profile_table(profile))
        console.print(top_nodes_table(profile, top=10))
        png = plot_node_profile(profile, plot or path.with_suffix(".profile.png"), title=path.name)
        console.print(f"per-node profile chart: {png}")
    return result, profile
