"""Preparing a run: every object built from the config once, every check made before any file is touched.

:func:`prepare` resolves every name through its registry, loads the data, builds the space and the
supernet (loading ``cfg.checkpoint`` into it), the objectives and constraints, the latency source
(measured here, on Dask workers, or predicted) and the landmark regularizer, and only then writes
``config.yaml`` and ``manifest.json``: a command that fails leaves an existing run as it was.
:func:`load_finished_run` reads a finished run for ``export`` / ``finetune`` without training,
without Dask and without writing anything.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console
from rich.text import Text

from .. import records
from ..config import LandmarkConfig, LatencyConfig, RunConfig
from ..data import DATASETS, DataSplits, load_dataset
from ..engine.checkpoint import load_supernet_weights, read_checkpoint, reset_classifier
from ..engine.evaluation.latency import LatencySource, build_latency_source, parse_latency_mode
from ..engine.evaluation.latency_dataset import LatencyDataset
from ..engine.evaluation.objectives import (
    Constraint,
    Objective,
    needed_metrics,
    parse_constraint,
    resolve_objectives,
    with_confidence,
)
from ..engine.evaluation.subnet import SubnetEvaluator
from ..engine.evaluation.table import TableMetrics
from ..engine.groundtruth.table import GroundTruthTable, data_identity, table_ground_truth
from ..engine.search import SEARCHERS, SHIFT_STRATEGIES
from ..engine.search.nsga2 import current_best_proposer
from ..engine.training.landmarks import LandmarkGrowth, LandmarkRegularizer, select_landmarks
from ..engine.training.supernet import initialize_supernet
from ..errors import CheckpointError, ConfigError, ShiftnasError
from ..hardware.fingerprint import fingerprint_of
from ..hardware.latency import check_provider, measurement_protocol
from ..predictors.surrogate import SURROGATES
from ..report import PICKS
from ..search_spaces import SPACES, SearchSpace, get_space
from ..search_spaces.table import TableSpace, is_table
from ..seeding import seed_everything
from .launch import refuse_landmarks_under_torchrun
from .progress import stderr_console
from .rundir import RunDir
from .tracking import check_tracker

if TYPE_CHECKING:
    from ..cluster.evaluation import RemoteScorer


@dataclass
class RunContext:
    """What every stage of a run needs, built once by :func:`prepare`."""

    cfg: RunConfig
    rundir: RunDir
    data: DataSplits
    space: SearchSpace
    supernet: nn.Module
    objectives: list[Objective] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    latency: LatencySource | None = None  # None when no objective or constraint needs latency
    regularizer: LandmarkRegularizer | None = None
    scorer: RemoteScorer | None = None  # the Dask `eval` workers that score accuracy (--dask), if any
    console: Console = field(default_factory=stderr_console)
    quiet: bool = False

    @property
    def needed(self) -> set[str]:
        """Metric columns the search computes for every architecture."""
        return needed_metrics(self.objectives, self.constraints)


def build_space(cfg: RunConfig) -> SearchSpace:
    """The search space named by ``cfg.space`` (with its resolution list, if given; ``table:PATH`` reads a table)."""
    name, _, path = cfg.space.name.partition(":")
    if name == "table":
        return get_space("table", path=path)
    return get_space(cfg.space.name, **({"resolutions": cfg.space.resolutions} if cfg.space.resolutions else {}))


def load_data(cfg: RunConfig) -> DataSplits:
    """The data set of ``cfg.data`` (name, root, split seed, train subset, download permission)."""
    d = cfg.data
    return load_dataset(d.dataset, root=d.root, seed=d.seed, train_size=d.train_size, download=d.download)


def latency_config(cfg: RunConfig) -> LatencyConfig:
    """The measurement settings part of ``cfg.hardware``."""
    return LatencyConfig(**{f.name: getattr(cfg.hardware, f.name) for f in fields(LatencyConfig)})


def measures_in_background(cfg: RunConfig) -> bool:
    """Whether measured latency is timed in a child process beside the accuracy work (``hardware.background``):
    ``auto`` does so on the CPU provider when this process may use a core beyond the torch threads and the
    measurement's own; never with Dask latency workers."""
    h = cfg.hardware
    if h.dask or h.background == "off":
        return False
    if h.background == "on":
        return True
    from ..engine.evaluation.background_latency import usable_cpus

    return h.provider == "CPUExecutionProvider" and usable_cpus() >= cfg.threads + h.intra_threads * h.inter_threads


def check_names(cfg: RunConfig) -> None:
    """Every name of ``cfg`` that resolves through a registry, checked before any work."""
    DATASETS.check(cfg.data.dataset.partition(":")[0].strip().lower())
    SPACES.check(cfg.space.name.partition(":")[0])
    SEARCHERS.check(cfg.search.mode)
    SHIFT_STRATEGIES.check(cfg.shift.strategy)
    PICKS.check(cfg.search.pick)
    if cfg.search.mode == "nat":
        SURROGATES.check(cfg.nat.resolved().surrogate)
    check_tracker(cfg.track)


def prepare(cfg: RunConfig, quiet: bool = False, search: bool = True) -> RunContext:
    """Check the config, build every object of the run, then create the run directory (see the module).
    ``search=False`` (``shiftnas train``): no latency source and no Dask scorer are built or connected."""
    check_names(cfg)
    if is_table(cfg.space.name):
        raise ShiftnasError(
            f"{cfg.space.name} is a table space: it has no supernet to train or load "
            "(`shiftnas search --space table:PATH` searches it)"
        )
    objectives = resolve_objectives(cfg.search.objectives)
    constraints = with_confidence(
        [parse_constraint(t) for t in cfg.search.constraints], cfg.hardware.latency_confidence
    )
    mode, _ = parse_latency_mode(cfg.hardware.latency)
    if cfg.hardware.latency_confidence is not None and mode != "predicted":
        raise ConfigError(
            "hardware.latency_confidence bounds predicted latency; measured latency has no predictor to bound "
            "(use --latency predicted:DEVICE.json, or leave it unset)"
        )
    if (
        search
        and mode == "measured"
        and not cfg.hardware.dask
        and records.LATENCY in needed_metrics(objectives, constraints)
    ):
        check_provider(cfg.hardware.provider)
    if (
        cfg.checkpoint
        and not str(cfg.checkpoint).startswith(("http://", "https://"))
        and not Path(cfg.checkpoint).is_file()
    ):
        raise CheckpointError(f"checkpoint not found: {cfg.checkpoint}")
    rundir = RunDir(cfg.out)
    if rundir.path.exists() and not rundir.path.is_dir():
        raise ShiftnasError(f"--out {rundir.path} exists and is not a directory")
    check_same_latency(rundir, cfg)
    space = build_space(cfg)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    data = load_data(cfg)
    supernet = space.build_supernet(data.num_classes)
    console = stderr_console()
    if not cfg.checkpoint:  # trained here from scratch (a finished or resumed training loads its own weights)
        with torch.random.fork_rng(devices=[]):  # what is drawn later does not depend on train.init
            initialize_supernet(supernet, cfg.train.init)
    else:
        reset = load_checkpoint(cfg, supernet)
        if search and (cfg.reset_classifier or reset):
            why = "reset_classifier=true" if cfg.reset_classifier else "the checkpoint's has another number of classes"
            check_classifier_trains(cfg, why)
        if cfg.train.init != "torch" and not quiet:
            console.print(
                f"train.init={cfg.train.init} is not applied: the supernet starts from --checkpoint's weights"
            )
        if reset and not quiet:
            console.print(f"checkpoint classifier has another number of classes: reset {len(reset)} tensors")
    ctx = RunContext(cfg, rundir, data, space, supernet, objectives, constraints, console=console, quiet=quiet)
    ctx.regularizer = make_landmark_regularizer(ctx)
    if not cfg.checkpoint:
        refuse_landmarks_under_torchrun(cfg, cfg.train.processes)
    if search and records.LATENCY in ctx.needed:
        with torch.random.fork_rng(devices=[]):  # exporting the reference subnets draws no random numbers of ours
            ctx.latency = build_latency_source(
                space,
                supernet,
                latency_config(cfg),
                cfg.hardware.latency,
                cfg.hardware.cache or rundir.latency_cache,
                cfg.hardware.dask,
                cfg.hardware.dask_timeout_s,
                background=measures_in_background(cfg),
                num_classes=data.num_classes,
                confidence=cfg.hardware.latency_confidence,
            )
    if search and cfg.hardware.dask and {records.ERROR, records.ACCURACY} & ctx.needed:
        from ..cluster.evaluation import RESOURCE, connect_scorer

        ctx.scorer = connect_scorer(cfg.hardware.dask, cfg.hardware.dask_timeout_s, cfg.hardware.dask_retries)
        if not quiet:
            console.print(
                f"accuracy scored on {ctx.scorer.pool.n_workers} Dask '{RESOURCE}' worker(s) at {cfg.hardware.dask}"
                if ctx.scorer
                else f"no Dask worker at {cfg.hardware.dask} has the '{RESOURCE}' resource: accuracy is scored here"
            )
    # every check passed: only now is the run directory touched
    rundir.path.mkdir(parents=True, exist_ok=True)
    rundir.write_config(cfg)
    write_manifest(ctx)
    if not quiet:
        console.print(
            Text.assemble(
                ("shiftnas", "bold"),
                f" {data.summary()}; space {space.name} "
                f"({getattr(space, 'size', lambda: 0)():.3g} architectures); run dir {rundir}",
            )
        )
    return ctx


def check_same_latency(rundir: RunDir, cfg: RunConfig) -> None:
    """Refuse to continue a search in ``rundir`` whose archive holds latencies of another source or
    confidence (``hardware.latency``, ``hardware.latency_confidence``): its records would be reused as they are.
    A predicted run's dataset is compared by content where its manifest has the digest (moved: accepted)."""
    if not rundir.config.is_file() or not rundir.archive.is_file() or not rundir.archive.stat().st_size:
        return
    earlier = rundir.load_config()
    mode, dataset = parse_latency_mode(cfg.hardware.latency)
    digest = earlier_manifest(rundir).get("latency_dataset_digest")
    same_data = None  # the predicted dataset is the one searched with, by content (a moved copy is); None: unknown
    if mode == "predicted" and digest and dataset.is_file() and parse_latency_mode(earlier.hardware.latency)[0] == mode:
        loaded = LatencyDataset.load(dataset)
        prior = loaded.prior_path(dataset)
        if prior is not None and not prior.is_file():
            raise ShiftnasError(f"latency dataset not found: {prior} (the prior {dataset} names)")
        same_data = loaded.digest(dataset) == digest
    for key in ("latency", "latency_confidence"):
        then, now = getattr(earlier.hardware, key), getattr(cfg.hardware, key)
        if then != now and not (key == "latency" and same_data is not None):
            raise ConfigError(
                f"{rundir.path} was searched with hardware.{key}={then}, this run asks for {now}: "
                "its archive's latencies would be reused; pass another --out"
            )
    if same_data is False:
        raise ConfigError(
            f"{dataset} (or the prior it names) is not the latency dataset {rundir.path} was searched with "
            f"({earlier.hardware.latency}; profiled again since?): its archive's predictions would be mixed with "
            "another predictor's; pass another --out"
        )
    if mode == "measured":  # the protocol moves the medians (interleaved references: +4-6 %)
        then, now = (measurement_protocol(latency_config(c)) for c in (earlier, cfg))
        changed = [k for k in now if then.get(k) != now[k]]
        if changed:
            was = ", ".join(f"hardware.{k}={then.get(k)}" for k in changed)
            raise ConfigError(
                f"{rundir.path} was measured with {was}, this run asks for "
                f"{', '.join(str(now[k]) for k in changed)}: its latencies would be mixed; pass those settings "
                "with --set to continue it, or another --out"
            )


def check_classifier_trains(cfg: RunConfig, why: str = "reset_classifier=true") -> None:
    """Refuse a search whose classifier starts untrained (``why``: reset for a transfer, or the checkpoint's has
    another number of classes) and that would never train it: every accuracy it scores would be chance."""
    head = f"the classifier starts untrained ({why})"
    if cfg.search.mode == "nat":  # NAT adapts the supernet every iteration, whatever the shift strategy
        if cfg.shift.strategy == "none" and cfg.nat.adapt_steps == 0:
            raise ShiftnasError(f"{head}: with --shift none and nat.adapt_steps=0 the search never trains it")
        return
    if cfg.shift.strategy == "none":
        raise ShiftnasError(
            f"{head} and only shifting the supernet trains it: --shift none never trains it "
            "(--shift per_candidate, or per_iteration with --generations >= 2; `shiftnas transfer` sets one)"
        )
    if cfg.shift.strategy in ("per_iteration", "region") and cfg.search.generations < 2:
        raise ShiftnasError(
            f"{head}: --shift {cfg.shift.strategy} trains it between generations, so it needs --generations >= 2, "
            f"got {cfg.search.generations} (or --shift per_candidate)"
        )


def earlier_manifest(rundir: RunDir) -> dict:
    """The manifest an earlier command wrote in ``rundir`` (empty when there is none or it cannot be read)."""
    try:
        return rundir.read_json(rundir.manifest)
    except (OSError, ValueError):
        return {}


def load_checkpoint(cfg: RunConfig, supernet: nn.Module) -> list[str]:
    """Load ``cfg.checkpoint`` into ``supernet`` (its classifier re-initialised for a transfer); returns
    the keys left freshly initialised because the checkpoint's classifier has another size."""
    state = read_checkpoint(cfg.checkpoint)
    reset = load_supernet_weights(supernet, state["state_dict"])
    if cfg.reset_classifier:
        reset_classifier(supernet, cfg.seed)
    supernet.eval()
    return reset


def write_manifest(ctx: RunContext) -> None:
    """Versions, seed and hardware fingerprint of the run."""
    versions = {}
    for pkg in ("torch", "torchvision", "ofa", "pymoo", "onnx", "onnxruntime", "numpy", "shiftnas"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    h = ctx.cfg.hardware
    fp = fingerprint_of(h)
    ctx.rundir.write_json(
        ctx.rundir.manifest,
        {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": sys.argv,
            "seed": ctx.cfg.seed,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": versions,
            "torch_threads": torch.get_num_threads(),
            "hardware": fp.as_dict(),
            "hardware_key": fp.key(),
            # the predicted latency's dataset as this command loaded it (a command that loads none keeps the last one)
            "latency_dataset_digest": getattr(ctx.latency, "digest", None)
            or earlier_manifest(ctx.rundir).get("latency_dataset_digest"),
            "data": ctx.data.summary(),
            "space": ctx.space.describe(),
        },
    )


@dataclass
class TableContext:
    """What a search of a table space needs (no data, no supernet), built once by :func:`prepare_table`."""

    cfg: RunConfig
    rundir: RunDir
    space: TableSpace
    metrics: TableMetrics
    objectives: list[Objective]
    constraints: list[Constraint]
    console: Console = field(default_factory=stderr_console)


def prepare_table(cfg: RunConfig, quiet: bool = False) -> TableContext:
    """Check the config of a table search, read the table, then create the run directory."""
    check_names(cfg)
    objectives = resolve_objectives(cfg.search.objectives)
    constraints = [parse_constraint(t) for t in cfg.search.constraints]
    for what, used in (
        ("--shift", cfg.shift.strategy != "none"),
        ("--checkpoint", bool(cfg.checkpoint)),
        ("landmarks.table", bool(cfg.landmarks.table)),
        ("hardware.latency_confidence", cfg.hardware.latency_confidence is not None),
    ):
        if used:
            raise ConfigError(f"a table space has no supernet: {what} applies to supernet spaces only")
    space = build_space(cfg)
    metrics = TableMetrics(space, needed_metrics(objectives, constraints), cfg.table.noise, cfg.seed)
    rundir = RunDir(cfg.out)
    if rundir.path.exists() and not rundir.path.is_dir():
        raise ShiftnasError(f"--out {rundir.path} exists and is not a directory")
    rundir.path.mkdir(parents=True, exist_ok=True)
    rundir.write_config(cfg)
    rundir.write_json(
        rundir.manifest,
        {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": sys.argv,
            "seed": cfg.seed,
            "table": str(space.path),
            "table_sha256": space.fingerprint,
            "rows": space.n_rows,
            "networks": space.size(),
            "oracle": cfg.table.noise,
        },
    )
    ctx = TableContext(cfg, rundir, space, metrics, objectives, constraints)
    if not quiet:
        ctx.console.print(
            Text.assemble(
                ("shiftnas", "bold"),
                f" table {space.path.name}: {space.size()} networks ({space.n_rows} rows), "
                f"{cfg.table.noise} oracle; run dir {rundir}",
            )
        )
    return ctx


# ----------------------------------------------------------------------------- landmarks


def make_landmark_regularizer(ctx: RunContext) -> LandmarkRegularizer | None:
    """Landmarks from ``cfg.landmarks.table`` (none when no table is configured)."""
    lc = ctx.cfg.landmarks
    if not lc.table:
        return None
    if not Path(lc.table).is_file():
        raise ShiftnasError(f"ground-truth table not found: {lc.table}")
    table = GroundTruthTable(lc.table)
    rows = table.rows()
    for row in rows:
        try:
            ctx.space.validate(row["arch"])
        except ValueError as exc:
            raise ShiftnasError(f"{lc.table}: {row['key']} is not in space {ctx.space.name} ({exc})") from None
    if lc.num > len(rows):
        raise ConfigError(f"landmarks.num must be between 2 and {len(rows)} (the table's size), got {lc.num}")
    if lc.rounds > 1:
        table_data = table.meta.get("data", {})
        if table_data.get("labels_sha1") != data_identity(ctx.data)["labels_sha1"]:
            raise ConfigError(
                f"landmarks.rounds > 1 trains new landmarks with the recipe of {lc.table}, which was "
                f"made on {table_data.get('summary')}; this run uses {ctx.data.summary()}"
            )
    candidates = [(row["arch"], row["mean_test_accuracy"]) for row in rows]
    landmarks = select_landmarks(candidates, lc.num, lc.selection, np.random.default_rng(ctx.cfg.seed))
    settings = LandmarkConfig(**{f.name: getattr(lc, f.name) for f in fields(LandmarkConfig)})
    try:
        return LandmarkRegularizer(landmarks, ctx.data, settings, seed=ctx.cfg.seed)
    except ValueError as exc:
        raise ConfigError(f"landmarks: {exc}") from None


def make_landmark_growth(ctx: RunContext) -> LandmarkGrowth | None:
    """The multi-round hook (``landmarks.rounds > 1``): NSGA-II through the supernet finds the current
    best, the table's recipe gives their stand-alone accuracy (trained and appended when missing)."""
    regularizer, lc = ctx.regularizer, ctx.cfg.landmarks
    if regularizer is None or lc.rounds <= 1:
        return None

    def on_round(epoch: int, added: list) -> None:
        if not ctx.quiet:
            ctx.console.print(
                f"landmarks after epoch {epoch}: added {len(added)} current-best architectures "
                f"({len(regularizer.landmarks)} landmarks)"
            )

    propose = current_best_proposer(
        ctx.space, ctx.data, ctx.cfg.eval, lc.round_pop_size, lc.round_generations, ctx.cfg.seed
    )
    try:
        return LandmarkGrowth(
            ctx.space,
            ctx.supernet,
            regularizer,
            ctx.cfg.train.epochs,
            propose,
            table_ground_truth(lc.table, ctx.space, ctx.data),
            on_round,
        )
    except ValueError as exc:  # too many rounds for the regularised epochs
        raise ConfigError(f"landmarks: {exc}") from None


# ----------------------------------------------------------------------------- a finished run


@dataclass
class FinishedRun:
    """A finished run loaded for reading: its config, data, space, and the supernet of one version."""

    cfg: RunConfig
    rundir: RunDir
    data: DataSplits
    space: SearchSpace
    supernet: nn.Module
    evaluator: SubnetEvaluator


def load_finished_run(rundir: RunDir, version: int = 0, cfg: RunConfig | None = None) -> FinishedRun:
    """The weights that scored supernet ``version`` of a finished run; nothing is trained or written."""
    cfg = cfg or rundir.load_config()
    torch.set_num_threads(cfg.threads)
    space = build_space(cfg)
    seed_everything(cfg.seed)
    data = load_data(cfg)
    supernet = space.build_supernet(data.num_classes)
    if version:  # the front was scored by a supernet changed during the search: use those weights
        path = rundir.weights_for_version(cfg.search.mode, version)
        if not path.is_file():
            raise ShiftnasError(
                f"{path.name} is missing (the run kept no checkpoint of the weights that scored its front)"
            )
        load_supernet_weights(supernet, read_checkpoint(path)["state_dict"])
    elif cfg.checkpoint:
        load_checkpoint(cfg, supernet)
    else:
        if not rundir.supernet.is_file():
            raise ShiftnasError(f"no supernet in {rundir} ({rundir.supernet.name} is missing)")
        load_supernet_weights(supernet, read_checkpoint(rundir.supernet)["state_dict"])
    supernet.eval()
    return FinishedRun(
        cfg,
        rundir,
        data,
        space,
        supernet,
        SubnetEvaluator(space, supernet, data, cfg.eval, seed=cfg.seed, precision=cfg.hardware.precision),
    )
