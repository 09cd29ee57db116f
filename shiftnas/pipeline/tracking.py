"""Experiment tracking (``--track``): the resolved config, the search's metrics per step and the run's
artifacts, sent to MLflow (``mlflow[:URI]``) or TensorBoard (``tensorboard[:DIR]``).

Both are optional extras (``pip install 'shiftnas[track]'``); a missing one is a one-line error before
the run directory is touched. A resumed run continues the same MLflow run (its id is kept in
``tracking.json``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig
from ..errors import ConfigError
from ..io import atomic_write_json
from .rundir import RunDir

TRACKERS = {"mlflow": "mlflow", "tensorboard": "tensorboard"}  # kind -> the module it needs
EXPERIMENT = "shiftnas"


def parse_track(spec: str) -> tuple[str, str]:
    """``'mlflow:sqlite:///m.db'`` -> ``('mlflow', 'sqlite:///m.db')``; ``''`` -> ``('', '')``."""
    kind, _, target = spec.partition(":")
    if spec and kind not in TRACKERS:
        raise ConfigError(f"unknown tracker '{kind}' in --track {spec}: choose mlflow[:URI] or tensorboard[:DIR]")
    return kind, target


def check_tracker(spec: str) -> None:
    """The tracker of ``spec`` can be used here (its package imports)."""
    kind, _ = parse_track(spec)
    if not kind:
        return
    try:
        __import__(TRACKERS[kind])
    except ImportError:
        raise ConfigError(f"--track {kind} needs the {TRACKERS[kind]} package: pip install 'shiftnas[track]'") from None


def flat_params(cfg: RunConfig) -> dict[str, str]:
    """The resolved config as ``{'search.pop_size': '20', ...}``."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)

    walk("", cfg.to_dict())
    return out


def step_metrics(stats: dict[str, Any]) -> dict[str, float]:
    """The numbers of one search step worth plotting over time."""
    values = {k: stats.get(k) for k in ("hypervolume", "evaluated", "front_size", "best_error", "supernet_version")}
    values["surrogate_tau"] = (stats.get("surrogate_quality") or {}).get("kendall_tau")
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and np.isfinite(v)}


class Tracker:
    """No tracking (``--track`` not given); the interface the others implement."""

    def step(self, step: int, values: dict[str, float], prefix: str = "search") -> None:
        pass

    def artifacts(self, paths: list[Path]) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


class MLflowTracker(Tracker):
    """One MLflow run per run directory, in the experiment ``shiftnas`` of the store at ``uri``."""

    def __init__(self, uri: str, rundir: RunDir, params: dict[str, str]) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri or None)
        state_path = rundir.tracking
        saved = json.loads(state_path.read_text()).get("mlflow") if state_path.is_file() else None
        if saved and saved.get("uri") == uri:
            self.run_id = saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(EXPERIMENT)
        self.run_id = self.client.create_run(experiment_id, run_name=rundir.path.resolve().name).info.run_id
        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])
        atomic_write_json(state_path, {"mlflow": {"uri": uri, "run_id": self.run_id}})

    def step(self, step: int, values: dict[str, float], prefix: str = "search") -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"{prefix}/{k}", v, now, step) for k, v in values.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


class TensorBoardTracker(Tracker):
    """TensorBoard scalars (and the config as text) under ``DIR`` (default: ``<run>/tensorboard``)."""

    def __init__(self, logdir: str, rundir: RunDir, params: dict[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=logdir or str(rundir.file("tensorboard")))
        self.writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in params.items()))

    def step(self, step: int, values: dict[str, float], prefix: str = "search") -> None:
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.writer.flush()

    def finish(self, status: str) -> None:
        self.writer.close()


def open_tracker(cfg: RunConfig, rundir: RunDir) -> Tracker:
    kind, target = parse_track(cfg.track)
    if not kind:
        return Tracker()
    cls = MLflowTracker if kind == "mlflow" else TensorBoardTracker
    return cls(target, rundir, flat_params(cfg))


@contextlib.contextmanager
def tracking(cfg: RunConfig, rundir: RunDir) -> Iterator[Tracker]:
    """The run's tracker, finished as FINISHED, KILLED (Ctrl-C) or FAILED."""
    tracker = open_tracker(cfg, rundir)
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.finish("KILLED")
        raise
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")
