"""An elastic MobileNetV3-style space over ``ofa`` supernets: NAT's per-layer integer genome.

Genome (NAT/NATv2 layout): an optional resolution index, then one gene per layer slot of every
stage. Gene 0 means "skip this layer"; gene i >= 1 means the i-th (kernel, expand) pair, ordered
expand-major as in NAT: (3,3), (5,3), (7,3), (3,4), ... The first slots of each stage, as many as
its smallest depth, have lower bound 1, so every stage keeps at least that many layers. A stage has
as many slots as its largest depth (``ElasticSpec.stage_depths``: ProxylessNAS's last stage is one
elastic block).

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

from .base import Arch, BoxGenome, Layer, SearchSpace, push_skips_to_end


@dataclass(frozen=True)
class ElasticSpec:
    """The discrete choices of an elastic MobileNetV3 space."""

    n_stages: int
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[int, ...] = (3, 4, 6)
    depths: tuple[int, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = (224,)
    stage_depths: tuple[tuple[int, ...], ...] = ()  # per stage, where stages differ (default: ``depths``)

    def __post_init__(self) -> None:
        if self.stage_depths and len(self.stage_depths) != self.n_stages:
            raise ValueError(f"stage_depths has {len(self.stage_depths)} entries for {self.n_stages} stages")
        for depths in (self.depths, *self.stage_depths):
            d = sorted(depths)
            if d != list(range(d[0], d[-1] + 1)) or d[0] < 1:
                raise ValueError(f"depths must be a contiguous range of positive integers, got {depths}")
        if not self.resolutions:
            raise ValueError("at least one resolution is required")

    def depths_of(self, stage: int) -> tuple[int, ...]:
        """The depths stage ``stage`` may have."""
        return tuple(self.stage_depths[stage]) if self.stage_depths else tuple(self.depths)

    @property
    def slots(self) -> tuple[int, ...]:
        """Layer slots (= genes, = supernet blocks) per stage: its largest depth."""
        return tuple(max(self.depths_of(s)) for s in range(self.n_stages))

    @property
    def min_depth(self) -> int:
        return min(self.depths)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def layer_choices(self) -> tuple[Layer, ...]:
        return tuple((k, e) for e, k in itertools.product(sorted(self.expand_ratios), sorted(self.kernel_sizes)))


class ElasticMobileNetSpace(BoxGenome, SearchSpace):
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
        lo = [int(i < min(spec.depths_of(s))) for s, n in enumerate(spec.slots) for i in range(n)]
        hi = [len(self._choices)] * len(lo)
        if self._has_res_gene:
            lo, hi = [0] + lo, [len(spec.resolutions) - 1] + hi
        self._xl = np.array(lo, dtype=int)
        self._xu = np.array(hi, dtype=int)

    # ---- genome ---------------------------------------------------------------------------
    def stage_slices(self) -> list[slice]:
        """Where each stage's genes are in a genome."""
        start, out = 1 if self._has_res_gene else 0, []
        for n in self.spec.slots:
            out.append(slice(start, start + n))
            start += n
        return out

    def repair(self, genome: np.ndarray) -> np.ndarray:
        return push_skips_to_end(self.clip(genome), self.stage_slices())

    def decode(self, genome: np.ndarray) -> Arch:
        g = self.repair(genome)
        res = self.spec.resolutions[g[0]] if self._has_res_gene else self.spec.resolutions[0]
        stages = tuple(tuple(self._choices[v - 1] for v in g[sl] if v > 0) for sl in self.stage_slices())
        return Arch(stages=stages, resolution=int(res))

    def encode(self, arch: Arch) -> np.ndarray:
        self.validate(arch)
        genes: list[int] = []
        if self._has_res_gene:
            genes.append(self.spec.resolutions.index(arch.resolution))
        for stage, slots in zip(arch.stages, self.spec.slots):
            genes += [self._choice_index[layer] for layer in stage] + [0] * (slots - len(stage))
        return np.array(genes, dtype=int)

    def sample(self, rng: np.random.Generator) -> Arch:
        sp = self.spec
        stages = []
        for s in range(sp.n_stages):
            depth = int(rng.choice(sp.depths_of(s)))
            stages.append(tuple(self._choices[int(i)] for i in rng.integers(0, len(self._choices), depth)))
        return Arch(stages=tuple(stages), resolution=int(rng.choice(sp.resolutions)))

    def largest(self) -> Arch:
        sp = self.spec
        layer = (max(sp.kernel_sizes), max(sp.expand_ratios))
        stages = tuple((layer,) * max(sp.depths_of(s)) for s in range(sp.n_stages))
        return Arch(stages=stages, resolution=max(sp.resolutions))

    def smallest(self) -> Arch:
        sp = self.spec
        layer = (min(sp.kernel_sizes), min(sp.expand_ratios))
        stages = tuple((layer,) * min(sp.depths_of(s)) for s in range(sp.n_stages))
        return Arch(stages=stages, resolution=min(sp.resolutions))

    def validate(self, arch: Arch) -> None:
        sp = self.spec
        if not isinstance(arch, Arch):
            raise ValueError(f"expected an Arch, got {type(arch).__name__}")
        if arch.resolution not in sp.resolutions:
            raise ValueError(f"resolution {arch.resolution} not in {sp.resolutions}")
        if len(arch.stages) != sp.n_stages:
            raise ValueError(f"expected {sp.n_stages} stages, got {len(arch.stages)}")
        for i, stage in enumerate(arch.stages):
            if len(stage) not in sp.depths_of(i):
                raise ValueError(f"stage {i} has depth {len(stage)}, allowed {sp.depths_of(i)}")
            for k, e in stage:
                if k not in sp.kernel_sizes or e not in sp.expand_ratios:
                    raise ValueError(
                        f"stage {i} layer (k={k}, e={e}) not in kernels {sp.kernel_sizes} "
                        f"x expand ratios {sp.expand_ratios}"
                    )

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(self.spec.resolutions)

    def size(self) -> int:
        """Number of distinct architectures (all resolutions)."""
        n = len(self.spec.resolutions)
        for s in range(self.spec.n_stages):
            n *= sum(len(self._choices) ** d for d in self.spec.depths_of(s))
        return n

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
        for stage, slots in zip(arch.stages, sp.slots):
            filler = [(min(sp.kernel_sizes), min(sp.expand_ratios))] * (slots - len(stage))
            for k, e in list(stage) + filler:
                ks.append(k)
                es.append(e)
        return {"ks": ks, "e": es, "d": list(arch.depths)}

    def activate(self, supernet: nn.Module, arch: Arch) -> None:
        self.validate(arch)
        n_blocks = len(supernet.blocks) - 1
        if n_blocks != sum(self.spec.slots):
            raise ValueError(
                f"supernet has {n_blocks} elastic blocks; space '{self.name}' expects {sum(self.spec.slots)}"
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
