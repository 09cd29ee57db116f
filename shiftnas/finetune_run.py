"""``shiftnas finetune RUN --pick front|knee|KEY``: two-phase fine-tuning of a finished run's subnets.

Each subnet is extracted from the weights that scored the front, fine-tuned (phase 1 finds the
epochs on train/val, phase 2 retrains on train+val), exported to ONNX with parity checked, and
reported with test accuracy before/after, params, MACs and latency (the run's value; measured
here with the run's ONNX Runtime settings when the run had no latency objective). ``<run>/finetune.json`` is
rewritten after every subnet, so an interrupted command resumes with the next one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from .engine.finetune import FinetuneRecipe, finetune
from .export_run import load_run, run_front, select_records
from .hardware import LatencyProfiler, assert_parity, count_macs, count_params, export_onnx
from .io import atomic_write_json
from .search_spaces import Arch

RESULTS = "finetune.json"


def finetune_from_run(run_dir: str | Path, how: str, recipe: FinetuneRecipe, seed: int = 0,
                      console: Console | None = None) -> list[dict[str, Any]]:
    """Fine-tune the records ``how`` selects; returns (and writes) one result per subnet."""
    from .pipeline import latency_config, progress_bar

    run_dir = Path(run_dir)
    console = console or Console(stderr=True)
    cfg, front = run_front(run_dir)
    records = select_records(front, how, cfg, run_dir, allow_front=True)
    path = run_dir / RESULTS
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("recipe") == recipe.__dict__ and saved.get("seed") == seed:
            done = {r["key"]: r for r in saved["subnets"]}
    todo = [r for r in records if r["key"] not in done]
    if todo:
        torch.set_num_threads(cfg.threads)
        ctx, evaluator = load_run(run_dir, cfg, int(todo[0].get("supernet_version", 0)))
        for record in todo:
            arch = Arch.from_dict(record["arch"])
            shape = tuple(ctx.space.input_size(arch))
            with progress_bar(f"fine-tuning {record['key'][:32]}", recipe.epochs, console) as update:
                res = finetune(lambda: evaluator.subnet(arch), arch.resolution, ctx.data, recipe, seed,
                               progress=lambda phase, epoch, info: update(epoch, info=phase))
            model = res.pop("model")
            onnx_path = run_dir / f"finetuned_{record['key']}.onnx"
            export_onnx(model, (1, *shape), onnx_path)
            parity = assert_parity(model, onnx_path, (1, *shape))
            torch.save({"arch": record["arch"], "net_config": model.config, "state_dict": model.state_dict()},
                       onnx_path.with_suffix(".pt"))
            latency, source = record["metrics"].get("latency_ms"), "run"
            if latency is None:
                latency, source = LatencyProfiler(latency_config(cfg)).profile(record["key"], model, shape).median_ms, \
                    "measured by finetune"
            done[record["key"]] = {"key": record["key"], "arch": record["arch"], **res,
                                   "mparams": count_params(model) / 1e6, "mmacs": count_macs(model, shape) / 1e6,
                                   "latency_ms": latency, "latency_source": source, "onnx": str(onnx_path),
                                   "parity_max_abs_diff": parity.max_abs_diff}
            atomic_write_json(path, {"recipe": recipe.__dict__, "seed": seed, "subnets": list(done.values())})
    results = [done[r["key"]] for r in records]
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():  # the run's report gains the fine-tuned results
        summary = json.loads(summary_path.read_text())
        summary["finetuned"] = {r["key"]: {k: r[k] for k in ("test_accuracy_before", "test_accuracy_after",
                                                            "best_epoch", "mparams", "mmacs", "latency_ms", "onnx")}
                                for r in done.values()}
        atomic_write_json(summary_path, summary)
    Console().print(finetune_table(results))
    return results


def finetune_table(results: list[dict[str, Any]]) -> Table:
    """Test accuracy before/after fine-tuning, epochs, params, MACs, latency."""
    table = Table(title="fine-tuned subnets (test accuracy read once, after training)")
    for col in ("subnet", "test acc before", "test acc after", "epochs", "params M", "MMACs", "latency ms"):
        table.add_column(col, justify="right" if col != "subnet" else "left")
    for r in results:
        lat = r.get("latency_ms")
        table.add_row(r["key"], f"{r['test_accuracy_before']:.2f}", f"{r['test_accuracy_after']:.2f}",
                      str(r["best_epoch"]), f"{r['mparams']:.3f}", f"{r['mmacs']:.2f}",
                      f"{lat:.3f}" if lat is not None else "-")
    return table
