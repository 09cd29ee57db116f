"""On-device latency datasets: ``shiftnas profile --space SPACE --samples N --out DEVICE.json``.

Run on the deployment device. Architectures are sampled stratified by size (the smallest and the
largest first, then one per size stratum), exported with deployable activations and measured with
the interleaved-reference protocol of :mod:`shiftnas.hardware.latency`. The file is rewritten
atomically after every measurement, so an interrupted run resumes where it stopped. The search
reads it back through ``latency=predicted:DEVICE.json`` (see :mod:`shiftnas.predictors.latency`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ...config import LatencyConfig
from ...errors import ConfigError, ShiftnasError
from ...hardware import LatencyResult, ModelUnderTest, count_macs, count_params
from ...hardware.fingerprint import HardwareFingerprint
from ...hardware.latency import check_provider, measurement_protocol
from ...hardware.quantize import deployed_onnx
from ...hardware.stitch import BlockExports
from ...io import atomic_write_json, file_digest
from ...search_spaces import Arch, SearchSpace, arch_from_dict

FORMAT = "shiftnas-latency-dataset/1"


def stratified_sample(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` distinct architectures spread over the space's size range, extremes included.

    Sample ``i`` draws a size level ``u`` from its own stratum of [0, 1] (a 1-D Latin hypercube) and
    sets every gene near that quantile of its range, with noise. In the elastic genomes a larger gene
    value is a larger layer or resolution, so the sample spans small to large networks evenly
    instead of piling up in the middle as uniform genes do.
    """
    if n < 2:
        raise ConfigError(f"need at least 2 architectures (the smallest and the largest), got {n}")
    rng = np.random.default_rng(seed)
    lo, hi = space.bounds
    archs = {a.key(): a for a in (space.smallest(), space.largest())}
    levels = (rng.permutation(max(n - 2, 1)) + rng.random(max(n - 2, 1))) / max(n - 2, 1)
    for attempt in range(200 * n):
        if len(archs) >= n:
            break
        u = levels[attempt % len(levels)] if attempt < len(levels) else rng.random()
        q = np.clip(u + rng.normal(0.0, 0.2, size=lo.shape), 0.0, 1.0)
        genome = np.floor(lo + q * (hi - lo + 1)).clip(lo, hi).astype(int)
        arch = space.decode(genome)
        archs.setdefault(arch.key(), arch)
    if len(archs) < n:
        raise ShiftnasError(f"found only {len(archs)} distinct architectures in {space.name}")
    return list(archs.values())[:n]


def reference_archs(space: SearchSpace, n: int) -> list[Arch]:
    """Up to three reference architectures spanning the space: smallest, middle, largest."""
    lo, hi = space.bounds
    middle = space.decode((lo + hi) // 2)
    pool = {1: [middle], 2: [space.smallest(), space.largest()], 3: [space.smallest(), middle, space.largest()]}
    if n not in (0, 1, 2, 3):
        raise ConfigError(f"hardware.references must be 0, 1, 2 or 3, got {n}")
    return pool.get(n, [])


def reference_models(space: SearchSpace, supernet: nn.Module, cfg: LatencyConfig) -> list[ModelUnderTest]:
    """The reference subnets of ``space`` exported for interleaved measurement."""
    out = []
    for arch in reference_archs(space, cfg.references):
        chw = tuple(space.input_size(arch))
        onnx_bytes = deployed_onnx(space.extract(supernet, arch), (cfg.batch_size, *chw), cfg.precision)
        out.append(ModelUnderTest(arch.key(), onnx_bytes, chw))
    return out


@dataclass
class LatencyDataset:
    """Latency measurements of one space on one device (the file behind ``predicted:DEVICE.json``)."""

    space: dict[str, Any]
    fingerprint: dict[str, Any]
    protocol: dict[str, Any]
    references: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    format: str = FORMAT
    prior: str | None = None  # another device's dataset to transfer from (relative to this file's folder)

    def save(self, path: Path | str) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path | str) -> LatencyDataset:
        path = Path(path)
        if not path.is_file():
            raise ShiftnasError(f"latency dataset not found: {path}")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ShiftnasError(f"{path} is not a readable latency dataset: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ShiftnasError(f"{path} is not a shiftnas latency dataset (made by `shiftnas profile --space`)")
        return cls(**data)

    def prior_path(self, path: Path | str) -> Path | None:
        """Where the dataset named by ``prior`` is (a relative name is looked up beside ``path``, this file)."""
        if not self.prior:
            return None
        where = Path(self.prior)
        return where if where.is_absolute() else Path(path).parent / where

    def load_prior(self, path: Path | str) -> LatencyDataset | None:
        """The dataset named by ``prior``, if any."""
        where = self.prior_path(path)
        return None if where is None else LatencyDataset.load(where)

    def digest(self, path: Path | str) -> str:
        """A short hash of this dataset's file at ``path`` and of its prior's, if it names one: what a predictor
        fitted from them depends on."""
        prior = self.prior_path(path)
        return file_digest(path) + ("" if prior is None or not prior.is_file() else "+" + file_digest(prior))

    @property
    def fingerprint_key(self) -> str:
        return HardwareFingerprint(**self.fingerprint).key()

    def keys(self) -> set[str]:
        return {r["key"] for r in self.records}

    def archs(self) -> list[Arch]:
        return [arch_from_dict(r["arch"]) for r in self.records]

    def measured_with(self, cfg: LatencyConfig) -> LatencyConfig:
        """``cfg`` with this dataset's measurement protocol (references, blocks, runs, sessions); the
        precision stays ``cfg``'s, part of the device fingerprint a dataset must match to be checked."""
        protocol = BEFORE_THE_OPTION | self.protocol
        same = {f.name: protocol[f.name] for f in fields(LatencyConfig) if f.name in protocol and f.name != "precision"}
        return replace(cfg, **same)

    def latencies(self, corrected: bool = True) -> np.ndarray:
        """Median latency (ms) per record; ``corrected`` rescales drifted sessions by the references.

        The corrected value is ``ratio x the reference's median over the whole dataset``: a record
        measured while the machine was slow keeps its ratio to the reference, so it is put back on
        the dataset's common scale (latency.md §2.4).
        """
        raw = np.array([r["latency"]["median_ms"] for r in self.records], dtype=float)
        if not corrected:
            return raw
        typical = self.typical_reference_ms()
        return np.array([self.on_scale(r["latency"], typical) for r in self.records], dtype=float)

    def typical_reference_ms(self) -> dict[str, float]:
        """Each reference's median latency over the dataset: the scale its records are put on."""
        typical: dict[str, float] = {}
        for name in self.references:
            seen = [r["latency"]["reference_ms"] for r in self.records if r["latency"].get("reference") == name]
            if seen:
                typical[name] = float(np.median(seen))
        return typical

    def on_scale(self, latency: dict[str, Any], typical: dict[str, float] | None = None) -> float:
        """A measurement (``LatencyResult.as_dict()``) on this dataset's scale: ``ratio x`` its reference's
        typical latency here, or the raw median where it has no reference of this dataset."""
        typical = self.typical_reference_ms() if typical is None else typical
        if latency.get("ratio") is not None and latency.get("reference") in typical:
            return float(latency["ratio"] * typical[latency["reference"]])
        return float(latency["median_ms"])


Job = tuple[bytes, tuple[int, ...], LatencyConfig]  # (ONNX bytes, C x H x W, protocol)
MeasureMany = Callable[[list[Job], list[ModelUnderTest]], list[LatencyResult]]


def measure_locally(jobs: Sequence[Job], references: Sequence[ModelUnderTest] = ()) -> list[LatencyResult]:
    """Measure jobs one after the other on this machine, each interleaved with ``references``."""
    from ...hardware import measure_latency

    return [measure_latency(onnx_bytes, chw, cfg, references) for onnx_bytes, chw, cfg in jobs]


# How a file written before a protocol option existed was measured (not today's defaults: the reference
# sessions were fresh and every reference timed until kept/nearest became the default).
BEFORE_THE_OPTION = {
    "precision": "fp32",
    "reference_sessions": "fresh",
    "references_timed": "all",
    "candidate_sessions": "per_block",
}


MACHINE = ("cpu_model", "cores", "ort_version")  # the fingerprint's fields that name the machine, not the settings


def check_same_measurement(
    path: Path | str,
    dataset: LatencyDataset,
    space: dict[str, Any],
    fingerprint: dict[str, Any],
    protocol: dict[str, Any],
    same_machine: bool = True,
) -> None:
    """One line if ``dataset`` (read from ``path``) holds measurements of another space, device or protocol than
    these; ``same_machine=False`` compares the device's settings (provider, threads, batch, precision) only."""
    theirs_fp = dataset.fingerprint
    if not same_machine:
        fingerprint = {k: v for k, v in fingerprint.items() if k not in MACHINE}
        theirs_fp = {k: v for k, v in theirs_fp.items() if k not in MACHINE}
    for what, mine, theirs in (
        ("space", space, dataset.space),
        ("device fingerprint", fingerprint, theirs_fp),
        ("measurement protocol", protocol, BEFORE_THE_OPTION | dataset.protocol),
    ):
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ShiftnasError(
                f"{path} holds measurements with another {what} ({', '.join(diff)} differ); "
                "pass another --out or the same settings"
            )


def build_latency_dataset(
    space: SearchSpace,
    out: Path | str,
    samples: int,
    cfg: LatencyConfig,
    fingerprint: HardwareFingerprint,
    seed: int = 0,
    measure: MeasureMany = measure_locally,
    chunk: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
    archs: Sequence[Arch] | None = None,
) -> LatencyDataset:
    """Sample, export and measure ``samples`` architectures of ``space`` into ``out`` (resumable).

    ``measure(jobs, references)`` returns the jobs' results (locally, or on Dask workers, ``chunk``
    jobs at a time); ``fingerprint`` is that of the machine that measures. ``archs``: measure these
    instead of a sample (e.g. a second pass over some of them, for the repeat ceiling).
    """
    out = Path(out)
    check_provider(cfg.provider)
    torch.manual_seed(seed)  # latency does not depend on the weights; the graph is fixed by the arch
    supernet = space.build_supernet(10).eval()
    refs = reference_models(space, supernet, cfg)
    fresh = LatencyDataset(
        space=space.describe(),
        fingerprint=fingerprint.as_dict(),
        protocol=measurement_protocol(cfg),
        references=[r.name for r in refs],
    )
    dataset = fresh
    if out.exists():
        dataset = LatencyDataset.load(out)
        check_same_measurement(out, dataset, fresh.space, fresh.fingerprint, fresh.protocol)
    wanted = list(archs) if archs is not None else stratified_sample(space, samples, seed)
    samples = len(wanted)
    todo = [a for a in wanted if a.key() not in dataset.keys()]
    blocks = BlockExports()  # each architecture's graph stitched from cached block exports
    done = samples - len(todo)
    if progress:
        progress(done, samples, "resuming" if done else "")
    for start in range(0, len(todo), max(1, chunk)):
        batch = todo[start : start + max(1, chunk)]
        models, jobs = [], []
        for arch in batch:
            model = space.extract(supernet, arch)
            chw = tuple(space.input_size(arch))
            models.append((model, chw))
            jobs.append((deployed_onnx(model, (cfg.batch_size, *chw), cfg.precision, blocks=blocks), chw, cfg))
        for arch, (model, chw), result in zip(batch, models, measure(jobs, refs)):
            result.fingerprint = fingerprint.as_dict()
            dataset.records.append(
                {
                    "key": arch.key(),
                    "arch": arch.to_dict(),
                    "genome": [int(g) for g in space.encode(arch)],
                    "input_chw": list(chw),
                    "mmacs": count_macs(model, chw) / 1e6,
                    "mparams": count_params(model) / 1e6,
                    "latency": result.as_dict(),
                }
            )
            done += 1
            if progress:
                progress(done, samples, arch.key())
        dataset.save(out)  # after every chunk: an interruption loses at most one chunk
    if not out.exists():
        dataset.save(out)
    return dataset
