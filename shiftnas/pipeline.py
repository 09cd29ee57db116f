"""One run, end to end: data -> supernet (train or load) -> NSGA-II search -> front, pick, export.

``run(cfg)`` is what ``shiftnas run`` (and ``make run``) calls; the stages are separate functions
so ``shiftnas train`` / ``search`` / ``export`` reuse them. Everything a run produces lives in
``cfg.out``; every file is written atomically, training checkpoints every epoch and the search
archive is append-only, so re-running the same command after a crash or Ctrl-C resumes.
"""

from __future__ import annotations

import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .config import RunConfig, save_config
from .data import DataSplits, load_dataset
from .engine.archive import Archive
from .engine.checkpoint import load_supernet_weights, read_checkpoint, reset_classifier
from .engine.evaluation import SubnetEvaluator
from .engine.groundtruth import GroundTruthTable, data_identity
from .engine.landmark_rounds import LandmarkGrowth, search_current_best, table_ground_truth
from .engine.landmarks import LandmarkConfig, LandmarkRegularizer, select_landmarks
from .engine.latency_dataset import LatencyDataset
from .engine.latency_source import (LatencySource, PredictedLatency, build_latency_source, check_predictions,
                                    parse_latency_mode)
from .engine.metrics import ArchitectureMetrics
from .engine.nat import NATSearch
from .engine.objectives import needed_metrics, parse_constraint, resolve_objectives
from .engine.search import NSGA2Search, SearchResult, SearchSettings
from .engine.shifting import ShiftStrategy, make_shift_strategy
from .engine.training import finished_training, train_supernet, training_identity
from .errors import CheckpointError, ConfigError, ShiftnasError
from .hardware import LatencyConfig, assert_parity, export_onnx, hardware_fingerprint
from .hardware.latency import check_provider
from .hardware.remote import DaskMeasurer
from .io import atomic_write_json
from .report import PICKS, front_table, pick, plot_front, plot_hypervolume, write_front
from .search_spaces import Arch, SearchSpace, get_space
from .seeding import seed_everything

SUPERNET_FILE = "supernet.pt"


@dataclass
class RunContext:
    """What every stage of a run needs."""

    cfg: RunConfig
    run_dir: Path
    data: DataSplits
    space: SearchSpace
    supernet: nn.Module
    console: Console = field(default_factory=lambda: Console(stderr=True))
    quiet: bool = False


def build_space(cfg: RunConfig) -> SearchSpace:
    """The search space named by ``cfg.space`` (with its resolution list, if given)."""
    return get_space(cfg.space.name, **({"resolutions": cfg.space.resolutions} if cfg.space.resolutions else {}))


def prepare(cfg: RunConfig, quiet: bool = False) -> RunContext:
    """Validate the config, create the run directory, load data and build the supernet."""
    resolve_objectives(cfg.search.objectives)  # fail fast on bad input
    for text in cfg.search.constraints:
        parse_constraint(text)
    mode, dataset_path = parse_latency_mode(cfg.hardware.latency)
    if dataset_path is not None:
        LatencyDataset.load(dataset_path)  # before hours of training: the file exists and is a dataset
    if mode == "measured" and not cfg.hardware.dask:
        check_provider(cfg.hardware.provider)
    if cfg.hardware.dask:
        DaskMeasurer(cfg.hardware.dask).close()  # reachable, with latency workers
    if cfg.search.mode not in ("nsga2", "nat"):
        raise ConfigError(f"search.mode must be 'nsga2' or 'nat', got '{cfg.search.mode}'")
    if cfg.search.mode == "nat":
        cfg.nat.resolved()
        if cfg.search.objectives[0] != "error":
            raise ConfigError("--mode nat predicts accuracy: the first objective must be 'error'")
        if not cfg.shift.reevaluate:
            raise ConfigError("--mode nat always re-scores its archive after the supernet changes; "
                              "shift.reevaluate=false applies to --mode nsga2 only")
    if cfg.search.pick not in PICKS:
        raise ConfigError(f"unknown pick '{cfg.search.pick}'; choose one of: {', '.join(PICKS)}")
    if cfg.checkpoint and not str(cfg.checkpoint).startswith(("http://", "https://")) \
            and not Path(cfg.checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {cfg.checkpoint}")
    space = build_space(cfg)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    data = load_data(cfg)
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    supernet = space.build_supernet(data.num_classes)
    ctx = RunContext(cfg, run_dir, data, space, supernet, quiet=quiet)
    if not quiet:
        ctx.console.print(f"[bold]shiftnas[/] {data.summary()}; space {space.name} "
                          f"({getattr(space, 'size', lambda: 0)():.3g} architectures); run dir {run_dir}")
    return ctx


def load_data(cfg: RunConfig) -> DataSplits:
    """The data set of ``cfg.data`` (name, root, split seed, train subset, download permission)."""
    d = cfg.data
    return load_dataset(d.dataset, root=d.root, seed=d.seed, train_size=d.train_size, download=d.download)


@contextmanager
def progress_bar(description: str, total: int, console: Console | None = None, quiet: bool = False) -> Iterator[Any]:
    """A rich progress bar on stderr (a no-op when quiet); yields ``update(completed, info="")``."""
    if quiet:
        yield lambda *a, **k: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console or Console(stderr=True), transient=False) as prog:
        task = prog.add_task(description, total=total, info="")
        yield lambda completed, info="": prog.update(task, completed=completed, info=info)


def train_stage(ctx: RunContext) -> None:
    """Load ``cfg.checkpoint`` or train the supernet (resuming ``<run>/supernet.pt``)."""
    cfg = ctx.cfg
    if cfg.checkpoint:
        state = read_checkpoint(cfg.checkpoint)
        reset = load_supernet_weights(ctx.supernet, state["state_dict"])
        if cfg.reset_classifier:
            reset_classifier(ctx.supernet, cfg.seed)
        elif reset and not ctx.quiet:
            ctx.console.print(f"checkpoint classifier has another number of classes: reset {len(reset)} tensors")
        ctx.supernet.eval()
        return
    path = ctx.run_dir / SUPERNET_FILE
    regularizer = make_landmark_regularizer(ctx)
    done = finished_training(path, training_identity(ctx.space, ctx.data, cfg.train, cfg.seed, regularizer))
    if done is not None:
        load_supernet_weights(ctx.supernet, done["state_dict"])
        ctx.supernet.eval()
        if regularizer is not None:
            regularizer.load_rounds(done["training"].get("landmark_rounds", []))
            write_landmarks(ctx, regularizer)
        if not ctx.quiet:
            ctx.console.print(f"supernet already trained: {path}")
        return
    t0 = time.time()
    growth = make_landmark_growth(ctx, regularizer) if regularizer is not None and regularizer.cfg.rounds > 1 else None
    with progress_bar("training supernet", 1, ctx.console, ctx.quiet) as update:
        def report(step: int, total: int, loss: float) -> None:
            update(step / total, info=f"step {step}/{total} loss {loss:.3f}")
        history = train_supernet(ctx.space, ctx.supernet, ctx.data, cfg.train, path, seed=cfg.seed, progress=report,
                                 regularizer=regularizer, after_epoch=growth)
    if regularizer is not None:
        write_landmarks(ctx, regularizer)
    atomic_write_json(ctx.run_dir / "training.json", {"history": history, "seconds": time.time() - t0})


def write_landmarks(ctx: RunContext, regularizer: LandmarkRegularizer) -> None:
    """``landmarks.json``: every landmark (worst first) and the round that added it (0: initial)."""
    added_in = {a["key"]: i + 1 for i, entry in enumerate(regularizer.rounds) for a in entry["added"]}
    atomic_write_json(ctx.run_dir / "landmarks.json",
                      [{"key": lm.arch.key(), "accuracy": lm.accuracy, "round": added_in.get(lm.arch.key(), 0)}
                       for lm in regularizer.landmarks])


def make_landmark_growth(ctx: RunContext, regularizer: LandmarkRegularizer) -> LandmarkGrowth:
    """The multi-round hook: NSGA-II through the supernet finds the current best, the table's recipe
    gives their stand-alone accuracy (trained and appended to ``landmarks.table`` when missing)."""
    lc, table_path = ctx.cfg.landmarks, ctx.cfg.landmarks.table
    table_data = GroundTruthTable(table_path).meta.get("data", {})
    if table_data.get("labels_sha1") != data_identity(ctx.data)["labels_sha1"]:
        raise ConfigError(f"landmarks.rounds > 1 trains new landmarks with the recipe of {table_path}, which was made "
                          f"on {table_data.get('summary')}; this run uses {ctx.data.summary()}")

    def on_round(epoch: int, added: list) -> None:
        if not ctx.quiet:
            ctx.console.print(f"landmarks after epoch {epoch}: added {len(added)} current-best architectures "
                              f"({len(regularizer.landmarks)} landmarks)")

    propose = search_current_best(ctx.space, ctx.data, ctx.cfg.eval, lc.round_pop_size, lc.round_generations,
                                  ctx.cfg.seed)
    try:
        return LandmarkGrowth(ctx.space, ctx.supernet, regularizer, ctx.cfg.train.epochs, propose,
                              table_ground_truth(table_path, ctx.space, ctx.data), on_round)
    except ValueError as exc:  # too many rounds for the regularised epochs
        raise ConfigError(f"landmarks: {exc}") from None


def make_landmark_regularizer(ctx: RunContext) -> LandmarkRegularizer | None:
    """Landmarks from ``cfg.landmarks.table`` (none when no table is configured)."""
    lc = ctx.cfg.landmarks
    if not lc.table:
        return None
    if not Path(lc.table).is_file():
        raise ShiftnasError(f"ground-truth table not found: {lc.table}")
    rows = GroundTruthTable(lc.table).rows()
    for row in rows:
        try:
            ctx.space.validate(row["arch"])
        except ValueError as exc:
            raise ShiftnasError(f"{lc.table}: {row['key']} is not in space {ctx.space.name} ({exc})") from None
    candidates = [(row["arch"], row["mean_test_accuracy"]) for row in rows]
    if lc.num < 2 or lc.num > len(candidates):
        raise ConfigError(f"landmarks.num must be between 2 and {len(candidates)} (the table's size), got {lc.num}")
    if lc.selection not in ("fixed", "random"):
        raise ConfigError(f"landmarks.selection must be 'fixed' or 'random', got '{lc.selection}'")
    landmarks = select_landmarks(candidates, lc.num, lc.selection, np.random.default_rng(ctx.cfg.seed))
    settings = LandmarkConfig(**{f.name: getattr(lc, f.name) for f in fields(LandmarkConfig)})
    try:
        regularizer = LandmarkRegularizer(landmarks, ctx.data, settings, seed=ctx.cfg.seed)
    except ValueError as exc:
        raise ConfigError(f"landmarks: {exc}") from None
    return regularizer


def latency_config(cfg: RunConfig) -> LatencyConfig:
    """The measurement settings part of ``cfg.hardware``."""
    return LatencyConfig(**{f.name: getattr(cfg.hardware, f.name) for f in fields(LatencyConfig)})


def make_latency_source(ctx: RunContext) -> LatencySource:
    """Measured (here or on ``hardware.dask`` workers) or predicted latency, as ``cfg.hardware`` says."""
    h = ctx.cfg.hardware
    return build_latency_source(ctx.space, ctx.supernet, latency_config(ctx.cfg), h.latency,
                                h.cache or ctx.run_dir / "latency.sqlite", h.dask)


def search_stage(ctx: RunContext) -> tuple[SearchResult, SubnetEvaluator, ArchitectureMetrics]:
    """NSGA-II over the space; the archive in ``<run>/archive.jsonl`` makes it resumable."""
    cfg = ctx.cfg
    objectives = resolve_objectives(cfg.search.objectives)
    constraints = [parse_constraint(t) for t in cfg.search.constraints]
    needed = needed_metrics(objectives, constraints)
    evaluator = SubnetEvaluator(ctx.space, ctx.supernet, ctx.data, cfg.eval, seed=cfg.seed)
    latency = make_latency_source(ctx) if "latency_ms" in needed else None
    metrics = ArchitectureMetrics(evaluator, latency, needed)
    archive = Archive(ctx.run_dir / "archive.jsonl")
    if len(archive) and not ctx.quiet:
        ctx.console.print(f"resuming: {len(archive)} architectures already in the archive")
    shift = make_shift_strategy(ctx.space, evaluator, ctx.data, cfg.shift, seed=cfg.seed, checkpoint_dir=ctx.run_dir)
    if cfg.search.mode == "nat":
        result = nat_search(ctx, metrics, objectives, constraints, archive, shift)
        atomic_write_json(ctx.run_dir / "hypervolume.json", result.hv_history)
        return result, evaluator, metrics
    search = NSGA2Search(ctx.space, metrics, objectives, constraints, archive,
                         SearchSettings(cfg.search.pop_size, cfg.search.generations, cfg.seed),
                         shift=shift, reevaluate=cfg.shift.reevaluate)
    label = "NSGA-II search" + ("" if cfg.shift.strategy == "none" else f" + shifting ({cfg.shift.strategy})")
    with progress_bar(label, cfg.search.generations, ctx.console, ctx.quiet) as update:
        result = search.run(lambda g, total, s: update(
            g, info=f"evaluated {s['evaluated']} · HV {s['hypervolume']:.4f} · supernet v{s['supernet_version']}"))
    atomic_write_json(ctx.run_dir / "hypervolume.json", result.hv_history)
    return result, evaluator, metrics


def nat_search(ctx: RunContext, metrics: ArchitectureMetrics, objectives: list, constraints: list,
               log: Archive, shift: ShiftStrategy) -> SearchResult:
    """``--mode nat``: the NAT / NATv2 loop (``nat.*``); state in ``<run>/nat_state.json`` for resuming."""
    cfg = ctx.cfg
    search = NATSearch(ctx.space, metrics, objectives, constraints, cfg.nat, seed=cfg.seed, run_dir=ctx.run_dir,
                       log=log, shift=shift)
    label = f"{search.cfg.policy.upper()} search ({search.cfg.surrogate} surrogate)" + \
        ("" if cfg.shift.strategy == "none" else f" + shifting ({cfg.shift.strategy})")
    with progress_bar(label, search.cfg.iterations, ctx.console, ctx.quiet) as update:
        def report(it: int, total: int, s: dict) -> None:
            tau = (s.get("surrogate_quality") or {}).get("kendall_tau")
            shown = f" · surrogate tau {tau:.2f}" if tau is not None and np.isfinite(tau) else ""
            update(it, info=f"archive {s['archive_size']} · HV {s['hypervolume']:.4f}{shown} · "
                            f"supernet v{s['supernet_version']}")
        return search.run(report)


def export_subnet(ctx: RunContext, evaluator: SubnetEvaluator, record: dict[str, Any], path: Path) -> dict[str, Any]:
    """Export the BN-recalibrated subnet of ``record`` to ONNX and check it against PyTorch."""
    arch = Arch.from_dict(record["arch"])
    subnet = evaluator.subnet(arch)
    shape = ctx.space.input_size(arch)
    export_onnx(subnet, (1, *shape), path)
    parity = assert_parity(subnet, path, (1, *shape))
    torch.save({"arch": record["arch"], "net_config": subnet.config, "state_dict": subnet.state_dict()},
               path.with_suffix(".pt"))
    return {"onnx": str(path), "pytorch": str(path.with_suffix(".pt")), "key": record["key"],
            "input_shape": [1, *shape], "parity_max_abs_diff": parity.max_abs_diff}


def finalize(ctx: RunContext, result: SearchResult, evaluator: SubnetEvaluator, pick_how: str,
             latency: LatencySource | None = None) -> dict[str, Any]:
    """Test accuracy of the front, Pareto files and plots, export of the picked subnet, summary.

    With predicted latency the front is re-measured when this run can reach the profiled device.
    """
    for record in result.front:  # the test split is read here, for the final report only
        record["metrics"]["test_accuracy"] = evaluator.score(Arch.from_dict(record["arch"]), "test").accuracy
    latency_check = None
    if isinstance(latency, PredictedLatency):
        h = ctx.cfg.hardware
        latency_check = check_predictions(latency, result.front, ctx.space, ctx.supernet, latency_config(ctx.cfg),
                                          h.cache or ctx.run_dir / "latency.sqlite", h.dask)
        latency_check["dataset"] = latency.source
    chosen = pick(result.front, pick_how, result.objectives)
    write_front(result.front, ctx.run_dir, extra={"objectives": [o.name for o in result.objectives],
                                                   "constraints": ctx.cfg.search.constraints,
                                                   "picked": {"how": pick_how, "key": chosen["key"]}})
    records = result.records
    plot_front(records, result.front, ctx.run_dir / "pareto.png", chosen["key"],
               title=f"{ctx.data.name} · {ctx.space.name} · {len(result.front)} Pareto-optimal of {len(records)}")
    plot_hypervolume(result.hv_history, ctx.run_dir / "hypervolume.png")
    exported = export_subnet(ctx, evaluator, chosen, ctx.run_dir / f"subnet_{pick_how}.onnx")
    summary = {"picked": {**exported, "how": pick_how, "metrics": chosen["metrics"], "arch": chosen["arch"]},
               "front_size": len(result.front), "evaluated": len(records),
               "best_test_accuracy": max(r["metrics"]["test_accuracy"] for r in result.front),
               "hypervolume": result.hv_history[-1]["hypervolume"] if result.hv_history else None}
    if latency_check is not None:
        summary["latency_check"] = latency_check
    atomic_write_json(ctx.run_dir / "summary.json", summary)
    if not ctx.quiet:
        if latency_check is not None:
            ctx.console.print(latency_check_line(latency_check))
        Console().print(front_table(result.front, chosen["key"]))
        ctx.console.print(f"picked ({pick_how}): {chosen['key']} -> {exported['onnx']} "
                          f"(ONNX parity {exported['parity_max_abs_diff']:.2e})")
    return summary


def latency_check_line(check: dict[str, Any]) -> str:
    """One line on predicted vs re-measured latency of the front."""
    if not check["checked"]:
        return f"latency was predicted ({check['dataset']}); the front was not re-measured: {check['reason']}"
    tau = f", Kendall tau {check['kendall_tau']:.2f}" if "kendall_tau" in check else ""
    return (f"predicted vs re-measured latency of the {check['n']} front architectures: "
            f"MAPE {check['mape']:.1f}%{tau} ({check['predictor']} predictor)")


def write_manifest(ctx: RunContext) -> None:
    """Versions, seed and hardware fingerprint of the run."""
    versions = {}
    for pkg in ("torch", "torchvision", "ofa", "pymoo", "onnx", "onnxruntime", "numpy", "shiftnas"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    h = ctx.cfg.hardware
    fp = hardware_fingerprint(provider=h.provider, intra_threads=h.intra_threads, inter_threads=h.inter_threads,
                              batch_size=h.batch_size)
    atomic_write_json(ctx.run_dir / "manifest.json", {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv, "seed": ctx.cfg.seed,
        "python": platform.python_version(), "platform": platform.platform(), "versions": versions,
        "torch_threads": torch.get_num_threads(), "hardware": fp.as_dict(), "hardware_key": fp.key(),
        "data": ctx.data.summary(), "space": ctx.space.describe()})


def run(cfg: RunConfig, quiet: bool = False) -> dict[str, Any]:
    """Train (or load) the supernet, search it, and export the picked subnet. Returns the summary."""
    t0 = time.time()
    ctx = prepare(cfg, quiet)
    write_manifest(ctx)
    train_stage(ctx)
    result, evaluator, metrics = search_stage(ctx)
    if not result.front:
        raise ShiftnasError("no architecture satisfies the constraints "
                            f"{cfg.search.constraints}; relax them or enlarge the search")
    summary = finalize(ctx, result, evaluator, cfg.search.pick, metrics.latency)
    summary["seconds"] = time.time() - t0
    atomic_write_json(ctx.run_dir / "summary.json", summary)
    return summary
