"""An elastic MobileNetV3-style space over ``ofa`` supernets: NAT's per-layer integer genome.

Genome (NAT/NATv2 layout): an optional resolution index, then one gene per layer slot of every
stage. Gene 0 means "skip this layer"; gene i >= 1 means the i-th (kernel, expand) pair, ordered
expand-major as in NAT: (3,3), (5,3), (7,3), (3,4), ... The first ``min_depth`` slots of each
stage have lower bound 1, so every stage keeps at least ``min_depth`` layers.

Repair ``push`` moves skipped slots to the end of their stage (NAT), so a skip never leaves a
hole and the repaired genome is canonical: two genomes decode to the same network exactly when
their repaired forms are equal. That lets pymoo's duplicate elimination work on genomes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch.nn as nn

from .base import Arch, Layer, SearchSpace


@dataclass(frozen=True)
class ElasticSpec:
    """The discrete choices of an elastic MobileNetV3 space."""

    n_stages: int
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[int, ...] = (3, 4, 6)
    depths: tuple[int, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = (224,)

    def __post_init__(self) -> None:
        d = sorted(self.depths)
        if d != list(range(d[0], d[-1] + 1)) or d[0] < 1:
            raise ValueError(f"depths must be a contiguous range of positive integers, got {self.depths}")
        if not self.resolutions:
            raise ValueError("at least one resolution is required")

    @property
    def min_depth(self) -> int:
        return min(self.depths)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def layer_choices(self) -> tuple[Layer, ...]:
        return tuple((k, e) for e, k in itertools.product(sorted(self.expand_ratios), sorted(self.kernel_sizes)))


class ElasticMobileNetSpace(SearchSpace):
    """A :class:`SearchSpace` over an ``OFAMobileNetV3``-like supernet (built by ``build_fn``)."""

    def __init__(
        self, name: str, spec: ElasticSpec, build_fn: Callable[[int], nn.Module], extra: dict[str, Any] | None = None
    ) -> None:
        self.name = name
        self.spec = spec
        self._build_fn = build_fn
        self._extra = dict(extra or {})
        self._choices = spec.layer_choices
        self._choice_index = {c: i + 1 for i, c in enumerate(self._choices)}
        self._has_res_gene = len(spec.resolutions) > 1
        n_layers = spec.n_stages * spec.max_depth
        lo = [1 if (i % spec.max_depth) < spec.min_depth else 0 for i in range(n_layers)]
        hi = [len(self._choices)] * n_layers
        if self._has_res_gene:
            lo, hi = [0] + lo, [len(spec.resolutions) - 1] + hi
        self._xl = np.array(lo, dtype=int)
        self._xu = np.array(hi, dtype=int)

    # ---- genome ---------------------------------------------------------------------------
    @property
    def n_var(self) -> int:
        return len(self._xl)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self._xl.copy(), self._xu.copy()

    def repair(self, genome: np.ndarray) -> np.ndarray:
        g = np.clip(np.rint(np.asarray(genome, dtype=float)), self._xl, self._xu).astype(int)
        offset = 1 if self._has_res_gene else 0
        md = self.spec.max_depth
        for s in range(self.spec.n_stages):
            seg = g[offset + s * md : offset + (s + 1) * md]
            kept = seg[seg > 0]
            seg[:] = np.concatenate([kept, np.zeros(md - len(kept), dtype=int)])
        return g

    def decode(self, genome: np.ndarray) -> Arch:
        g = self.repair(genome)
        res = self.spec.resolutions[g[0]] if self._has_res_gene else self.spec.resolutions[0]
        layers = g[1:] if self._has_res_gene else g
        md = self.spec.max_depth
        stages = tuple(
            tuple(self._choices[v - 1] for v in layers[s * md : (s + 1) * md] if v > 0)
            for s in range(self.spec.n_stages)
        )
        return Arch(stages=stages, resolution=int(res))

    def encode(self, arch: Arch) -> np.ndarray:
        self.validate(arch)
        genes: list[int] = []
        if self._has_res_gene:
            genes.append(self.spec.resolutions.index(arch.resolution))
        for stage in arch.stages:
            genes += [self._choice_index[layer] for layer in stage] + [0] * (self.spec.max_depth - len(stage))
        return np.array(genes, dtype=int)

    def sample(self, rng: np.random.Generator) -> Arch:
        sp = self.spec
        stages = []
        for _ in range(sp.n_stages):
            depth = int(rng.choice(sp.depths))
            stages.append(tuple(self._choices[int(i)] for i in rng.integers(0, len(self._choices), depth)))
        return Arch(stages=tuple(stages), resolution=int(rng.choice(sp.resolutions)))

    def largest(self) -> Arch:
        sp = self.spec
        layer = (max(sp.kernel_sizes), max(sp.expand_ratios))
        return Arch(stages=tuple((layer,) * sp.max_depth for _ in range(sp.n_stages)), resolution=max(sp.resolutions))

    def smallest(self) -> Arch:
        sp = self.spec
        layer = (min(sp.kernel_sizes), min(sp.expand_ratios))
        return Arch(stages=tuple((layer,) * sp.min_depth for _ in range(sp.n_stages)), resolution=min(sp.resolutions))

    def validate(self, arch: Arch) -> None:
        sp = self.spec
        if not isinstance(arch, Arch):
            raise ValueError(f"expected an Arch, got {type(arch).__name__}")
        if arch.resolution not in sp.resolutions:
            raise ValueError(f"resolution {arch.resolution} not in {sp.resolutions}")
        if len(arch.stages) != sp.n_stages:
            raise ValueError(f"expected {sp.n_stages} stages, got {len(arch.stages)}")
        for i, stage in enumerate(arch.stages):
            if len(stage) not in sp.depths:
                raise ValueError(f"stage {i} has depth {len(stage)}, allowed {sp.depths}")
            for k, e in stage:
                if k not in sp.kernel_sizes or e not in sp.expand_ratios:
                    raise ValueError(
                        f"stage {i} layer (k={k}, e={e}) not in kernels {sp.kernel_sizes} "
                        f"x expand ratios {sp.expand_ratios}"
                    )

    def size(self) -> int:
        """Number of distinct architectures (all resolutions)."""
        per_stage = sum(len(self._choices) ** d for d in self.spec.depths)
        return per_stage**self.spec.n_stages * len(self.spec.resolutions)

    # ---- supernet ---------------------------------------------------------------------------
    def build_supernet(self, num_classes: int) -> nn.Module:
        return self._build_fn(num_classes)

    def ofa_settings(self, arch: Arch) -> dict[str, list[int]]:
        """Full-length ``ks``/``e``/``d`` lists for ``OFAMobileNetV3.set_active_subnet``.

        The ``ofa`` package silently ignores unknown keys and only updates a prefix for short
        lists, so we always pass every block; inactive blocks get the smallest choice (they are
        never run).
        """
        sp = self.spec
        ks, es = [], []
        for stage in arch.stages:
            filler = [(min(sp.kernel_sizes), min(sp.expand_ratios))] * (sp.max_depth - len(stage))
            for k, e in list(stage) + filler:
                ks.append(k)
                es.append(e)
        return {"ks": ks, "e": es, "d": list(arch.depths)}

    def activate(self, supernet: nn.Module, arch: Arch) -> None:
        self.validate(arch)
        n_blocks = len(supernet.blocks) - 1
        if n_blocks != self.spec.n_stages * self.spec.max_depth:
            raise ValueError(
                f"supernet has {n_blocks} elastic blocks; space '{self.name}' expects "
                f"{self.spec.n_stages * self.spec.max_depth}"
            )
        s = self.ofa_settings(arch)
        supernet.set_active_subnet(ks=s["ks"], e=s["e"], d=s["d"])

    def extract(self, supernet: nn.Module, arch: Arch) -> nn.Module:
        self.activate(supernet, arch)
        # get_active_subnet() returns a module whose freshly built layers are in train mode
        # (ofa.md §4): always switch the whole subnet to eval.
        return supernet.get_active_subnet(preserve_weight=True).eval()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "resolutions": list(self.spec.resolutions), **self._extra}
