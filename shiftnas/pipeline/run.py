"""One run, end to end: config -> supernet (train or load) -> search -> front, pick, export.

``run(cfg)`` is what ``shiftnas run`` (and ``make run``) calls; the stages are separate functions
so ``shiftnas train`` / ``search`` reuse them. Everything a run produces lives in its
:class:`~shiftnas.pipeline.rundir.RunDir`; every file is written atomically, training checkpoints
every epoch and the search archive is append-only, so re-running the same command after a crash
or Ctrl-C resumes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from rich.console import Console

from .. import records
from ..config import RunConfig
from ..engine.checkpoint import load_supernet_weights
from ..engine.evaluation.latency import PredictedLatency, check_predictions
from ..engine.evaluation.metrics import ArchitectureMetrics
from ..engine.evaluation.objectives import Constraint
from ..engine.evaluation.subnet import SubnetEvaluator, accuracy
from ..engine.search import SEARCHERS, SearchProblem, SearchResult
from ..engine.search.archive import Archive
from ..engine.search.shifting import make_shift_strategy
from ..engine.tensors import resize
from ..engine.training.distributed import Ranks
from ..engine.training.supernet import finished_training, train_supernet, training_identity
from ..errors import ShiftnasError
from ..hardware import assert_parity, export_onnx
from ..hardware.quantize import onnx_accuracy
from ..io import atomic_write_bytes
from ..report import front_table, pick, plot_front, plot_hypervolume, write_front
from ..report.table import latency_check_line
from ..search_spaces import SearchSpace, arch_from_dict
from ..search_spaces.table import is_table
from .context import (
    RunContext,
    TableContext,
    latency_config,
    make_landmark_growth,
    prepare,
    prepare_table,
    write_manifest,
)
from .progress import progress_bar
from .report import write_report
from .rundir import RunDir
from .tracking import Tracker, step_metrics, tracking


def train_under_torchrun(ctx: RunContext, identity: dict) -> dict:
    """Train the supernet of this run as ``cfg.train.processes`` processes (``shiftnas train`` under
    ``torchrun`` on the run directory's config; resumes like any training); returns the finished checkpoint."""
    from .launch import torchrun

    cfg = ctx.cfg
    arguments = ["train", "--config", str(ctx.rundir.config), "--out", str(ctx.rundir.path)]
    try:
        torchrun(cfg.train.processes, cfg.threads, arguments)
    finally:
        write_manifest(ctx)  # the ranks wrote theirs (`shiftnas train`); the run's is this command
    done = finished_training(ctx.rundir.supernet, identity)
    if done is None:
        raise ShiftnasError(f"training under torchrun ended without a finished checkpoint of this run in {ctx.rundir}")
    return done


def train_stage(ctx: RunContext, ranks: Ranks = Ranks()) -> None:
    """Train the supernet (resuming ``supernet.pt``), unless ``cfg.checkpoint`` gave its weights;
    ``ranks``: this process's share of a ``torchrun`` training (rank 0 writes)."""
    cfg = ctx.cfg
    if cfg.checkpoint:
        return  # loaded by prepare
    path, regularizer = ctx.rundir.supernet, ctx.regularizer
    identity = training_identity(ctx.space, ctx.data, cfg.train, cfg.seed, regularizer)
    done = finished_training(path, identity)
    if done is None and cfg.train.processes > 1 and ranks.world == 1:
        done = train_under_torchrun(ctx, identity)
    elif done is not None and not ctx.quiet:
        ctx.console.print(f"supernet already trained: {path}")
    if done is not None:
        load_supernet_weights(ctx.supernet, done["state_dict"])
        ctx.supernet.eval()
        if regularizer is not None:
            regularizer.load_rounds(done["training"].get("landmark_rounds", []))
            write_landmarks(ctx)
        return
    t0 = time.time()
    with progress_bar("training supernet", 1, ctx.console, ctx.quiet) as update:

        def report(step: int, total: int, loss: float) -> None:
            update(step / total, info=f"step {step}/{total} loss {loss:.3f}")

        history = train_supernet(
            ctx.space,
            ctx.supernet,
            ctx.data,
            cfg.train,
            path,
            seed=cfg.seed,
            progress=report,
            regularizer=regularizer,
            after_epoch=make_landmark_growth(ctx),
            ranks=ranks,
        )
    if not ranks.is_main:
        return
    if regularizer is not None:
        write_landmarks(ctx)
    ctx.rundir.write_json(
        ctx.rundir.training, {"history": history, "seconds": time.time() - t0, "processes": ranks.world}
    )


def write_landmarks(ctx: RunContext) -> None:
    """``landmarks.json``: every landmark (worst first) and the round that added it (0: initial)."""
    regularizer = ctx.regularizer
    added_in = {a["key"]: i + 1 for i, entry in enumerate(regularizer.rounds) for a in entry["added"]}
    ctx.rundir.write_json(
        ctx.rundir.landmarks,
        [
            {"key": lm.arch.key(), "accuracy": lm.accuracy, "round": added_in.get(lm.arch.key(), 0)}
            for lm in regularizer.landmarks
        ],
    )


def search_stage(ctx: RunContext, tracker: Tracker | None = None) -> tuple[SearchResult, SubnetEvaluator]:
    """The configured searcher over the space; ``archive.jsonl`` (and its own state) make it resumable.
    ``tracker`` gets every step's metrics."""
    cfg = ctx.cfg
    evaluator = SubnetEvaluator(
        ctx.space,
        ctx.supernet,
        ctx.data,
        cfg.eval,
        seed=cfg.seed,
        precision=cfg.hardware.precision,
        remote=ctx.scorer,
    )
    metrics = ArchitectureMetrics(evaluator, ctx.latency, ctx.needed)
    archive = Archive(ctx.rundir.archive)
    if len(archive) and not ctx.quiet:
        ctx.console.print(f"resuming: {len(archive)} architectures already in the archive")
    shift = make_shift_strategy(
        ctx.space, evaluator, ctx.data, cfg.shift, seed=cfg.seed, version_path=ctx.rundir.supernet_version
    )
    problem = SearchProblem(
        ctx.space,
        metrics,
        ctx.objectives,
        ctx.constraints,
        archive,
        seed=cfg.seed,
        shift=shift,
        files=ctx.rundir.search_files(),
    )
    searcher = SEARCHERS.get(cfg.search.mode)(problem, cfg)
    try:
        result = run_searcher(searcher, ctx.console, ctx.quiet, tracker or Tracker())
        evaluator.score_many([arch_from_dict(r["arch"]) for r in result.front], "test")  # for the final report
    finally:
        if ctx.latency is not None:
            ctx.latency.close()  # the background measuring process, the Dask latency client
        if ctx.scorer is not None:
            ctx.scorer.close()
            evaluator.remote = ctx.scorer = None
    ctx.rundir.write_json(ctx.rundir.hypervolume_json, result.hv_history)
    return result, evaluator


def run_searcher(searcher, console, quiet: bool, tracker: Tracker) -> SearchResult:
    """Run ``searcher`` under a progress bar, each step's metrics sent to ``tracker``."""

    def on_step(step: int, total: int, stats: dict[str, Any]) -> None:
        update(step, info=step_info(stats))
        tracker.step(int(stats.get("generation", step)), step_metrics(stats))

    with progress_bar(searcher.label, searcher.total_steps, console, quiet) as update:
        return searcher.run(on_step)


def step_info(stats: dict[str, Any]) -> str:
    """One line on a search step for the progress bar."""
    parts = [
        f"archive {stats['archive_size']}" if "archive_size" in stats else f"evaluated {stats['evaluated']}",
        f"HV {stats['hypervolume']:.4f}",
    ]
    tau = (stats.get("surrogate_quality") or {}).get("kendall_tau")
    if tau is not None and np.isfinite(tau):
        parts.append(f"surrogate tau {tau:.2f}")
    parts.append(f"supernet v{stats['supernet_version']}")
    return " · ".join(parts)


def export_subnet(space: SearchSpace, evaluator: SubnetEvaluator, record: dict[str, Any], path) -> dict[str, Any]:
    """Export the BN-recalibrated subnet of ``record`` to ONNX (``.pt`` beside it) at the evaluator's
    precision: FP32 checked against PyTorch (parity), INT8 with its validation accuracy drop vs FP32."""
    arch = arch_from_dict(record["arch"])
    subnet = evaluator.subnet(arch)
    shape = space.input_size(arch)
    out = {"onnx": str(path), "pytorch": str(path.with_suffix(".pt")), "key": record["key"], "input_shape": [1, *shape]}
    if evaluator.precision == "fp32":
        export_onnx(subnet, (1, *shape), path)
        out["parity_max_abs_diff"] = assert_parity(subnet, path, (1, *shape)).max_abs_diff
    else:
        onnx_model = evaluator.deployed(arch, subnet)
        atomic_write_bytes(path, onnx_model)
        images, labels = evaluator.data.val.tensors
        fp32 = accuracy(subnet, images, labels, arch.resolution, evaluator.cfg.batch_size)
        quantized = onnx_accuracy(onnx_model, resize(images, arch.resolution), labels)
        out.update(precision=evaluator.precision, val_accuracy_fp32=fp32, val_accuracy_int8=quantized)
        out["accuracy_drop"] = fp32 - quantized
    torch.save(
        {"arch": record["arch"], "net_config": subnet.config, "state_dict": subnet.state_dict()},
        path.with_suffix(".pt"),
    )
    return out


def export_line(exported: dict[str, Any]) -> str:
    """How an export went, in a few words: ONNX parity, or the INT8 accuracy drop."""
    if "parity_max_abs_diff" in exported:
        return f"ONNX parity {exported['parity_max_abs_diff']:.2e}"
    return (
        f"INT8 val accuracy {exported['val_accuracy_int8']:.2f} % "
        f"(FP32 {exported['val_accuracy_fp32']:.2f} %, drop {exported['accuracy_drop']:+.2f})"
    )


def finalize(ctx: RunContext, result: SearchResult, evaluator: SubnetEvaluator) -> dict[str, Any]:
    """Test accuracy of the front, Pareto files and plots, export of the picked subnet, summary.

    With predicted latency the front is re-measured when this run can reach the profiled device.
    """
    cfg, rundir = ctx.cfg, ctx.rundir
    how = cfg.search.pick
    for record in result.front:  # the test split is read here, for the final report only
        record["metrics"][records.TEST_ACCURACY] = evaluator.score(arch_from_dict(record["arch"]), "test").accuracy
    latency_check = None
    if isinstance(ctx.latency, PredictedLatency):
        latency_check = check_predictions(
            ctx.latency,
            result.front,
            ctx.space,
            ctx.supernet,
            latency_config(cfg),
            cfg.hardware.cache or rundir.latency_cache,
            cfg.hardware.dask,
            cfg.hardware.dask_timeout_s,
        )
        latency_check["dataset"] = ctx.latency.source
        latency_check.update(measured_within_limits(result.front, ctx.constraints))
    chosen = write_results(cfg, rundir, result, f"{ctx.data.name} · {ctx.space.name}")
    exported = export_subnet(ctx.space, evaluator, chosen, rundir.subnet(how))
    summary = summarize(result, chosen, how, exported)
    if latency_check is not None:
        summary["latency_check"] = latency_check
    rundir.write_json(rundir.summary, summary)
    if not ctx.quiet:
        if latency_check is not None:
            ctx.console.print(latency_check_line(latency_check))
        Console(markup=False).print(front_table(result.front, chosen["key"]))
        ctx.console.print(f"picked ({how}): {chosen['key']} -> {exported['onnx']} ({export_line(exported)})")
    return summary


def measured_within_limits(front: list[dict[str, Any]], constraints: list[Constraint]) -> dict[str, Any]:
    """For a re-measured front: how many architectures keep every latency constraint on the device (the
    search held it for their predicted latency, or their latency at ``hardware.latency_confidence``)."""
    limits = [c for c in constraints if c.column in (records.LATENCY, records.LATENCY_BOUND)]
    measured = [r["metrics"].get(records.LATENCY_MEASURED) for r in front]
    if not limits or not front or None in measured:
        return {}
    kept = sum(all(c.g({c.column: ms}) <= 0 for c in limits) for ms in measured)
    return {"latency_limits": [c.text for c in limits], "within_limits": kept}


def write_results(cfg: RunConfig, rundir: RunDir, result: SearchResult, title: str) -> dict[str, Any]:
    """Pick a record of the front (``search.pick``), write ``pareto.*`` and the plots; returns the pick."""
    how = cfg.search.pick
    chosen = pick(result.front, how, result.objectives)
    write_front(
        result.front,
        rundir.pareto_csv,
        rundir.pareto_json,
        extra={
            "objectives": [o.name for o in result.objectives],
            "constraints": cfg.search.constraints,
            "picked": {"how": how, "key": chosen["key"]},
        },
    )
    plot_front(
        result.records,
        result.front,
        rundir.pareto_png,
        chosen["key"],
        title=f"{title} · {len(result.front)} Pareto-optimal of {len(result.records)}",
    )
    plot_hypervolume(result.hv_history, rundir.hypervolume_png)
    return chosen


def summarize(result: SearchResult, chosen: dict[str, Any], how: str, exported: dict[str, Any]) -> dict[str, Any]:
    """What ``summary.json`` holds: the pick, its metrics (and export), the front's size and best accuracy."""
    return {
        "picked": {**exported, "key": chosen["key"], "how": how, "metrics": chosen["metrics"], "arch": chosen["arch"]},
        "front_size": len(result.front),
        "evaluated": len(result.records),
        "best_test_accuracy": max(r["metrics"][records.TEST_ACCURACY] for r in result.front),
        "hypervolume": result.hv_history[-1]["hypervolume"] if result.hv_history else None,
    }


def run_table(cfg: RunConfig, quiet: bool = False) -> dict[str, Any]:
    """A search of a table space (``--space table:PATH``): the table is the oracle, nothing is trained."""
    t0 = time.time()
    ctx = prepare_table(cfg, quiet)
    archive = Archive(ctx.rundir.archive)
    if len(archive) and not quiet:
        ctx.console.print(f"resuming: {len(archive)} architectures already in the archive")
    problem = SearchProblem(
        ctx.space, ctx.metrics, ctx.objectives, ctx.constraints, archive, seed=cfg.seed, files=ctx.rundir.search_files()
    )
    searcher = SEARCHERS.get(cfg.search.mode)(problem, cfg)
    with tracking(cfg, ctx.rundir) as tracker:
        summary = finish_table(ctx, run_searcher(searcher, ctx.console, quiet, tracker), t0, quiet)
        tracker.artifacts(ctx.rundir.tracked_artifacts())
    return summary


def finish_table(ctx: TableContext, result: SearchResult, t0: float, quiet: bool) -> dict[str, Any]:
    """Test accuracy of a table search's front, the Pareto files, plots, summary and report."""
    cfg = ctx.cfg
    ctx.rundir.write_json(ctx.rundir.hypervolume_json, result.hv_history)
    if not result.front:
        raise ShiftnasError(f"no architecture satisfies the constraints {cfg.search.constraints}; relax them")
    for record in result.front:
        record["metrics"][records.TEST_ACCURACY] = ctx.metrics.test_accuracy(ctx.space.decode(record["genome"]))
    chosen = write_results(cfg, ctx.rundir, result, f"{ctx.space.path.name} ({cfg.table.noise} oracle)")
    summary = {
        **summarize(result, chosen, cfg.search.pick, {}),
        "seconds": time.time() - t0,
        "queries": ctx.metrics.evaluator.n_evaluations,
    }
    ctx.rundir.write_json(ctx.rundir.summary, summary)
    write_report(ctx.rundir)
    if not quiet:
        Console(markup=False).print(front_table(result.front, chosen["key"]))
        ctx.console.print(f"picked ({cfg.search.pick}): {chosen['key']}; results in {ctx.rundir}")
    return summary


def run(cfg: RunConfig, quiet: bool = False) -> dict[str, Any]:
    """Train (or load) the supernet, search it, and export the picked subnet. Returns the summary.

    A table space (``--space table:PATH``) is searched directly, without a supernet (:func:`run_table`).
    """
    if is_table(cfg.space.name):
        return run_table(cfg, quiet)
    t0 = time.time()
    ctx = prepare(cfg, quiet)
    with tracking(cfg, ctx.rundir) as tracker:
        train_stage(ctx)
        if ctx.rundir.training.is_file():  # a loaded checkpoint (--checkpoint) has no training history here
            for epoch in ctx.rundir.read_json(ctx.rundir.training)["history"]:
                tracker.step(epoch["epoch"], {k: v for k, v in epoch.items() if k != "epoch"}, prefix="train")
        result, evaluator = search_stage(ctx, tracker)
        if not result.front:
            raise ShiftnasError(
                f"no architecture satisfies the constraints {cfg.search.constraints}; relax them or enlarge the search"
            )
        summary = finalize(ctx, result, evaluator)
        summary["seconds"] = time.time() - t0
        ctx.rundir.write_json(ctx.rundir.summary, summary)
        write_report(ctx.rundir)
        tracker.artifacts(ctx.rundir.tracked_artifacts(summary["picked"].get("onnx")))
    return summary
