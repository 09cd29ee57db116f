"""The ``SearchSpace`` interface and the ``Arch`` value every other part of shiftnas speaks.

A search space owns three things: the integer genome pymoo searches over (bounds, sampling,
repair), the mapping genome <-> architecture, and the elastic supernet that architectures are
activated in and extracted from. Everything else (training, evaluation, search) only talks to
this interface.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.nn as nn

Layer = tuple[int, int]  # (kernel size, expand ratio) of one active inverted-residual layer


@dataclass(frozen=True)
class Arch:
    """A canonical architecture: the active layers of every stage and the input resolution.

    Inactive (skipped) layers are simply absent, so two architectures are equal exactly when
    they describe the same network.
    """

    stages: tuple[tuple[Layer, ...], ...]
    resolution: int

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.stages)

    def key(self) -> str:
        """A short, stable, human-readable identifier (used for caching and file names)."""
        body = "-".join("".join(f"k{k}e{e}" for k, e in stage) for stage in self.stages)
        return f"r{self.resolution}-{body}"

    def to_dict(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "stages": [[list(layer) for layer in s] for s in self.stages]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        stages = tuple(tuple((int(k), int(e)) for k, e in s) for s in d["stages"])
        return cls(stages=stages, resolution=int(d["resolution"]))

    def block_terms(self) -> list[tuple[int, tuple[float, float]]]:
        """(stage, (spatial-conv term, pointwise term)) of every active block, for per-block latency models:
        an inverted-residual layer's depthwise conv costs ~ e * k^2, its pointwise convs ~ e."""
        return [(s, (e * k * k / 49.0, e / 6.0)) for s, stage in enumerate(self.stages) for k, e in stage]


class SearchSpace(abc.ABC):
    """Search space + elastic supernet + integer genome (see docs/architecture.md)."""

    name: str

    # ---- genome ---------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def n_var(self) -> int:
        """Number of integer genes."""

    @property
    @abc.abstractmethod
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive integer lower and upper bounds of every gene."""

    @abc.abstractmethod
    def repair(self, genome: np.ndarray) -> np.ndarray:
        """Round, clip and canonicalise a genome (equal networks get equal genomes)."""

    @abc.abstractmethod
    def decode(self, genome: np.ndarray) -> Arch:
        """Genome -> architecture (repairs first)."""

    @abc.abstractmethod
    def encode(self, arch: Arch) -> np.ndarray:
        """Architecture -> canonical genome."""

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """A random architecture (uniform depth per stage, uniform layer choices)."""

    @abc.abstractmethod
    def largest(self) -> Arch:
        """The largest architecture of the space."""

    @abc.abstractmethod
    def smallest(self) -> Arch:
        """The smallest architecture of the space."""

    @abc.abstractmethod
    def validate(self, arch: Arch) -> None:
        """Raise ``ValueError`` unless ``arch`` belongs to this space."""

    # ---- supernet ---------------------------------------------------------------------------
    @abc.abstractmethod
    def build_supernet(self, num_classes: int) -> nn.Module:
        """A freshly initialised elastic supernet."""

    @abc.abstractmethod
    def activate(self, supernet: nn.Module, arch: Arch) -> None:
        """Make ``arch`` the active path of ``supernet`` (validated, full-length settings)."""

    @abc.abstractmethod
    def extract(self, supernet: nn.Module, arch: Arch) -> nn.Module:
        """A standalone subnet of ``arch`` with copied weights, in eval mode."""

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The input resolutions the space searches (empty where it has none, e.g. a table)."""
        return ()

    def input_size(self, arch: Arch) -> tuple[int, int, int]:
        """Input tensor shape (C, H, W) of ``arch``."""
        return (3, arch.resolution, arch.resolution)

    def describe(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this space (stored in checkpoints)."""
        return {"name": self.name}


class BoxGenome:
    """``n_var``, ``bounds`` and rounding for a space whose genome is integers in the box ``[_xl, _xu]``
    (mixed in before :class:`SearchSpace`)."""

    _xl: np.ndarray
    _xu: np.ndarray

    @property
    def n_var(self) -> int:
        return len(self._xl)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self._xl.copy(), self._xu.copy()

    def clip(self, genome: np.ndarray) -> np.ndarray:
        """``genome`` rounded to integers and clipped into the box."""
        return np.clip(np.rint(np.asarray(genome, dtype=float)), self._xl, self._xu).astype(int)


def push_skips_to_end(genome: np.ndarray, slices: list[slice]) -> np.ndarray:
    """In place: within each slice, the non-zero genes first (in order), the zeros ("skip") last (NAT)."""
    for sl in slices:
        seg = genome[sl]
        kept = seg[seg > 0]
        seg[:] = np.concatenate([kept, np.zeros(len(seg) - len(kept), dtype=int)])
    return genome
