"""The run directory: every artifact's name in one place, and read-only access to a finished run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import RunConfig, config_text, load_config
from ..engine.search.base import SearchFiles
from ..errors import ShiftnasError
from ..io import atomic_write_json, atomic_write_text


class RunDir:
    """The files of one run (``cfg.out``). Only this class knows their names.

    ============================  ======================================================
    ``config.yaml``               the resolved configuration
    ``manifest.json``             versions, seed, hardware fingerprint
    ``supernet.pt``               the trained supernet (checkpointed every epoch)
    ``training.json``             loss and learning rate per epoch
    ``landmarks.json``            landmarks and the round that added each
    ``archive.jsonl``             every evaluated architecture (append-only)
    ``latency.sqlite``            ONNX Runtime latency cache
    ``supernet_v<N>.pt``          supernet version N (updated by shifting during the search)
    ``nat_state.json``, ``nat_supernet.pt``  the NAT searcher's resumable state
    ``pareto.{csv,json,png}``     the front; ``hypervolume.{json,png}`` its hypervolume per step
    ``subnet_<pick>.{onnx,pt}``   an exported subnet; ``finetuned_<key>.{onnx,pt}`` a fine-tuned one
    ``summary.json``              the pick, its metrics, ONNX parity; ``finetune.json`` fine-tuning results
    ``report.html``               the interactive, self-contained report (``shiftnas report RUN``)
    ``tracking.json``             the MLflow run this run logs to (``--track mlflow``), for a resume
    ============================  ======================================================
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    # -- artifacts ----------------------------------------------------------------------------
    config = property(lambda self: self.file("config.yaml"))
    manifest = property(lambda self: self.file("manifest.json"))
    supernet = property(lambda self: self.file("supernet.pt"))
    training = property(lambda self: self.file("training.json"))
    landmarks = property(lambda self: self.file("landmarks.json"))
    archive = property(lambda self: self.file("archive.jsonl"))
    latency_cache = property(lambda self: self.file("latency.sqlite"))
    pareto_csv = property(lambda self: self.file("pareto.csv"))
    pareto_json = property(lambda self: self.file("pareto.json"))
    pareto_png = property(lambda self: self.file("pareto.png"))
    hypervolume_json = property(lambda self: self.file("hypervolume.json"))
    hypervolume_png = property(lambda self: self.file("hypervolume.png"))
    summary = property(lambda self: self.file("summary.json"))
    finetune_results = property(lambda self: self.file("finetune.json"))
    report = property(lambda self: self.file("report.html"))
    tracking = property(lambda self: self.file("tracking.json"))

    def tracked_artifacts(self, onnx: str | None = None) -> list[Path]:
        """The files a finished run sends to an experiment tracker (those that exist)."""
        names = (self.pareto_csv, self.pareto_json, self.pareto_png, self.hypervolume_png, self.report, self.summary)
        return [p for p in (*names, *([Path(onnx)] if onnx else [])) if p.is_file()]

    def supernet_version(self, version: int) -> Path:
        """The weights of supernet version ``version`` (kept by shifting, ``shift.keep_checkpoints``)."""
        return self.file(f"supernet_v{version}.pt")

    def search_files(self) -> SearchFiles:
        """Where a resumable searcher (NAT) keeps its state."""
        return SearchFiles(state=self.file("nat_state.json"), weights=self.file("nat_supernet.pt"))

    def subnet(self, name: str) -> Path:
        """The ONNX file of an exported subnet (``.pt`` beside it)."""
        return self.file(f"subnet_{name}.onnx")

    def finetuned(self, key: str) -> Path:
        """The ONNX file of a fine-tuned subnet (``.pt`` beside it)."""
        return self.file(f"finetuned_{key}.onnx")

    def weights_for_version(self, mode: str, version: int) -> Path:
        """The checkpoint of the weights that scored ``version`` in a search of ``mode``."""
        return self.search_files().weights if mode == "nat" else self.supernet_version(version)

    # -- writing ------------------------------------------------------------------------------
    def write_config(self, cfg: RunConfig) -> None:
        atomic_write_text(self.config, config_text(cfg))

    def write_json(self, path: Path, obj: Any) -> None:
        atomic_write_json(path, obj)

    # -- reading a finished run ---------------------------------------------------------------
    def load_config(self) -> RunConfig:
        """The run's saved configuration, pointed at this directory."""
        if not self.config.is_file():
            raise ShiftnasError(f"{self.path} is not a shiftnas run directory (config.yaml is missing)")
        return load_config(self.config, [f"out={self.path}"])

    def front(self) -> list[dict[str, Any]]:
        """The Pareto front of a finished run (``pareto.json``)."""
        for path in (self.config, self.pareto_json):
            if not path.is_file():
                raise ShiftnasError(f"{self.path} is not a finished run: {path.name} is missing")
        return json.loads(self.pareto_json.read_text())["front"]

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text())
