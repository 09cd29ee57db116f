"""The ``shiftnas`` command line: thin wrappers that parse options, build a config and call the library."""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.text import Text

from .config import RunConfig, load_config
from .errors import ShiftnasError
from .pipeline.progress import stderr_console

# Everything heavy (torch, the engine) is imported inside the commands, so `shiftnas --help` is quick.


def is_table(space_name: str) -> bool:
    """Whether a ``--space`` value names a table space (``table:PATH``)."""
    return space_name.partition(":")[0] == "table"


app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Multi-objective, hardware-aware NAS over OFA-style elastic supernets.",
)
err = stderr_console()


def user_errors(fn: Callable) -> Callable:
    """Turn user-facing errors into one line on stderr and a non-zero exit (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ShiftnasError as exc:
            err.print(Text.assemble(("error:", "red"), f" {exc}"), highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except FloatingPointError as exc:
            err.print(Text.assemble(("error:", "red"), f" {exc}"), soft_wrap=True)
            raise typer.Exit(3) from None
        except KeyboardInterrupt:
            err.print("interrupted: everything finished so far is saved; re-run the same command to resume")
            raise typer.Exit(130) from None

    return wrapper


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (see configs/default.yaml).")
DeployOpt = typer.Option(
    None, help="Precision the subnets are deployed at, measured and scored in ONNX Runtime: fp32 | int8."
)
TrackOpt = typer.Option(
    None,
    help="Log config, metrics per step and artifacts: mlflow\\[:URI] | tensorboard\\[:DIR] (pip install 'shiftnas\\[track]').",
)
SetOpt = typer.Option(None, "--set", help="Override a config value, e.g. --set train.epochs=3 (repeatable).")
OutOpt = typer.Option(None, "--out", "-o", help="Run directory (default runs/default).")
ConstraintOpt = typer.Option(
    None,
    help="e.g. 'latency<=5ms', 'macs<=10M', 'accuracy>=97%' (repeatable; a bare number is in ms, M or %; < counts as <=).",
)
DataOpt = typer.Option(None, "--data", help="mnist5k | digits | fashion-mnist | cifar10 | cifar100 | imagefolder:PATH")
SpaceOpt = typer.Option(
    None,
    "--space",
    help="Search space: compact-mbv3 | ofa-mbv3 | ofa-proxyless | ofa-resnet50 | table:PATH (`shiftnas spaces` lists them)",
)
SeedOpt = typer.Option(None, "--seed", help="Random seed.")
LatencyOpt = typer.Option(
    None,
    "--latency",
    help="measured (ONNX Runtime here) | predicted:DEVICE.json "
    "(a dataset from `shiftnas profile --space` on the deployment device).",
)
ModeOpt = typer.Option(
    None,
    "--mode",
    help="nsga2 (NSGA-II through the supernet) | nat (NAT/NATv2 surrogate loop; options under --set nat.KEY=...).",
)
DaskOpt = typer.Option(
    None,
    "--dask",
    help="Use the Dask workers of this scheduler address: those started with --resources latency=1 measure "
    "latency, those with eval=1 score accuracy through the supernet (docs/scaling.md).",
)
ShiftOpt = typer.Option(
    None,
    "--shift",
    help="Train the supernet during the search: none | per_iteration | "
    "per_candidate | region (options under --set shift.KEY=...).",
)


def build_config(config: Optional[Path], sets: Optional[List[str]], **options) -> RunConfig:
    """Config file, then --set overrides, then the explicit options (the most specific wins)."""
    names = {
        "shift": "shift.strategy",
        "out": "out",
        "seed": "seed",
        "checkpoint": "checkpoint",
        "data": "data.dataset",
        "space": "space.name",
        "epochs": "train.epochs",
        "generations": "search.generations",
        "pop_size": "search.pop_size",
        "pick": "search.pick",
        "latency": "hardware.latency",
        "dask": "hardware.dask",
        "mode": "search.mode",
        "track": "track",
        "deploy": "hardware.precision",
    }
    overrides = list(sets or [])
    for opt, value in options.items():
        if value is None:
            continue
        if opt == "objectives":
            overrides.append(f"search.objectives=[{value}]")
        elif opt == "constraints":
            if value:
                overrides.append("search.constraints=[" + ",".join(f"'{c}'" for c in value) + "]")
        else:
            overrides.append(f"{names[opt]}={value}")
    return load_config(config, overrides)


@app.command()
@user_errors
def run(
    config: Optional[Path] = ConfigOpt,
    sets: Optional[List[str]] = SetOpt,
    out: Optional[str] = OutOpt,
    data: Optional[str] = DataOpt,
    space: Optional[str] = SpaceOpt,
    seed: Optional[int] = SeedOpt,
    checkpoint: Optional[str] = typer.Option(None, help="Load this supernet instead of training one."),
    epochs: Optional[int] = typer.Option(None, help="Supernet training epochs."),
    generations: Optional[int] = typer.Option(None, help="NSGA-II generations."),
    pop_size: Optional[int] = typer.Option(None, help="NSGA-II population size."),
    objectives: Optional[str] = typer.Option(None, help="Comma-separated: error,latency,macs,params."),
    constraint: Optional[List[str]] = ConstraintOpt,
    pick: Optional[str] = typer.Option(None, help="knee | max-acc | min-latency | trade-off"),
    shift: Optional[str] = ShiftOpt,
    latency: Optional[str] = LatencyOpt,
    dask: Optional[str] = DaskOpt,
    mode: Optional[str] = ModeOpt,
    track: Optional[str] = TrackOpt,
    deploy: Optional[str] = DeployOpt,
) -> None:
    """Train a supernet, search it with NSGA-II, write the Pareto front and export the picked subnet."""
    from .pipeline.run import run as run_pipeline

    cfg = build_config(
        config,
        sets,
        out=out,
        data=data,
        space=space,
        seed=seed,
        checkpoint=checkpoint,
        epochs=epochs,
        generations=generations,
        pop_size=pop_size,
        objectives=objectives,
        constraints=constraint,
        pick=pick,
        shift=shift,
        latency=latency,
        dask=dask,
        mode=mode,
        track=track,
        deploy=deploy,
    )
    summary = run_pipeline(cfg)
    err.print(f"done in {summary['seconds'] / 60:.1f} min; results in {cfg.out}")


@app.command()
@user_errors
def resume(run_dir: Path = typer.Argument(..., help="The run directory of an interrupted `shiftnas run`.")) -> None:
    """Continue an interrupted run with its saved config (same as re-running the original command)."""
    from .pipeline.run import run as run_pipeline
    from .pipeline.rundir import RunDir

    cfg = RunDir(run_dir).load_config()
    summary = run_pipeline(cfg)
    err.print(f"done in {summary['seconds'] / 60:.1f} min; results in {cfg.out}")


@app.command()
@user_errors
def train(
    config: Optional[Path] = ConfigOpt,
    sets: Optional[List[str]] = SetOpt,
    out: Optional[str] = OutOpt,
    data: Optional[str] = DataOpt,
    space: Optional[str] = SpaceOpt,
    seed: Optional[int] = SeedOpt,
    epochs: Optional[int] = typer.Option(None, help="Supernet training epochs."),
    nproc: Optional[int] = typer.Option(
        None,
        help="Processes that train the supernet together (PyTorch distributed via torchrun, gloo; training runs on "
        "the CPU); default train.processes.",
    ),
) -> None:
    """Train an elastic supernet (sandwich rule + in-place distillation); writes <out>/supernet.pt."""
    from .engine.training.distributed import ranks_from_environment
    from .pipeline.context import prepare
    from .pipeline.run import train_stage

    cfg = build_config(config, sets, out=out, data=data, space=space, seed=seed, epochs=epochs)
    nproc = cfg.train.processes if nproc is None else nproc
    if nproc < 1:
        raise ShiftnasError(f"--nproc must be at least 1, got {nproc}")
    from .pipeline.launch import refuse_landmarks_under_torchrun, relaunch_under_torchrun

    refuse_landmarks_under_torchrun(cfg, nproc)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(nproc, cfg.threads)
        return
    ranks = ranks_from_environment()
    cfg.train.processes = ranks.world  # what trained the weights (part of the checkpoint's identity)
    ctx = prepare(cfg, quiet=not ranks.is_main, search=False)
    train_stage(ctx, ranks)
    if ranks.is_main:
        err.print(
            f"supernet: {ctx.rundir.supernet}" + (f" (trained by {ranks.world} processes)" if ranks.world > 1 else "")
        )


@app.command()
@user_errors
def search(
    checkpoint: Optional[str] = typer.Option(
        None, help="Supernet checkpoint (shiftnas or published OFA); not needed for a table space."
    ),
    config: Optional[Path] = ConfigOpt,
    sets: Optional[List[str]] = SetOpt,
    out: Optional[str] = OutOpt,
    data: Optional[str] = DataOpt,
    space: Optional[str] = SpaceOpt,
    seed: Optional[int] = SeedOpt,
    generations: Optional[int] = typer.Option(None, help="NSGA-II generations."),
    pop_size: Optional[int] = typer.Option(None, help="NSGA-II population size."),
    objectives: Optional[str] = typer.Option(None, help="Comma-separated: error,latency,macs,params."),
    constraint: Optional[List[str]] = ConstraintOpt,
    pick: Optional[str] = typer.Option(None, help="knee | max-acc | min-latency | trade-off"),
    shift: Optional[str] = ShiftOpt,
    latency: Optional[str] = LatencyOpt,
    dask: Optional[str] = DaskOpt,
    mode: Optional[str] = ModeOpt,
    track: Optional[str] = TrackOpt,
    deploy: Optional[str] = DeployOpt,
) -> None:
    """Search a trained supernet (or a table: --space table:PATH); writes the front, plots and the pick's ONNX."""
    from .pipeline.run import run as run_pipeline

    cfg = build_config(
        config,
        sets,
        out=out,
        data=data,
        space=space,
        seed=seed,
        checkpoint=checkpoint,
        generations=generations,
        pop_size=pop_size,
        objectives=objectives,
        constraints=constraint,
        pick=pick,
        shift=shift,
        latency=latency,
        dask=dask,
        mode=mode,
        track=track,
        deploy=deploy,
    )
    if not cfg.checkpoint and not is_table(cfg.space.name):
        raise ShiftnasError("search needs --checkpoint (a trained supernet), or a table space: --space table:PATH")
    run_pipeline(cfg)  # with cfg.checkpoint set, the supernet is loaded, not trained


@app.command()
@user_errors
def transfer(
    supernet: str = typer.Option(..., help="A supernet trained on another data set (shiftnas checkpoint)."),
    data: str = typer.Option(..., "--data", help="The new data set (see `shiftnas run --help`)."),
    config: Optional[Path] = ConfigOpt,
    sets: Optional[List[str]] = SetOpt,
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory (default runs/transfer)."),
    seed: Optional[int] = SeedOpt,
    train: str = typer.Option("all", help="What the search trains: all (backbone too) | classifier."),
    shift: str = typer.Option("per_iteration", help="Shift strategy that trains the new classifier."),
    generations: Optional[int] = typer.Option(None, help="NSGA-II generations."),
    pop_size: Optional[int] = typer.Option(None, help="NSGA-II population size."),
    objectives: Optional[str] = typer.Option(None, help="Comma-separated: error,latency,macs,params."),
    constraint: Optional[List[str]] = ConstraintOpt,
    track: Optional[str] = TrackOpt,
    deploy: Optional[str] = DeployOpt,
) -> None:
    """Transfer a supernet to a new data set: reset its classifier and train it through the shifting search."""
    from .engine.checkpoint import read_checkpoint
    from .pipeline.groundtruth import space_overrides
    from .pipeline.run import run as run_pipeline

    base = ["reset_classifier=true", f"shift.trainable={train}", "shift.lr=0.05", "shift.steps=10"]
    base += space_overrides(read_checkpoint(supernet))
    cfg = build_config(
        config,
        base + list(sets or []),
        out=out or "runs/transfer",
        data=data,
        seed=seed,
        checkpoint=supernet,
        generations=generations,
        pop_size=pop_size,
        objectives=objectives,
        constraints=constraint,
        shift=shift,
        track=track,
        deploy=deploy,
    )
    run_pipeline(cfg)  # with cfg.checkpoint set, the supernet is loaded, not trained


@app.command()
@user_errors
def export(
    run_dir: Path = typer.Argument(..., help="A run directory made by `shiftnas run` or `search`."),
    pick: str = typer.Option(
        "knee", help="knee | max-acc | min-latency | trade-off | an architecture key from pareto.csv"
    ),
    out: Optional[Path] = typer.Option(None, help="ONNX file (default <run>/subnet_<pick>.onnx)."),
    deploy: Optional[str] = typer.Option(None, help="fp32 | int8 (default: the run's precision)."),
) -> None:
    """Export a subnet of a finished run's front to ONNX: FP32 parity-checked against PyTorch, or INT8
    (ONNX Runtime static quantization) with its accuracy drop."""
    from .pipeline.export import export_from_run
    from .pipeline.run import export_line

    info = export_from_run(run_dir, pick, out, deploy)
    err.print(f"{info['key']} -> {info['onnx']} ({export_line(info)})")


@app.command()
@user_errors
def finetune(
    run_dir: Path = typer.Argument(..., help="A run directory made by `shiftnas run` or `search`."),
    pick: str = typer.Option(
        "knee",
        help="front (every subnet of the front) | knee | max-acc | "
        "min-latency | trade-off | an architecture key from pareto.csv",
    ),
    max_epochs: Optional[int] = typer.Option(
        None, help="Phase 1: most epochs (the cosine schedule's length; default 30)."
    ),
    patience: Optional[int] = typer.Option(
        None, help="Phase 1: stop when the val loss has not improved this long (default 5)."
    ),
    lr: Optional[float] = typer.Option(None, help="SGD learning rate (default 0.01)."),
    seed: int = typer.Option(0, help="Seed of the batch order."),
    dask: Optional[str] = typer.Option(
        None, "--dask", help='Fine-tune on the Dask workers of this scheduler (started with --resources "train=1").'
    ),
) -> None:
    """Fine-tune chosen subnets in two phases (epochs found on train/val, then train+val); export to ONNX."""
    from .config import FinetuneRecipe
    from .pipeline.finetune import finetune_from_run

    given = {"epochs": max_epochs, "patience": patience, "lr": lr}
    recipe = FinetuneRecipe(**{k: v for k, v in given.items() if v is not None})
    finetune_from_run(run_dir, pick, recipe, seed=seed, dask=dask)


@app.command()
@user_errors
def profile(
    model: Optional[Path] = typer.Argument(None, help="An ONNX model file (or use --space for a dataset)."),
    space: Optional[str] = typer.Option(
        None,
        "--space",
        help="Profile a search space on this device: sample, export and measure --samples architectures.",
    ),
    samples: int = typer.Option(100, help="With --space: architectures to measure (extremes included)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="With --space: the latency dataset (JSON, resumable), e.g. DEVICE.json."
    ),
    resolutions: Optional[str] = typer.Option(
        None, help="With --space: comma-separated resolutions (default: the space's; must match the search)."
    ),
    seed: int = typer.Option(0, help="With --space: seed of the architecture sample."),
    prior: Optional[Path] = typer.Option(
        None, help="With --space: a latency dataset of another device to transfer from (few samples suffice)."
    ),
    dask: Optional[str] = typer.Option(
        None, help="With --space: measure on the Dask workers of this scheduler (started with --resources latency=1)."
    ),
    dask_timeout: float = typer.Option(
        600.0, min=1, help="With --dask: longest wait in seconds for one measurement on a worker."
    ),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime intra-op threads (default 1)."),
    batch_size: Optional[int] = typer.Option(None, help="Batch size of the timed input (default 1)."),
    repeats: Optional[int] = typer.Option(None, help="Timed blocks, each in a fresh session (default 3)."),
    runs: Optional[int] = typer.Option(None, help="Timed runs per block (default 30)."),
    warmup: Optional[int] = typer.Option(None, help="Warm-up runs per block (default 10)."),
    references: Optional[int] = typer.Option(
        None, help="With --space: reference subnets interleaved with each candidate (0-3, default 3)."
    ),
    provider: Optional[str] = typer.Option(
        None, help="CPUExecutionProvider (default) | CUDAExecutionProvider | TensorrtExecutionProvider."
    ),
    deploy: Optional[str] = typer.Option(None, help="fp32 (default) | int8: measure the INT8 quantization."),
    nodes: bool = typer.Option(True, help="For a model: also show ONNX Runtime's per-node profile."),
    plot: Optional[Path] = typer.Option(
        None, help="For a model: per-node bar chart PNG (default <model>.profile.png)."
    ),
) -> None:
    """Latency on this machine: of one ONNX model (with a per-node profile), or of a space (a dataset)."""
    from .config import LatencyConfig, build

    given = {
        "intra_threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "runs": runs,
        "batch_size": batch_size,
        "provider": provider,
        "references": references,
        "precision": deploy,
    }
    cfg = build(LatencyConfig, {k: v for k, v in given.items() if v is not None}, "")
    if (model is None) == (space is None):
        raise ShiftnasError("give either an ONNX model or --space SPACE --out DEVICE.json")
    if model is not None:
        from .pipeline.profile import profile_onnx_file

        if plot is not None and not nodes:
            raise ShiftnasError("--plot draws the per-node profile: drop --no-nodes, or --plot")

        profile_onnx_file(model, cfg, nodes=nodes, plot=plot)
        return
    if out is None:
        raise ShiftnasError("--space needs --out DEVICE.json (where the latency dataset is written)")
    from .pipeline.profile import profile_space

    profile_space(
        space, out, samples, cfg, resolutions=resolutions, seed=seed, dask=dask, prior=prior, dask_timeout=dask_timeout
    )


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ShiftnasError(f"{option} must be comma-separated integers, got '{text}'") from None


@app.command()
@user_errors
def groundtruth(
    out: Path = typer.Option(
        Path("groundtruth/compact-mbv3_fashion.jsonl"),
        "--out",
        "-o",
        help="Append-only JSONL table (a .meta.json and a .csv are written beside it).",
    ),
    data: str = typer.Option("fashion-mnist", "--data", help="Data set the architectures are trained on."),
    space: str = typer.Option("compact-mbv3", "--space", help="Search space to sample."),
    samples: int = typer.Option(100, help="Architectures (the smallest and largest included)."),
    sampling: str = typer.Option("stratified", help="stratified (evenly over MACs) | uniform."),
    best: Optional[int] = typer.Option(
        None,
        help="Instead of sampling: the BEST architectures of the existing table (e.g. a third seed for the top 20).",
    ),
    seeds: str = typer.Option("0,1", help="Comma-separated training seeds per architecture."),
    epochs: Optional[int] = typer.Option(None, help="Stand-alone training epochs (the fixed recipe)."),
    lr: Optional[float] = typer.Option(None, help="Stand-alone learning rate."),
    batch_size: Optional[int] = typer.Option(None, help="Stand-alone batch size."),
    sample_seed: int = typer.Option(0, help="Seed of the architecture sample."),
    threads: int = typer.Option(1, help="torch threads (with --workers 1)."),
    workers: int = typer.Option(1, help="Architectures trained at once, one process and one thread each."),
    dask: Optional[str] = typer.Option(
        None, "--dask", help='Train on the Dask workers of this scheduler (started with --resources "train=1").'
    ),
    report: Optional[Path] = typer.Option(
        None,
        "--report",
        help="Instead of building: the reliability of this table (noise ceiling, proxies), written beside it.",
    ),
    sets: Optional[List[str]] = SetOpt,
) -> None:
    """Train a sample of architectures stand-alone with a fixed recipe: the ground truth for ranking (resumable)."""
    if report is not None:
        from .pipeline.groundtruth import write_reliability

        typer.echo(write_reliability(report))
        return
    from .config import StandaloneRecipe
    from .pipeline.groundtruth import build_table

    cfg = build_config(None, list(sets or []) + [f"threads={threads}"], data=data, space=space)
    given = {"epochs": epochs, "lr": lr, "batch_size": batch_size}
    recipe = StandaloneRecipe(**{k: v for k, v in given.items() if v is not None})
    build_table(
        cfg,
        out,
        recipe,
        _int_list(seeds, "--seeds"),
        samples,
        sampling=sampling,
        best=best,
        sample_seed=sample_seed,
        workers=workers,
        dask=dask,
    )


@app.command()
@user_errors
def rank(
    supernet: str = typer.Option(..., help="Supernet checkpoint (shiftnas format)."),
    table: Path = typer.Option(..., help="Ground-truth table made by `shiftnas groundtruth`."),
    out: Optional[Path] = typer.Option(None, help="Write the report (and per-architecture scores) as JSON."),
    sets: Optional[List[str]] = SetOpt,
) -> None:
    """How well a supernet ranks architectures against stand-alone ground truth (Kendall tau, P@k, ...)."""
    from .pipeline.groundtruth import rank_against_table

    rank_against_table(supernet, table, out, list(sets or []))


@app.command()
@user_errors
def report(
    run_dir: Path = typer.Argument(..., help="A run directory made by `shiftnas run` or `search`."),
) -> None:
    """(Re)build the run's self-contained interactive report.html (opens offline in any browser)."""
    from .pipeline.report import write_report
    from .pipeline.rundir import RunDir

    err.print(f"report: {write_report(RunDir(run_dir))}")


@app.command()
def spaces() -> None:
    """List the registered search spaces."""
    from .search_spaces import get_space, list_spaces
    from .search_spaces.table import NAMED_TABLES

    for name in list_spaces():
        if name == "table":
            for table in NAMED_TABLES:
                sp = get_space("table", path=table)
                typer.echo(f"table:{table}: {sp.n_var} genes, {sp.size()} networks (a table: nothing to train)")
            typer.echo("table:PATH: any CSV or JSON table of architectures and measured objectives")
            continue
        sp = get_space(name)
        typer.echo(f"{name}: {sp.n_var} genes, {sp.size():.3g} architectures, resolutions {list(sp.resolutions)}")


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point. SIGTERM (``kill``, a scheduler ending a job) is handled like Ctrl-C:
    workers are stopped, what finished is saved, and the same command resumes. A malformed command line
    (an unknown option, a value of the wrong type) is one ``error:`` line and exit 2, as other bad input is."""
    try:  # recent typer releases raise the exceptions of the click they vendor, older ones click's own
        from typer._click import exceptions as cli_errors
    except ImportError:
        from click import exceptions as cli_errors

    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        result = app(standalone_mode=False)
    except getattr(cli_errors, "NoArgsIsHelpError", ()) as exc:  # `shiftnas` alone: the help (click >= 8.2)
        if exc.format_message():  # typer's rich help is already printed
            exc.show()
        sys.exit(exc.exit_code)
    except cli_errors.ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C outside a command's own handling
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    sys.exit(main())
