"""``compact-mbv3``: an OFA MobileNetV3 supernet resized for 20–32 px images on a CPU.

OFA's MobileNetV3 hard-codes a stride-2 stem and five stride-2 stages, so a 32 px input ends as
a 1x1 map and 7x7 kernels convolve padding. This subclass keeps every OFA building block
(``DynamicMBConvLayer``, kernel transformation, elastic expand and depth, ``get_active_subnet``)
and changes only the macro-architecture: four elastic stages of widths 24/40/64/96 with strides
1/2/2/1 after a stride-2 stem (28 px -> 14 -> 14 -> 7 -> 4 -> 4), narrower head layers, depth
1–3 per stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from .elastic_mbv3 import ElasticMobileNetSpace, ElasticSpec
from .registry import SPACES


@dataclass(frozen=True)
class CompactMacro:
    """Fixed (non-searched) macro-architecture of the compact supernet."""

    stem_width: int = 16
    first_block_width: int = 16
    stage_widths: tuple[int, ...] = (24, 40, 64, 96)
    stage_strides: tuple[int, ...] = (1, 2, 2, 1)
    stage_acts: tuple[str, ...] = ("relu", "relu", "h_swish", "h_swish")
    stage_se: tuple[bool, ...] = (False, True, False, True)
    final_expand_width: int = 384
    last_channel: int = 512


def build_compact_supernet(
    num_classes: int, spec: ElasticSpec, macro: CompactMacro = CompactMacro(), dropout_rate: float = 0.0
) -> nn.Module:
    """Build the compact elastic supernet (an ``OFAMobileNetV3`` subclass instance)."""
    from ofa.imagenet_classification.elastic_nn.modules.dynamic_layers import DynamicMBConvLayer
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    from ofa.imagenet_classification.networks import MobileNetV3
    from ofa.utils.layers import ConvLayer, IdentityLayer, LinearLayer, MBConvLayer, ResidualBlock

    class CompactOFAMobileNetV3(OFAMobileNetV3):
        """OFAMobileNetV3 with a configurable macro-architecture (the parent hard-codes it)."""

        def __init__(self) -> None:  # noqa: D401 - builds the modules, then MobileNetV3.__init__
            ks, er, dl = list(spec.kernel_sizes), list(spec.expand_ratios), list(spec.depths)
            self.width_mult = 1.0
            self.ks_list, self.expand_ratio_list, self.depth_list = sorted(ks), sorted(er), sorted(dl)
            first_conv = ConvLayer(3, macro.stem_width, kernel_size=3, stride=2, act_func="h_swish")
            first_block = ResidualBlock(
                MBConvLayer(
                    macro.stem_width, macro.first_block_width, kernel_size=3, stride=1, expand_ratio=1, act_func="relu"
                ),
                IdentityLayer(macro.first_block_width, macro.first_block_width)
                if macro.stem_width == macro.first_block_width
                else None,
            )
            blocks, self.block_group_info = [first_block], []
            feature_dim, index = macro.first_block_width, 1
            for width, stride, act, se in zip(
                macro.stage_widths, macro.stage_strides, macro.stage_acts, macro.stage_se
            ):
                self.block_group_info.append(list(range(index, index + spec.max_depth)))
                index += spec.max_depth
                for i in range(spec.max_depth):
                    s = stride if i == 0 else 1
                    conv = DynamicMBConvLayer(
                        [feature_dim],
                        [width],
                        kernel_size_list=ks,
                        expand_ratio_list=er,
                        stride=s,
                        act_func=act,
                        use_se=se,
                    )
                    shortcut = IdentityLayer(width, width) if s == 1 and feature_dim == width else None
                    blocks.append(ResidualBlock(conv, shortcut))
                    feature_dim = width
            final_expand = ConvLayer(feature_dim, macro.final_expand_width, kernel_size=1, act_func="h_swish")
            feature_mix = ConvLayer(
                macro.final_expand_width,
                macro.last_channel,
                kernel_size=1,
                bias=False,
                use_bn=False,
                act_func="h_swish",
            )
            classifier = LinearLayer(macro.last_channel, num_classes, dropout_rate=dropout_rate)
            MobileNetV3.__init__(self, first_conv, blocks, final_expand, feature_mix, classifier)
            self.set_bn_param(momentum=0.1, eps=1e-5)
            self.runtime_depth = [len(idx) for idx in self.block_group_info]

        @staticmethod
        def name() -> str:
            return "CompactOFAMobileNetV3"

    return CompactOFAMobileNetV3()


@SPACES.register("compact-mbv3")
def compact_mbv3(resolutions: tuple[int, ...] | list[int] | None = None) -> ElasticMobileNetSpace:
    """The default CPU-scale space: 4 stages x depth {1,2,3} x kernel {3,5,7} x expand {3,4,6}."""
    spec = ElasticSpec(
        n_stages=4,
        kernel_sizes=(3, 5, 7),
        expand_ratios=(3, 4, 6),
        depths=(1, 2, 3),
        resolutions=tuple(resolutions or (20, 24, 28)),
    )
    return ElasticMobileNetSpace("compact-mbv3", spec, lambda n: build_compact_supernet(n, spec))
