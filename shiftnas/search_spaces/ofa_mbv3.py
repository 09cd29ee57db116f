"""``ofa-mbv3``: the published OFA MobileNetV3 space (k{3,5,7} e{3,4,6} d{2,3,4}), built by ``ofa``.

The supernet is ``ofa``'s own ``OFAMobileNetV3`` with the model-zoo arguments, so the state dict of
the published checkpoints (``ofa_mbv3_d234_e346_k357_w1.0`` / ``w1.2``) loads into it.
"""

from __future__ import annotations

import torch.nn as nn

from .elastic_mbv3 import ElasticMobileNetSpace, ElasticSpec
from .registry import SPACES

#: Where the OFA authors publish the supernets (used only when a URL is given and we are online).
OFA_CHECKPOINT_URLS = {
    "ofa_mbv3_d234_e346_k357_w1.0": "https://raw.githubusercontent.com/han-cai/files/master/ofa/ofa_nets/ofa_mbv3_d234_e346_k357_w1.0",
    "ofa_mbv3_d234_e346_k357_w1.2": "https://raw.githubusercontent.com/han-cai/files/master/ofa/ofa_nets/ofa_mbv3_d234_e346_k357_w1.2",
}


def ofa_zoo_choices() -> dict:
    """The elastic choices every published OFA MobileNet-style supernet was trained with (model zoo,
    dropout 0); fresh lists each call, since ``ofa`` sorts them in place."""
    return dict(dropout_rate=0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])


def build_ofa_mbv3_supernet(num_classes: int, width_mult: float = 1.0) -> nn.Module:
    """``OFAMobileNetV3`` exactly as ``ofa.model_zoo.ofa_net`` builds it (dropout 0)."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    return OFAMobileNetV3(n_classes=num_classes, width_mult=width_mult, **ofa_zoo_choices())


@SPACES.register("ofa-mbv3")
def ofa_mbv3(resolutions: tuple[int, ...] | list[int] | None = None, width_mult: float = 1.0) -> ElasticMobileNetSpace:
    """OFA MobileNetV3: 5 stages x depth {2,3,4} x kernel {3,5,7} x expand {3,4,6}."""
    spec = ElasticSpec(
        n_stages=5,
        kernel_sizes=(3, 5, 7),
        expand_ratios=(3, 4, 6),
        depths=(2, 3, 4),
        resolutions=tuple(resolutions or (128, 160, 192, 224)),
    )
    return ElasticMobileNetSpace(
        "ofa-mbv3", spec, lambda n: build_ofa_mbv3_supernet(n, width_mult), extra={"width_mult": width_mult}
    )
