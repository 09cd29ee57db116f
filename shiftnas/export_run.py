"""``shiftnas export``: export any subnet of a finished run's Pareto front to ONNX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import load_config
from .engine.checkpoint import load_supernet_weights, read_checkpoint
from .engine.evaluation import SubnetEvaluator
from .engine.objectives import resolve_objectives
from .errors import ShiftnasError
from .report import PICKS, pick


def export_from_run(run_dir: str | Path, how: str = "knee", out: str | Path | None = None) -> dict[str, Any]:
    """Pick ``how`` (knee | max-acc | min-latency | trade-off | an architecture key) from ``run_dir`` and export it."""
    from . import pipeline

    run_dir = Path(run_dir)
    for name in ("config.yaml", "pareto.json"):
        if not (run_dir / name).is_file():
            raise ShiftnasError(f"{run_dir} is not a finished run: {name} is missing")
    cfg = load_config(run_dir / "config.yaml")
    cfg.out = str(run_dir)
    if not cfg.checkpoint and not (run_dir / pipeline.SUPERNET_FILE).is_file():
        raise ShiftnasError(f"no supernet in {run_dir} ({pipeline.SUPERNET_FILE} is missing)")
    front = json.loads((run_dir / "pareto.json").read_text())["front"]
    if how in PICKS:
        record = pick(front, how, resolve_objectives(cfg.search.objectives))
    else:
        matches = [r for r in front if r["key"] == how]
        if not matches:
            raise ShiftnasError(f"'{how}' is neither a pick ({', '.join(PICKS)}) nor a key in {run_dir}/pareto.csv")
        record = matches[0]
    ctx = pipeline.prepare(cfg, quiet=True)
    pipeline.train_stage(ctx)
    version = int(record.get("supernet_version", 0))
    if version:  # the front was scored by a supernet shifted during the search: export from those weights
        shifted = run_dir / f"supernet_v{version}.pt"
        if not shifted.is_file():
            raise ShiftnasError(f"{shifted.name} is missing (the run kept no shifted checkpoints)")
        load_supernet_weights(ctx.supernet, read_checkpoint(shifted)["state_dict"])
    evaluator = SubnetEvaluator(ctx.space, ctx.supernet, ctx.data, cfg.eval, seed=cfg.seed)
    path = Path(out) if out else run_dir / f"subnet_{how if how in PICKS else record['key']}.onnx"
    return pipeline.export_subnet(ctx, evaluator, record, path)
