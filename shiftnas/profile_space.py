"""``shiftnas profile --space SPACE --samples N --out DEVICE.json``: a latency dataset of this device."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .engine.latency_dataset import build_latency_dataset
from .errors import ConfigError
from .hardware import LatencyConfig
from .predictors.latency import predictor_from_dataset
from .search_spaces import get_space


def profile_space(space_name: str, out: Path, samples: int, cfg: LatencyConfig, resolutions: str | None = None,
                  seed: int = 0, dask: str | None = None, console: Console | None = None):
    """Measure ``samples`` architectures of a space (resumable), then cross-validate the latency predictors."""
    from .pipeline import progress_bar

    console = console or Console(stderr=True)
    try:
        res = [int(r) for r in resolutions.split(",") if r.strip()] if resolutions else None
    except ValueError:
        raise ConfigError(f"--resolutions must be comma-separated integers, got '{resolutions}'") from None
    space = get_space(space_name, **({"resolutions": res} if res else {}))
    measure, fingerprint, chunk, measurer = None, cfg.fingerprint(), 1, None
    if dask:
        from .hardware.remote import DaskMeasurer, measure_job

        measurer = DaskMeasurer(dask)
        fingerprint = measurer.fingerprint(cfg)
        chunk = 2 * measurer.n_workers
        measure = lambda jobs, refs: measurer.map(measure_job, jobs, shared=refs)  # noqa: E731
    bar = ExitStack()  # opened on the first progress report, after the settings were checked
    update = None

    def progress(done: int, total: int, key: str) -> None:
        nonlocal update
        if update is None:
            update = bar.enter_context(progress_bar(
                f"profiling {space.name} on {fingerprint.cpu_model} ({cfg.provider})", total, console))
        update(done, info=key[:40])

    try:
        with bar:
            dataset = build_latency_dataset(space, out, samples, cfg, fingerprint, seed=seed,
                                            **({"measure": measure} if measure else {}), chunk=chunk,
                                            progress=progress)
    finally:
        if measurer is not None:
            measurer.close()
    console.print(f"{len(dataset.records)} architectures in {out}")
    if len(dataset.records) >= 10:
        predictor = predictor_from_dataset(space, dataset)
        table = Table(title=f"latency predictors, {len(dataset.records)} architectures, 5-fold cross-validation")
        for col in ("predictor", "Kendall tau", "Spearman rho", "MAPE %", "within 10 %"):
            table.add_column(col, justify="right")
        for kind, r in predictor.cv.items():
            mark = " (chosen)" if kind == predictor.kind else ""
            table.add_row(kind + mark, f"{r['kendall_tau']:.3f}±{r['kendall_tau_std']:.3f}",
                          f"{r['spearman_rho']:.3f}", f"{r['mape']:.1f}", f"{r['within_10pct']:.0f}%")
        Console().print(table)
    console.print(f"use it in a search: shiftnas run --set hardware.latency=predicted:{out}")
    return dataset
