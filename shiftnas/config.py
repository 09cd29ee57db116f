"""Typed run configuration: dataclasses loaded from YAML and ``section.key=value`` overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .engine.landmarks import LandmarkConfig
from .engine.nat_config import NATConfig
from .hardware.latency import LatencyConfig


@dataclass
class DataConfig:
    dataset: str = "mnist5k"          # mnist5k | digits | fashion-mnist | cifar10 | cifar100 | imagefolder:PATH
    root: str | None = None           # where fashion-mnist/cifar10/cifar100 live on disk
    seed: int = 0                     # seed of the train/val/test split
    train_size: int | None = None     # a stratified subset of the training pool as train (the rest: held out)
    download: bool = False            # let torchvision download fashion-mnist/cifar10/cifar100


@dataclass
class SpaceConfig:
    name: str = "compact-mbv3"
    resolutions: list[int] | None = None   # None: the space's default list


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 3e-5
    warmup_steps: int = 30
    n_random: int = 2                 # random subnets per step besides the largest and smallest
    kd_ratio: float = 1.0             # weight of in-place distillation from the largest subnet
    grad_clip: float = 5.0


@dataclass
class EvalConfig:
    calib_size: int = 500             # fixed training images used to recalibrate BN statistics
    batch_size: int = 100             # recalibration and validation batch (100-250 is fastest on CPU)


@dataclass
class HardwareConfig(LatencyConfig):
    """The ONNX Runtime measurement settings (see ``LatencyConfig``) plus where results are cached."""

    cache: str | None = None          # SQLite latency cache; None: <run dir>/latency.sqlite
    latency: str = "measured"         # measured | predicted:DEVICE.json (made by `shiftnas profile --space`)
    dask: str | None = None           # Dask scheduler whose `--resources latency=1` workers measure


@dataclass
class SearchConfig:
    objectives: list[str] = field(default_factory=lambda: ["error", "latency", "macs"])
    constraints: list[str] = field(default_factory=list)   # e.g. ["latency<=5ms", "macs<=10M"]
    pop_size: int = 24
    generations: int = 8
    pick: str = "knee"                # knee | max-acc | min-latency | trade-off
    mode: str = "nsga2"               # nsga2 (plain NSGA-II through the supernet) | nat (NAT / NATv2 loop)


SHIFT_STRATEGIES = ("none", "per_iteration", "per_candidate", "region")


@dataclass
class ShiftConfig:
    """Training the supernet during the search (see ``shiftnas.engine.shifting``)."""

    strategy: str = "none"            # none | per_iteration | per_candidate | region
    shift_on: str = "evaluated"       # per_iteration: evaluated | nondominated architectures of the generation
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 3e-5
    batch_size: int = 64
    batches_per_arch: int = 1         # per_iteration: training batches accumulated per architecture
    steps: int = 1                    # per_iteration: optimizer steps at the end of a generation
    candidate_steps: int = 5          # per_candidate: SGD steps on a candidate's path before scoring it
    region_sampler: str = "uniform_members"   # region: uniform_members | gene_marginals
    region_steps: int = 20            # region: SGD steps per generation
    trainable: str = "all"            # all | classifier: which supernet weights the updates train
    reevaluate: bool = True           # fair re-evaluation after every update
    keep_checkpoints: bool = True     # save supernet_v<version>.pt after every update

    def __post_init__(self) -> None:
        if self.strategy not in SHIFT_STRATEGIES:
            raise ConfigError(f"unknown shift strategy '{self.strategy}'; choose one of: {', '.join(SHIFT_STRATEGIES)}")
        if self.shift_on not in ("evaluated", "nondominated"):
            raise ConfigError(f"shift.shift_on must be 'evaluated' or 'nondominated', got '{self.shift_on}'")
        if self.trainable not in ("all", "classifier"):
            raise ConfigError(f"shift.trainable must be 'all' or 'classifier', got '{self.trainable}'")
        if self.region_sampler not in ("uniform_members", "gene_marginals"):
            raise ConfigError("shift.region_sampler must be 'uniform_members' or 'gene_marginals', "
                              f"got '{self.region_sampler}'")


@dataclass
class LandmarksConfig(LandmarkConfig):
    """Landmark regularization of supernet training (see ``shiftnas.engine.landmarks``)."""

    table: str | None = None          # ground-truth table (shiftnas groundtruth); None: no regularization
    num: int = 10                     # M landmark architectures taken from the table
    selection: str = "fixed"          # fixed (evenly spaced ground-truth ranks) | random


@dataclass
class RunConfig:
    out: str = "runs/default"
    seed: int = 0
    threads: int = 2                  # torch threads for training and evaluation
    checkpoint: str | None = None     # load this supernet instead of training one
    reset_classifier: bool = False    # transfer: re-initialise the loaded supernet's classifier
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    landmarks: LandmarksConfig = field(default_factory=LandmarksConfig)
    nat: NATConfig = field(default_factory=NATConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = [f.name for f in fields(cls)]
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown config key '{where}{key}'; known: {', '.join(known)}")
        default = getattr(defaults, key)
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"config section '{where}{key}' must be a mapping")
            kwargs[key] = _build(type(default), value, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, default, f"{where}{key}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, name: str) -> Any:
    if value is None or default is None:
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            return type(default)(value)
        if isinstance(default, list):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return list(value)
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{name}' expects {type(default).__name__}, got {value!r}") from None


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


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from an optional YAML file, then ``section.key=value`` overrides."""
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse {p}: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p} must contain a mapping at the top level")
        values = _merge(values, loaded)
    for text in overrides or []:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        values = _merge(values, nested)
    return _build(RunConfig, values, "")


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def save_config(cfg: RunConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    from .io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
