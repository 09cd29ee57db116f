"""``ofa-proxyless``: the published OFA ProxylessNAS space (MobileNetV2-style), built by ``ofa``.

Five stages of depth {2,3,4} and a last stage of one block, each block's kernel in {3,5,7} and
expand ratio in {3,4,6} (the first block, MBConv e=1, is fixed). The supernet is ``ofa``'s own
``OFAProxylessNASNets`` with the model-zoo arguments of ``ofa_proxyless_d234_e346_k357_w1.3``, so the
published state dict loads into it.
"""

from __future__ import annotations

import torch.nn as nn

from .elastic_mbv3 import ElasticMobileNetSpace, ElasticSpec
from .ofa_mbv3 import ofa_zoo_choices
from .registry import SPACES

OFA_PROXYLESS_URL = (
    "https://raw.githubusercontent.com/han-cai/files/master/ofa/ofa_nets/ofa_proxyless_d234_e346_k357_w1.3"
)


def build_ofa_proxyless_supernet(num_classes: int, width_mult: float = 1.3) -> nn.Module:
    """``OFAProxylessNASNets`` exactly as ``ofa.model_zoo.ofa_net`` builds it (dropout 0)."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAProxylessNASNets

    return OFAProxylessNASNets(n_classes=num_classes, width_mult=width_mult, **ofa_zoo_choices())


@SPACES.register("ofa-proxyless")
def ofa_proxyless(
    resolutions: tuple[int, ...] | list[int] | None = None, width_mult: float = 1.3
) -> ElasticMobileNetSpace:
    """OFA ProxylessNAS: 5 stages x depth {2,3,4} + 1 single-block stage, kernel {3,5,7} x expand {3,4,6}."""
    spec = ElasticSpec(
        n_stages=6,
        kernel_sizes=(3, 5, 7),
        expand_ratios=(3, 4, 6),
        depths=(2, 3, 4),
        resolutions=tuple(resolutions or (128, 160, 192, 224)),
        stage_depths=((2, 3, 4),) * 5 + ((1,),),
    )
    return ElasticMobileNetSpace(
        "ofa-proxyless",
        spec,
        lambda n: build_ofa_proxyless_supernet(n, width_mult),
        extra={"width_mult": width_mult},
    )
