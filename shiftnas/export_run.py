"""``shiftnas export``: export any subnet of a finished run's Pareto front to ONNX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import RunConfig, load_config
from .engine.checkpoint import load_supernet_weights, read_checkpoint
from .engine.evaluation import SubnetEvaluator
from .engine.objectives import resolve_objectives
from .errors import ShiftnasError
from .report import PICKS, pick


def run_front(run_dir: Path) -> tuple[RunConfig, list[dict[str, Any]]]:
    """The saved config and Pareto front of a finished run (one-line errors if it is not one)."""
    from . import pipeline

    for name in ("config.yaml", "pareto.json"):
        if not (run_dir / name).is_file():
            raise ShiftnasError(f"{run_dir} is not a finished run: {name} is missing")
    cfg = load_config(run_dir / "config.yaml")
    cfg.out = str(run_dir)
    if not cfg.checkpoint and not (run_dir / pipeline.SUPERNET_FILE).is_file():
        raise ShiftnasError(f"no supernet in {run_dir} ({pipeline.SUPERNET_FILE} is missing)")
    return cfg, json.loads((run_dir / "pareto.json").read_text())["front"]


def select_records(front: list[dict[str, Any]], how: str, cfg: RunConfig, run_dir: Path,
                   allow_front: bool = False) -> list[dict[str, Any]]:
    """``front`` (all of it), a pick (knee, max-acc, ...) or an architecture key of ``pareto.csv``."""
    if allow_front and how == "front":
        return list(front)
    if how in PICKS:
        return [pick(front, how, resolve_objectives(cfg.search.objectives))]
    matches = [r for r in front if r["key"] == how]
    if not matches:
        choices = ("front, " if allow_front else "") + ", ".join(PICKS)
        raise ShiftnasError(f"'{how}' is neither {choices} nor a key in {run_dir}/pareto.csv")
    return matches[:1]


def load_run(run_dir: Path, cfg: RunConfig, version: int):
    """The run's context with the supernet weights that scored version ``version`` of the front."""
    from . import pipeline

    ctx = pipeline.prepare(cfg, quiet=True)
    pipeline.train_stage(ctx)
    if version:  # the front was scored by a supernet changed during the search: use those weights
        name = "nat_supernet.pt" if cfg.search.mode == "nat" else f"supernet_v{version}.pt"
        changed = run_dir / name
        if not changed.is_file():
            raise ShiftnasError(f"{name} is missing (the run kept no checkpoint of the weights that scored its front)")
        load_supernet_weights(ctx.supernet, read_checkpoint(changed)["state_dict"])
    return ctx, SubnetEvaluator(ctx.space, ctx.supernet, ctx.data, cfg.eval, seed=cfg.seed)


def export_from_run(run_dir: str | Path, how: str = "knee", out: str | Path | None = None) -> dict[str, Any]:
    """Pick ``how`` (knee | max-acc | min-latency | trade-off | an architecture key) from ``run_dir`` and export it."""
    from . import pipeline

    run_dir = Path(run_dir)
    cfg, front = run_front(run_dir)
    record = select_records(front, how, cfg, run_dir)[0]
    ctx, evaluator = load_run(run_dir, cfg, int(record.get("supernet_version", 0)))
    path = Path(out) if out else run_dir / f"subnet_{how if how in PICKS else record['key']}.onnx"
    return pipeline.export_subnet(ctx, evaluator, record, path)
