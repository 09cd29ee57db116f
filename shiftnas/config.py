"""Every setting of shiftnas in one place: typed dataclasses with their defaults and ranges.

A run's configuration is a :class:`RunConfig` loaded from an optional YAML file and ``section.key=value``
overrides (:func:`load_config`). Every value is type-checked strictly (an integer key refuses ``2.7``,
a boolean refuses ``maybe``) and range-checked (``search.pop_size >= 2``, ...) when it is loaded, so a
bad setting fails in one line before any work. Names that resolve through a registry (data sets,
spaces, objectives, shift strategies, searchers, surrogates, picks) are checked by
``shiftnas.pipeline.context.prepare``, which knows the registries; this module imports no engine code
and no torch, so ``import shiftnas.config`` stays light.

The other settings dataclasses live here too: :class:`LatencyConfig` (ONNX Runtime measurement),
:class:`StandaloneRecipe` (ground-truth training), :class:`FinetuneRecipe` (fine-tuning).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with its allowed range: ``low <= v <= high``, ``above < v < below``, one of ``choices``.

    For a list the range applies to every item.
    """
    rules = {
        k: v
        for k, v in (("low", low), ("high", high), ("above", above), ("below", below), ("choices", choices))
        if v is not None
    }
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=rules)
    return field(default=default, metadata=rules)


def new_default(cls: type, name: str, default: Any) -> Any:
    """Field ``name`` of settings class ``cls`` with another default and the same allowed range (for a subclass)."""
    return field(default=default, metadata=cls.__dataclass_fields__[name].metadata)


class Settings:
    """Base of every settings dataclass: values are type- and range-checked when an instance is made,
    whether it comes from a YAML file, an override or a direct call (``TrainConfig(epochs=0)`` fails)."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            kind = hints[f.name]
            if dataclasses.is_dataclass(kind):
                continue
            name = f"{_SECTION.get(type(self).__name__, '')}{f.name}"
            value = _typed(getattr(self, f.name), kind, name)
            _check_range(value, dict(f.metadata), name)
            object.__setattr__(self, f.name, value)


# ----------------------------------------------------------------------------- sections


@dataclass
class DataConfig(Settings):
    dataset: str = "mnist5k"  # mnist5k | digits | fashion-mnist | cifar10 | cifar100 | imagefolder:PATH
    root: str | None = None  # where fashion-mnist / cifar10 / cifar100 live on disk
    seed: int = setting(0, low=0)  # seed of the train / val / test split
    train_size: int | None = setting(None, low=1)  # a stratified subset of the training pool (the rest: held out)
    download: bool = False  # let torchvision download fashion-mnist / cifar10 / cifar100


@dataclass
class SpaceConfig(Settings):
    name: str = "compact-mbv3"
    resolutions: list[int] | None = setting(None, low=8)  # None: the space's default list


@dataclass
class TrainConfig(Settings):
    """Supernet training: sandwich rule + in-place distillation, SGD (see ``engine.training.optim``)."""

    epochs: int = setting(6, low=1)
    batch_size: int = setting(64, low=2)
    lr: float = setting(0.1, above=0)
    momentum: float = setting(0.9, low=0, below=1)
    weight_decay: float = setting(3e-5, low=0)
    warmup_steps: int = setting(30, low=0)
    n_random: int = setting(2, low=0)  # random subnets per step besides the largest and smallest
    kd_ratio: float = setting(1.0, low=0)  # weight of in-place distillation from the largest subnet
    grad_clip: float = setting(5.0, above=0)
    # augmentation: every training image moved by up to this many pixels in each direction, the border zero
    # (a padded random crop), drawn anew each step; 0: none
    augment_shift: int = setting(0, low=0)
    # the weights a supernet trained from scratch starts from: PyTorch's layer defaults, or OFA's ``he_fout``
    # (``ofa.utils.my_modules.init_models``: convolutions normal with std sqrt(2 / (k^2 out_channels)))
    init: str = setting("torch", choices=("torch", "he_fout"))
    # an exponential moving average of the weights over the steps, what training leaves in the supernet
    # (engine/training/averaging.py); the decay ramps up as (1 + t) / (10 + t), so a short run may not reach it
    # (the default run's 330 steps end at 0.974); 0: the last step's weights. No gain in the default run (README)
    ema_decay: float = setting(0.0, low=0, below=1)
    # processes that train the supernet together under torchrun, each on its shard of every batch
    # (`shiftnas train --nproc` overrides it); the same seed and value give the same weights
    processes: int = setting(1, low=1)
    # with processes > 1: BatchNorm statistics over the global batch (exact, one all-reduce per BN layer:
    # 1.6x slower than one process on 2 CPU cores) or, false, over each process's shard (PyTorch DDP's and
    # OFA's way; bench/results/run_budget.md)
    sync_bn: bool = True


@dataclass
class EvalConfig(Settings):
    # fixed training images used to recalibrate BN statistics (128 ranked no worse on Fashion-MNIST,
    # bench/results/eval_budget_seed*.md, but scored the default mnist5k run's subnets 1 point lower: README)
    calib_size: int = setting(500, low=1)
    batch_size: int = setting(100, low=1)  # recalibration and validation batch (100-250 is fastest on CPU)
    # validation images behind a 'val' score: all, or a weighted stratified subset (engine/evaluation/
    # validation_subset.py: every image `pilots` subnets disagree on + `easy_fraction` of the rest), an unbiased
    # estimate of the full accuracy from ~45 % of the forward (bench/results/eval_budget_seed*.md);
    # auto: stratified on validation splits of at least 2,000 images, all on smaller ones
    val_images: str = setting("auto", choices=("auto", "all", "stratified"))
    pilots: int = setting(8, low=2)
    easy_fraction: float = setting(0.3, above=0, high=1)


@dataclass
class LatencyConfig(Settings):
    """Session settings and sampling plan of one ONNX Runtime latency measurement (latency.md §2.4-2.5)."""

    intra_threads: int = setting(1, low=1)
    inter_threads: int = setting(1, low=1)
    # untimed runs at the start of every block (with candidate_sessions once: at the start of its one session)
    warmup: int = setting(10, low=0)
    repeats: int = setting(3, low=1)  # blocks, each warmed up (per_block) or re-warmed with 2 runs (once)
    runs: int = setting(30, low=1)  # timed runs per block
    batch_size: int = setting(1, low=1)
    precision: str = setting("fp32", choices=("fp32", "int8"))  # int8: ORT static quantization (QDQ)
    provider: str = "CPUExecutionProvider"  # checked against this onnxruntime build when a run is prepared
    # reference subnets interleaved with every candidate: their ratios give `shiftnas profile`'s datasets a
    # scale that survives drift (a search measures without them: HardwareConfig)
    references: int = setting(3, low=0, high=3)
    drift: float = setting(0.05, above=0, below=1)  # re-measure a block whose reference moved more than this
    max_remeasure: int = setting(3, low=0)  # re-measured blocks per candidate, at most
    # kept + nearest (the defaults) measure ~1.8x cheaper than fresh + all at the same repeat agreement of the
    # corrected latency within noise (bench/results/latency_protocols.md)
    # fresh: every block opens and warms new reference sessions; kept: each reference's session is opened and
    # warmed once per process and reused by every later block (the candidate's session stays fresh per block)
    reference_sessions: str = setting("kept", choices=("fresh", "kept"))
    # all: every block times every reference; nearest: blocks after the first time only the reference nearest
    # the candidate in the first block (the one its ratio is taken to); guessed: every block times only the
    # reference whose latency (timed once per process) is nearest the candidate's warm-up runs
    references_timed: str = setting("nearest", choices=("all", "nearest", "guessed"))
    # per_block: every block opens and warms a fresh session for the candidate; once: one session per
    # measurement, warmed before the first block and re-warmed with 2 runs at the start of each block
    candidate_sessions: str = setting("per_block", choices=("per_block", "once"))


LATENCY_MODE = re.compile(r"^(measured|predicted:.+)$")


@dataclass
class HardwareConfig(LatencyConfig):
    """The ONNX Runtime measurement settings plus where latency comes from and is cached."""

    # A search ranks the raw medians of one process: it times the candidate alone, in one session per measurement
    # (2.5-3.1x cheaper than 3 interleaved references and a session per block, whose raw medians repeated no
    # better on an idle, a busy and an intermittently busy machine; bench/results/latency_protocols.md)
    references: int = new_default(LatencyConfig, "references", 0)
    candidate_sessions: str = new_default(LatencyConfig, "candidate_sessions", "once")
    cache: str | None = None  # SQLite latency cache; None: <run dir>/latency.sqlite
    latency: str = "measured"  # measured | predicted:DEVICE.json (made by `shiftnas profile --space`)
    dask: str | None = None  # Dask scheduler: `latency=1` workers measure, `eval=1` workers score accuracy
    dask_timeout_s: float = setting(600.0, low=1)  # longest wait for one Dask job (a lost pool fails, never hangs)
    dask_retries: int = setting(1, low=0)  # re-runs of a Dask job that raised (a dead worker's job is re-run anyway)
    # measure latency in a child process while this one scores accuracy (engine/evaluation/background_latency.py);
    # auto: when measuring here on the CPU and the machine has a core for it beside `threads`
    background: str = setting("auto", choices=("auto", "on", "off"))
    # with predicted latency: the probability with which a latency constraint must hold on the device. Each
    # prediction is scaled by this quantile of the predictor's cross-validated ratios measured / predicted
    # (`latency_bound_ms`), and `latency<=5ms` bounds that; None: the constraint bounds the prediction itself.
    # The latency objective stays the prediction (one factor per run: the same front order)
    latency_confidence: float | None = setting(None, low=0.5, below=1)


@dataclass
class SearchConfig(Settings):
    objectives: list[str] = setting(factory=lambda: ["error", "latency", "macs"])
    constraints: list[str] = setting(factory=list)  # e.g. ["latency<=5ms", "macs<=10M"]
    pop_size: int = setting(24, low=2)
    generations: int = setting(8, low=1)
    pick: str = "knee"  # knee | max-acc | min-latency | trade-off
    mode: str = "nsga2"  # nsga2 (NSGA-II through the supernet) | nat (NAT / NATv2 loop)


@dataclass
class ShiftConfig(Settings):
    """Training the supernet during the search (see ``engine.search.shifting``)."""

    strategy: str = "none"  # none | per_iteration | per_candidate | region
    shift_on: str = setting("evaluated", choices=("evaluated", "nondominated"))
    lr: float = setting(0.005, above=0)
    momentum: float = setting(0.9, low=0, below=1)
    weight_decay: float = setting(3e-5, low=0)
    grad_clip: float = setting(5.0, above=0)
    batch_size: int = setting(64, low=2)
    batches_per_arch: int = setting(1, low=1)  # per_iteration: training batches accumulated per architecture
    steps: int = setting(1, low=1)  # per_iteration: optimizer steps at the end of a generation
    candidate_steps: int = setting(5, low=1)  # per_candidate: SGD steps on a candidate's path before scoring
    region_sampler: str = setting("uniform_members", choices=("uniform_members", "gene_marginals"))
    region_steps: int = setting(20, low=1)  # region: SGD steps per generation
    trainable: str = setting("all", choices=("all", "classifier"))  # which supernet weights the updates train
    reevaluate: bool = True  # fair re-evaluation after every update
    keep_checkpoints: bool = True  # save supernet_v<version>.pt after every update


@dataclass
class TableConfig(Settings):
    """The oracle of a table space (``--space table:PATH``)."""

    noise: str = setting("mean", choices=("mean", "seed"))  # mean: exact lookup; seed: one seed's value per query


@dataclass
class LandmarkConfig(Settings):
    """Landmark regularization of supernet training (Yu et al., CVPR 2021; ``engine.training.landmarks``)."""

    coef: float = setting(10.0, low=0)  # λ0, the weight reached at the last epoch
    warmup_fraction: float = setting(0.5, low=0, high=1)  # no ranking loss before floor(fraction · epochs)
    pairs_per_step: int = setting(1, low=1)
    pair_sampling: str = setting("code", choices=("code", "uniform_pairs"))  # code: a~U{0..M-2}, b~U{a+1..M-1}
    batch_source: str = setting("holdout", choices=("holdout", "val", "train"))  # regulariser batch (C3)
    loss: str = setting("relu", choices=("relu", "softplus"))  # φ: relu (mae_relu) | softplus
    softplus_beta: float = setting(5.0, above=0)
    batch_size: int = setting(64, low=1)  # images in the regulariser batch
    rounds: int = setting(1, low=1)  # multi-round variant (paper Fig. 2): > 1 grows the landmark set
    per_round: int = setting(5, low=1)  # current-best architectures added as landmarks after each round
    round_pop_size: int = setting(16, low=2)  # NSGA-II that finds the current best: population
    round_generations: int = setting(4, low=1)  # ... and generations


@dataclass
class LandmarksConfig(LandmarkConfig):
    table: str | None = None  # ground-truth table (shiftnas groundtruth); None: no regularization
    num: int = setting(10, low=2)  # M landmark architectures taken from the table
    selection: str = setting("fixed", choices=("fixed", "random"))  # fixed: evenly spaced ground-truth ranks


@dataclass
class NATConfig(Settings):
    """The NAT / NATv2 loop; defaults are NATv2's, scaled down for a CPU (methods.md §4.7)."""

    policy: str = setting("natv2", choices=("natv2", "nat"))  # sets the defaults of the four below left as None
    init: str | None = setting(None, choices=("genome-uniform", "architecture-space"))
    preprocess: bool | None = None  # NATv2: evaluate oversample x archive_size, keep the best
    update: str | None = setting(None, choices=("grow", "bounded"))
    surrogate: str | None = None  # lgbm (NATv2) | rbf (NAT) | gp | as (adaptive switching)
    archive_size: int = setting(30, low=4)  # n_doe
    oversample: int = setting(10, low=1)
    candidates: int = setting(8, low=1)  # K per iteration
    iterations: int = setting(5, low=1)
    top_n: int = setting(15, low=1)  # archive members the gene distributions are fitted to
    aux_pop_size: int = setting(40, low=2)
    aux_generations: int = setting(15, low=1)
    adapt_steps: int = setting(20, low=0)  # supernet SGD steps per iteration (0: no adaptation)
    adapt_subnets: int = setting(4, low=0)  # subnets per step besides the largest (the teacher)
    adapt_lr: float = setting(0.005, above=0)  # peak of the search-long warm-up + cosine schedule
    adapt_momentum: float = setting(0.9, low=0, below=1)
    adapt_warmup_steps: int = setting(5, low=0)
    adapt_weight_decay: float = setting(3e-5, low=0)
    adapt_grad_clip: float = setting(5.0, above=0)
    adapt_batch_size: int = setting(64, low=2)
    kd_ratio: float = setting(1.0, low=0)

    def resolved(self) -> NATConfig:
        """A copy with the policy's defaults filled in."""
        v2 = self.policy == "natv2"
        return dataclasses.replace(
            self,
            init=self.init or ("architecture-space" if v2 else "genome-uniform"),
            preprocess=v2 if self.preprocess is None else self.preprocess,
            update=self.update or ("bounded" if v2 else "grow"),
            surrogate=self.surrogate or ("lgbm" if v2 else "rbf"),
        )


@dataclass
class RunConfig(Settings):
    out: str = "runs/default"
    seed: int = setting(0, low=0)
    threads: int = setting(1, low=1)  # torch threads for training and evaluation (bench/results/threads.md)
    checkpoint: str | None = None  # load this supernet instead of training one
    track: str = ""  # experiment tracking: mlflow[:URI] | tensorboard[:DIR] ('' = none)
    reset_classifier: bool = False  # transfer: re-initialise the loaded supernet's classifier
    data: DataConfig = setting(factory=DataConfig)
    space: SpaceConfig = setting(factory=SpaceConfig)
    train: TrainConfig = setting(factory=TrainConfig)
    eval: EvalConfig = setting(factory=EvalConfig)
    hardware: HardwareConfig = setting(factory=HardwareConfig)
    search: SearchConfig = setting(factory=SearchConfig)
    shift: ShiftConfig = setting(factory=ShiftConfig)
    landmarks: LandmarksConfig = setting(factory=LandmarksConfig)
    nat: NATConfig = setting(factory=NATConfig)
    table: TableConfig = setting(factory=TableConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_run(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- recipes (not part of a run)


@dataclass
class StandaloneRecipe(Settings):
    """The fixed recipe every architecture of a ground-truth table is trained with, from scratch.

    SGD with Nesterov momentum (no weight decay on BN parameters and biases), linear warm-up for
    ``warmup_steps`` steps then cosine decay to zero, cross-entropy, gradient-norm clipping.
    """

    epochs: int = setting(6, low=1)
    batch_size: int = setting(128, low=2)
    lr: float = setting(0.1, above=0)
    momentum: float = setting(0.9, low=0, below=1)
    weight_decay: float = setting(5e-5, low=0)
    warmup_steps: int = setting(10, low=0)
    grad_clip: float = setting(5.0, above=0)


@dataclass
class FinetuneRecipe(StandaloneRecipe):
    """The stand-alone recipe with phase 1's limits: ``epochs`` is the most phase 1 trains and the
    cosine schedule's length (NATv2: 150 epochs, patience 30, SGD lr 1e-4 from ImageNet weights)."""

    epochs: int = setting(30, low=1)
    batch_size: int = setting(64, low=2)
    patience: int = setting(5, low=1)
    lr: float = setting(0.01, above=0)
    weight_decay: float = setting(5e-4, low=0)
    warmup_steps: int = setting(0, low=0)


# ----------------------------------------------------------------------------- checking values


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# the prefix a key of each section is named with in error messages
_SECTION = {
    "DataConfig": "data.",
    "SpaceConfig": "space.",
    "TrainConfig": "train.",
    "EvalConfig": "eval.",
    "LatencyConfig": "hardware.",
    "HardwareConfig": "hardware.",
    "SearchConfig": "search.",
    "ShiftConfig": "shift.",
    "LandmarkConfig": "landmarks.",
    "LandmarksConfig": "landmarks.",
    "NATConfig": "nat.",
    "TableConfig": "table.",
    "StandaloneRecipe": "recipe.",
    "FinetuneRecipe": "recipe.",
}


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(kind) if a is not type(None)]
        return " or ".join(parts) + " (or null)"
    if origin is list:
        return f"a list of {_describe(typing.get_args(kind)[0])}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(kind, str(kind))


def _typed(value: Any, kind: Any, name: str) -> Any:
    """``value`` as ``kind`` (int, float, bool, str, list[...], X | None); ConfigError if it is not one."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None:
            return None
        return _typed(value, args[0], name)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{name}' expects {_describe(kind)}, got {value!r}")
        (item,) = typing.get_args(kind)
        return [_typed(v, item, name) for v in value]
    if kind is str and isinstance(value, bool):
        return "on" if value else "off"  # YAML 1.1 reads on/off/yes/no/true/false as booleans
    if kind is str and isinstance(value, (int, float)):
        return str(value)  # YAML reads `out: 2024` as a number
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(kind)
    if not ok:
        raise ConfigError(f"config key '{name}' expects {_describe(kind)}, got {value!r}")
    return float(value) if kind is float else value


def _check_range(value: Any, rules: dict[str, Any], name: str) -> None:
    for v in value if isinstance(value, list) else [value]:
        if v is None:
            continue
        if "choices" in rules and v not in rules["choices"]:
            raise ConfigError(f"config key '{name}' must be one of {', '.join(rules['choices'])}, got {v!r}")
        bounds = [
            (">=", rules.get("low"), v >= rules["low"] if "low" in rules else True),
            ("<=", rules.get("high"), v <= rules["high"] if "high" in rules else True),
            (">", rules.get("above"), v > rules["above"] if "above" in rules else True),
            ("<", rules.get("below"), v < rules["below"] if "below" in rules else True),
        ]
        for op, bound, ok in bounds:
            if not ok:
                raise ConfigError(f"config key '{name}' must be {op} {bound:g}, got {v!r}")


def build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """An instance of the settings dataclass ``cls`` from ``values`` (missing keys keep their defaults);
    unknown keys are refused with the known ones listed, the instance checks every value itself."""
    hints = _hints(cls)
    known = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown config key '{where}{key}'; known: {', '.join(known)}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ConfigError(f"config section '{where}{key}' must be a mapping")
            kwargs[key] = build(hints[key], value, f"{where}{key}.")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _check_run(cfg: RunConfig) -> None:
    """The cross-key rules no single key can state."""
    if not LATENCY_MODE.match(cfg.hardware.latency):
        raise ConfigError(
            f"hardware.latency must be 'measured' or 'predicted:DEVICE.json', got '{cfg.hardware.latency}'"
        )
    if len(cfg.search.objectives) < 2:
        raise ConfigError(f"a multi-objective search needs at least two objectives, got {cfg.search.objectives}")
    if len(set(cfg.search.objectives)) != len(cfg.search.objectives):
        raise ConfigError(f"duplicate objectives in {cfg.search.objectives}")
    if cfg.search.mode == "nat":
        if cfg.search.objectives[0] != "error":
            raise ConfigError("--mode nat predicts accuracy: the first objective must be 'error'")
        if not cfg.shift.reevaluate:
            raise ConfigError(
                "--mode nat always re-scores its archive after the supernet changes; "
                "shift.reevaluate=false applies to --mode nsga2 only"
            )
    if cfg.track and cfg.track.partition(":")[0] not in ("mlflow", "tensorboard"):
        raise ConfigError(f"track must be mlflow[:URI] or tensorboard[:DIR], got '{cfg.track}'")
    if cfg.landmarks.rounds > 1 and not cfg.landmarks.table:
        raise ConfigError("landmarks.rounds > 1 needs landmarks.table")


# ----------------------------------------------------------------------------- loading


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` -> (['train', 'epochs'], 3) (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] | None = None, base: dict[str, Any] | None = None
) -> RunConfig:
    """A checked :class:`RunConfig` from an optional YAML file, then ``section.key=value`` overrides."""
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"config {p} is a folder, not a YAML file")
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"config {p} is not a text (UTF-8) file") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"cannot parse {p}{where}: {problem}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p} must contain a mapping at the top level")
        values = _merge(values, loaded)
    for text in overrides or []:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        values = _merge(values, nested)
    return build(RunConfig, values)


def config_text(cfg: RunConfig) -> str:
    """The resolved config as YAML (what ``config.yaml`` of a run holds)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
