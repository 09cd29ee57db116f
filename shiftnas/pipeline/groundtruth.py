"""``shiftnas groundtruth`` (build a table, or report its reliability) and ``shiftnas rank``."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from ..config import RunConfig, StandaloneRecipe, load_config
from ..engine.checkpoint import load_supernet_weights, read_checkpoint
from ..engine.groundtruth.ranking import rank_supernet
from ..engine.groundtruth.reliability import reliability_report, report_markdown
from ..engine.groundtruth.table import (
    GroundTruthTable,
    best_architectures,
    build_groundtruth,
    data_overrides,
    sample_architectures,
    sample_stratified,
)
from ..engine.training.landmarks import landmark_keys
from ..errors import ShiftnasError
from ..io import atomic_write_json, atomic_write_text
from ..report.table import metrics_table
from .context import build_space, load_data
from .progress import progress_bar, stderr_console

SAMPLINGS = ("stratified", "uniform")


def build_table(
    cfg: RunConfig,
    out: Path,
    recipe: StandaloneRecipe,
    seeds: list[int],
    samples: int,
    sampling: str = "stratified",
    best: int | None = None,
    sample_seed: int = 0,
    workers: int = 1,
    dask: str | None = None,
) -> GroundTruthTable:
    """Train the sampled (or ``best``) architectures with ``recipe`` and ``seeds`` into the table at ``out``
    (with ``dask``, on the ``train`` workers of that scheduler)."""
    if sampling not in SAMPLINGS:
        raise ShiftnasError(f"--sampling must be one of {', '.join(SAMPLINGS)}, got '{sampling}'")
    if not seeds:
        raise ShiftnasError("--seeds needs at least one seed")
    if out.is_dir():
        raise ShiftnasError(f"ground-truth table {out} is a folder; give a file, e.g. {out / 'table.json'}")
    torch.set_num_threads(cfg.threads)
    space = build_space(cfg)
    data = load_data(cfg)
    if best is not None:
        if not out.is_file():
            raise ShiftnasError(f"--best needs an existing table: {out} not found")
        archs = best_architectures(GroundTruthTable(out), best)
    elif sampling == "stratified":
        archs = sample_stratified(space, samples, sample_seed, num_classes=data.num_classes)
    else:
        archs = sample_architectures(space, samples, sample_seed)
    with ExitStack() as stack:
        pool = None
        if dask:
            from ..cluster.pool import training_pool

            pool = stack.enter_context(training_pool(dask, cfg.hardware))
            stderr_console().print(f"training on {pool.n_workers} Dask '{pool.resource}' worker(s) at {dask}")
        update = stack.enter_context(progress_bar("stand-alone training", len(archs) * len(seeds)))
        table = build_groundtruth(
            space,
            data,
            archs,
            recipe,
            seeds,
            out,
            workers=workers,
            pool=pool,
            progress=lambda done, total, rec: update(done, info=rec["key"][:40]),
        )
    csv_path = table.write_csv(out.with_suffix(".csv"))
    stderr_console().print(f"{len(table.rows())} architectures in {out} (summary: {csv_path})")
    return table


def write_reliability(path: Path) -> str:
    """The reliability of the table at ``path`` as markdown, also written to ``PATH.reliability.{json,md}``."""
    if not path.is_file():
        raise ShiftnasError(f"ground-truth table not found: {path}")
    table = GroundTruthTable(path)
    metrics = ["test_accuracy"] + (["test_loss"] if all("test_loss" in r for r in table.records) else [])
    reports = [reliability_report(table, m) for m in metrics]
    text = report_markdown(table, reports)
    atomic_write_json(path.with_suffix(".reliability.json"), {"table": path.name, "reports": reports})
    atomic_write_text(path.with_suffix(".reliability.md"), text)
    return text


def space_overrides(checkpoint: dict) -> list[str]:
    """``space.*`` overrides that rebuild the space a shiftnas checkpoint was trained in."""
    described = checkpoint.get("space") or {}
    out = [f"space.name={described['name']}"] if described.get("name") else []
    if described.get("resolutions"):
        out.append(f"space.resolutions={described['resolutions']}")
    return out


def rank_against_table(supernet: str, table_path: Path, out: Path | None, overrides: list[str]) -> dict[str, Any]:
    """How well the supernet ranks the table's architectures (landmarks it was trained with left out)."""
    if not table_path.is_file():
        raise ShiftnasError(f"ground-truth table not found: {table_path}")
    table = GroundTruthTable(table_path)
    state = read_checkpoint(supernet)
    cfg = load_config(None, data_overrides(table.meta) + space_overrides(state) + overrides)
    torch.set_num_threads(cfg.threads)
    space = build_space(cfg)
    data = load_data(cfg)
    net = space.build_supernet(data.num_classes)
    load_supernet_weights(net, state["state_dict"])
    landmarks = landmark_keys(state.get("training") or {})
    result = rank_supernet(space, net.eval(), data, table, cfg.eval, exclude=landmarks)  # landmarks are not scored
    Console(markup=False).print(
        metrics_table(f"{Path(supernet).name} vs {table_path.name}: {result['n']} architectures", result["report"])
    )
    if out:
        atomic_write_json(out, result)
    return result
