"""``ofa-resnet50``: the published OFA ResNet50 space, with elastic width, built by ``ofa``.

Four bottleneck stages of base depth 2/2/4/2 plus 0-2 elastic blocks each, every block's expand
ratio in {0.2, 0.25, 0.35}, a width multiplier in {0.65, 0.8, 1.0} for each stage and for the two
stem convolutions, and a skippable middle stem layer. The supernet is ``ofa``'s own ``OFAResNets``
with the model-zoo arguments of ``ofa_resnet50_d0-1-2_e0.2-0.25-0.35_w0.65-0.8-1.0``, so the published
state dict loads into it.

Genome (the elastic-MobileNet layout extended by widths): an optional resolution index, the stem
gene (0 keeps the middle stem layer, 1 skips it), two stem width indices, then per stage a width index
followed by one gene per block slot: 0 skips the block, i >= 1 is the i-th expand ratio. The first
slots of a stage, as many as its base depth, cannot be skipped, and repair pushes skips to the end of
their stage, so equal networks have equal repaired genomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.nn as nn

from .base import BoxGenome, SearchSpace, push_skips_to_end
from .registry import SPACES

OFA_RESNET50_URL = "https://huggingface.co/han-cai/ofa/resolve/main/ofa_supernet_resnet50"


def _pct(x: float) -> int:
    return int(round(100 * x))


@dataclass(frozen=True)
class ResNetArch:
    """A canonical OFA ResNet architecture: stem, widths, the active blocks of every stage, resolution.

    ``widths`` holds six width multipliers: the first stem convolution (and the middle stem layer),
    the last stem convolution, then one per stage. ``stages`` holds the expand ratio of every active
    bottleneck block; skipped blocks are absent.
    """

    stem_skip: bool
    widths: tuple[float, ...]
    stages: tuple[tuple[float, ...], ...]
    resolution: int

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.stages)

    def key(self) -> str:
        """``r160-skip-w65.80-w100e202535-...``: stem, stem widths, then per stage width and expand ratios."""
        stem = f"{'skip' if self.stem_skip else 'stem'}-w{_pct(self.widths[0])}.{_pct(self.widths[1])}"
        body = "-".join(
            f"w{_pct(w)}e" + "".join(f"{_pct(e):02d}" for e in stage) for w, stage in zip(self.widths[2:], self.stages)
        )
        return f"r{self.resolution}-{stem}-{body}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "stem_skip": self.stem_skip,
            "widths": list(self.widths),
            "stages": [list(s) for s in self.stages],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResNetArch:
        return cls(
            stem_skip=bool(d["stem_skip"]),
            widths=tuple(float(w) for w in d["widths"]),
            stages=tuple(tuple(float(e) for e in s) for s in d["stages"]),
            resolution=int(d["resolution"]),
        )

    def block_terms(self) -> list[tuple[int, tuple[float, float]]]:
        """(stage, (3x3-conv term, 1x1-conv term)) of every active block: a bottleneck of width ``w`` and
        expand ratio ``e`` costs ~ (w e)^2 in its 3x3 conv and ~ w^2 e in its 1x1 convs (largest = 1)."""
        emax = 0.35
        return [
            (s, ((w * e / emax) ** 2, w * w * e / emax))
            for s, (w, stage) in enumerate(zip(self.widths[2:], self.stages))
            for e in stage
        ]


@dataclass(frozen=True)
class ResNetSpec:
    """The discrete choices of the OFA ResNet50 space (the model zoo's)."""

    base_depths: tuple[int, ...] = (2, 2, 4, 2)
    extra_depths: tuple[int, ...] = (0, 1, 2)
    expand_ratios: tuple[float, ...] = (0.2, 0.25, 0.35)
    width_mults: tuple[float, ...] = (0.65, 0.8, 1.0)
    resolutions: tuple[int, ...] = (128, 160, 192, 224)

    @property
    def slots(self) -> tuple[int, ...]:
        """Block slots per stage: base depth + the largest extra depth."""
        return tuple(b + max(self.extra_depths) for b in self.base_depths)

    def depths_of(self, stage: int) -> tuple[int, ...]:
        return tuple(self.base_depths[stage] + d for d in sorted(self.extra_depths))


def build_ofa_resnet50_supernet(num_classes: int, spec: ResNetSpec = ResNetSpec()) -> nn.Module:
    """``OFAResNets`` exactly as ``ofa.model_zoo.ofa_net('ofa_resnet50')`` builds it (dropout 0).
    Fresh lists, since ``ofa`` sorts them in place."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAResNets

    return OFAResNets(
        n_classes=num_classes,
        dropout_rate=0,
        depth_list=list(spec.extra_depths),
        expand_ratio_list=list(spec.expand_ratios),
        width_mult_list=list(spec.width_mults),
    )


class OFAResNetSpace(BoxGenome, SearchSpace):
    """A :class:`SearchSpace` over ``ofa``'s ``OFAResNets`` (depth, expand ratio, width, stem skip)."""

    N_STEM_GENES = 3  # stem skip, two stem width indices

    def __init__(self, name: str, spec: ResNetSpec) -> None:
        if min(spec.base_depths) < 1 or min(spec.extra_depths) < 0:
            raise ValueError("base depths must be positive and extra depths non-negative")
        if not spec.resolutions:
            raise ValueError("at least one resolution is required")
        self.name, self.resnet_spec = name, spec
        self._has_res_gene = len(spec.resolutions) > 1
        n_w, n_e = len(spec.width_mults) - 1, len(spec.expand_ratios)
        lo, hi = [0, 0, 0], [1, n_w, n_w]
        for base, slots in zip(spec.base_depths, spec.slots):
            lo += [0] + [int(i < base) for i in range(slots)]
            hi += [n_w] + [n_e] * slots
        if self._has_res_gene:
            lo, hi = [0] + lo, [len(spec.resolutions) - 1] + hi
        self._xl, self._xu = np.array(lo, dtype=int), np.array(hi, dtype=int)

    # ---- genome ---------------------------------------------------------------------------
    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(self.resnet_spec.resolutions)

    def _stem_start(self) -> int:
        return 1 if self._has_res_gene else 0

    def stage_genes(self) -> list[tuple[int, slice]]:
        """Per stage: where its width gene is and where its block genes are in a genome."""
        start, out = self._stem_start() + self.N_STEM_GENES, []
        for n in self.resnet_spec.slots:
            out.append((start, slice(start + 1, start + 1 + n)))
            start += 1 + n
        return out

    def repair(self, genome: np.ndarray) -> np.ndarray:
        return push_skips_to_end(self.clip(genome), [sl for _, sl in self.stage_genes()])

    def decode(self, genome: np.ndarray) -> ResNetArch:
        sp, g = self.resnet_spec, self.repair(genome)
        res = sp.resolutions[g[0]] if self._has_res_gene else sp.resolutions[0]
        s0 = self._stem_start()
        widths = [sp.width_mults[g[s0 + 1]], sp.width_mults[g[s0 + 2]]]
        stages = []
        for w_at, sl in self.stage_genes():
            widths.append(sp.width_mults[g[w_at]])
            stages.append(tuple(sp.expand_ratios[v - 1] for v in g[sl] if v > 0))
        return ResNetArch(bool(g[s0]), tuple(widths), tuple(stages), int(res))

    def encode(self, arch: ResNetArch) -> np.ndarray:
        self.validate(arch)
        sp = self.resnet_spec
        genes = [sp.resolutions.index(arch.resolution)] if self._has_res_gene else []
        genes += [int(arch.stem_skip), sp.width_mults.index(arch.widths[0]), sp.width_mults.index(arch.widths[1])]
        for w, stage, slots in zip(arch.widths[2:], arch.stages, sp.slots):
            genes.append(sp.width_mults.index(w))
            genes += [sp.expand_ratios.index(e) + 1 for e in stage] + [0] * (slots - len(stage))
        return np.array(genes, dtype=int)

    def sample(self, rng: np.random.Generator) -> ResNetArch:
        """Uniform stem skip, widths, depth per stage and expand ratio per block."""
        sp = self.resnet_spec
        widths = tuple(float(rng.choice(sp.width_mults)) for _ in range(2 + len(sp.base_depths)))
        stages = tuple(
            tuple(float(e) for e in rng.choice(sp.expand_ratios, int(rng.choice(sp.depths_of(s)))))
            for s in range(len(sp.base_depths))
        )
        return ResNetArch(bool(rng.integers(2)), widths, stages, int(rng.choice(sp.resolutions)))

    def _extreme(self, pick) -> ResNetArch:
        sp = self.resnet_spec
        n = len(sp.base_depths)
        stages = tuple((pick(sp.expand_ratios),) * pick(sp.depths_of(s)) for s in range(n))
        return ResNetArch(pick is min, (pick(sp.width_mults),) * (2 + n), stages, pick(sp.resolutions))

    def largest(self) -> ResNetArch:
        return self._extreme(max)

    def smallest(self) -> ResNetArch:
        return self._extreme(min)

    def validate(self, arch: ResNetArch) -> None:
        sp = self.resnet_spec
        if not isinstance(arch, ResNetArch):
            raise ValueError(f"expected a ResNetArch, got {type(arch).__name__}")
        if arch.resolution not in sp.resolutions:
            raise ValueError(f"resolution {arch.resolution} not in {sp.resolutions}")
        n = len(sp.base_depths)
        if len(arch.stages) != n or len(arch.widths) != 2 + n:
            raise ValueError(f"expected {n} stages and {2 + n} widths, got {len(arch.stages)} and {len(arch.widths)}")
        for w in arch.widths:
            if w not in sp.width_mults:
                raise ValueError(f"width multiplier {w} not in {sp.width_mults}")
        for i, stage in enumerate(arch.stages):
            if len(stage) not in sp.depths_of(i):
                raise ValueError(f"stage {i} has depth {len(stage)}, allowed {sp.depths_of(i)}")
            for e in stage:
                if e not in sp.expand_ratios:
                    raise ValueError(f"stage {i} expand ratio {e} not in {sp.expand_ratios}")

    def size(self) -> int:
        """Number of distinct architectures (all resolutions)."""
        sp = self.resnet_spec
        n = len(sp.resolutions) * 2 * len(sp.width_mults) ** (2 + len(sp.base_depths))
        for s in range(len(sp.base_depths)):
            n *= sum(len(sp.expand_ratios) ** d for d in sp.depths_of(s))
        return n

    # ---- supernet ---------------------------------------------------------------------------
    def build_supernet(self, num_classes: int) -> nn.Module:
        return build_ofa_resnet50_supernet(num_classes, self.resnet_spec)

    def ofa_settings(self, arch: ResNetArch) -> dict[str, list]:
        """Full-length ``d``/``e``/``w`` lists for ``OFAResNets.set_active_subnet``.

        ``d[0]`` keeps the middle stem layer only when it equals the largest extra depth; inactive
        blocks get the smallest expand ratio (they are never run); ``w`` holds width indices.
        """
        sp = self.resnet_spec
        d0 = min(sp.extra_depths) if arch.stem_skip else max(sp.extra_depths)
        d = [d0] + [len(stage) - base for stage, base in zip(arch.stages, sp.base_depths)]
        e: list[float] = []
        for stage, slots in zip(arch.stages, sp.slots):
            e += list(stage) + [min(sp.expand_ratios)] * (slots - len(stage))
        return {"d": d, "e": e, "w": [sp.width_mults.index(w) for w in arch.widths]}

    def activate(self, supernet: nn.Module, arch: ResNetArch) -> None:
        self.validate(arch)
        if len(supernet.blocks) != sum(self.resnet_spec.slots):
            raise ValueError(
                f"supernet has {len(supernet.blocks)} bottleneck blocks; space '{self.name}' "
                f"expects {sum(self.resnet_spec.slots)}"
            )
        supernet.set_active_subnet(**self.ofa_settings(arch))

    def extract(self, supernet: nn.Module, arch: ResNetArch) -> nn.Module:
        self.activate(supernet, arch)
        return supernet.get_active_subnet(preserve_weight=True).eval()  # freshly built layers train (ofa.md §4)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "resolutions": list(self.resnet_spec.resolutions)}


@SPACES.register("ofa-resnet50")
def ofa_resnet50(resolutions: tuple[int, ...] | list[int] | None = None) -> OFAResNetSpace:
    """OFA ResNet50: 4 stages x depth base+{0,1,2} x expand {0.2,0.25,0.35} x width {0.65,0.8,1.0}, stem skip."""
    spec = ResNetSpec(resolutions=tuple(resolutions or ResNetSpec.resolutions))
    return OFAResNetSpace("ofa-resnet50", spec)
