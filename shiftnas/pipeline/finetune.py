"""``shiftnas finetune RUN --pick front|knee|KEY``: two-phase fine-tuning of a finished run's subnets.

Each subnet is extracted from the weights that scored the front, fine-tuned (phase 1 finds the
epochs on train/val, phase 2 retrains on train+val), exported to ONNX with parity checked, and
reported with test accuracy before/after, params, MACs and latency (the run's value; measured
here with the run's ONNX Runtime settings when the run had no latency objective). ``<run>/finetune.json`` is
rewritten after every subnet, so an interrupted command resumes with the next one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from .. import records as rec
from ..config import FinetuneRecipe, RunConfig
from ..engine.training.finetune import finetune, finetune_job
from ..hardware import LatencyProfiler, assert_parity, count_macs, count_params, export_onnx
from ..report.table import finetune_table
from ..search_spaces import arch_from_dict
from .context import FinishedRun, latency_config, load_finished_run
from .export import select_records
from .progress import progress_bar, stderr_console
from .report import write_report
from .rundir import RunDir


def finetune_from_run(
    run_dir: str | Path,
    how: str,
    recipe: FinetuneRecipe,
    seed: int = 0,
    console: Console | None = None,
    dask: str | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune the records ``how`` selects; returns (and writes) one result per subnet.

    With ``dask`` (a scheduler address) every subnet is one job on its ``train`` workers (one torch
    thread each); exporting, the parity check and latency stay here, and results are saved as they
    come back, so a lost worker loses only its subnet (the scheduler re-runs it elsewhere)."""
    rundir = RunDir(run_dir)
    console = console or stderr_console()
    front = rundir.front()
    cfg = rundir.load_config()
    records = select_records(front, how, cfg, rundir, allow_front=True)
    path = rundir.finetune_results
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        saved = rundir.read_json(path)
        if saved.get("recipe") == recipe.__dict__ and saved.get("seed") == seed:
            done = {r["key"]: r for r in saved["subnets"]}
    todo = [r for r in records if r["key"] not in done]
    if todo:
        run = load_finished_run(rundir, int(todo[0].get("supernet_version", 0)), cfg)
        for record, res in finetune_records(run, todo, recipe, seed, console, dask):
            done[record["key"]] = _exported(
                rundir, cfg, record, res, run.space.input_size(arch_from_dict(record["arch"]))
            )
            rundir.write_json(path, {"recipe": recipe.__dict__, "seed": seed, "subnets": list(done.values())})
    results = [done[r["key"]] for r in records]
    summary_path = rundir.summary
    if summary_path.is_file():  # the run's report gains the fine-tuned results
        summary = rundir.read_json(summary_path)
        summary["finetuned"] = {
            r["key"]: {
                k: r[k]
                for k in (
                    "test_accuracy_before",
                    "test_accuracy_after",
                    "best_epoch",
                    rec.MPARAMS,
                    rec.MMACS,
                    rec.LATENCY,
                    "onnx",
                )
            }
            for r in done.values()
        }
        rundir.write_json(summary_path, summary)
    write_report(rundir)
    Console(markup=False).print(finetune_table(results))
    return results


def finetune_records(
    run: FinishedRun,
    todo: list[dict[str, Any]],
    recipe: FinetuneRecipe,
    seed: int,
    console: Console,
    dask: str | None,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(record, fine-tuning result) for every record of ``todo``: here, one after the other, or as
    the Dask ``train`` workers finish them."""
    if dask is None:
        for record in todo:
            arch = arch_from_dict(record["arch"])
            with progress_bar(f"fine-tuning {record['key'][:32]}", recipe.epochs, console) as update:
                yield (
                    record,
                    finetune(
                        lambda: run.evaluator.subnet(arch),
                        arch.resolution,
                        run.data,
                        recipe,
                        seed,
                        progress=lambda phase, epoch, info: update(epoch, info=phase),
                    ),
                )
        return
    from ..cluster.pool import training_pool

    with training_pool(dask, run.cfg.hardware) as pool:
        console.print(f"fine-tuning on {pool.n_workers} Dask '{pool.resource}' worker(s) at {dask}")
        shared = pool.share((replace(run.data, holdout=None), recipe))
        jobs = {}
        for record in todo:
            arch = arch_from_dict(record["arch"])
            jobs[pool.submit(finetune_job, run.evaluator.subnet(arch), arch.resolution, seed, shared)] = record
        with progress_bar("fine-tuning", len(jobs), console) as update:
            for i, future in enumerate(pool.as_completed(list(jobs))):
                update(i + 1, info=jobs[future]["key"][:32])
                yield jobs[future], future.result()


def _exported(
    rundir: RunDir, cfg: RunConfig, record: dict[str, Any], res: dict[str, Any], input_size: Sequence[int]
) -> dict[str, Any]:
    """Export the fine-tuned model of ``res`` to ONNX (parity checked) and its weights; the subnet's result."""
    model = res.pop("model")
    shape = tuple(input_size)
    onnx_path = rundir.finetuned(record["key"])
    export_onnx(model, (1, *shape), onnx_path)
    parity = assert_parity(model, onnx_path, (1, *shape))
    torch.save(
        {"arch": record["arch"], "net_config": model.config, "state_dict": model.state_dict()},
        onnx_path.with_suffix(".pt"),
    )
    latency, source = record["metrics"].get(rec.LATENCY), "run"
    if latency is None:
        latency, source = (
            LatencyProfiler(latency_config(cfg)).profile(record["key"], model, shape).median_ms,
            "measured by finetune",
        )
    return {
        "key": record["key"],
        "arch": record["arch"],
        **res,
        rec.MPARAMS: count_params(model) / 1e6,
        rec.MMACS: count_macs(model, shape) / 1e6,
        rec.LATENCY: latency,
        "latency_source": source,
        "onnx": str(onnx_path),
        "parity_max_abs_diff": parity.max_abs_diff,
    }
