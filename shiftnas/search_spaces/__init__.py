"""Search spaces: elastic supernets and their integer genomes, resolved by name."""

from . import compact, ofa_mbv3, ofa_proxyless, ofa_resnet, table  # noqa: F401  (register the built-in spaces)
from .archs import arch_from_dict
from .base import Arch, SearchSpace
from .elastic_mbv3 import ElasticMobileNetSpace, ElasticSpec
from .ofa_resnet import OFAResNetSpace, ResNetArch
from .registry import SPACES, get_space, list_spaces, space_from_description

__all__ = [
    "SPACES",
    "Arch",
    "SearchSpace",
    "ElasticMobileNetSpace",
    "ElasticSpec",
    "OFAResNetSpace",
    "ResNetArch",
    "arch_from_dict",
    "get_space",
    "list_spaces",
    "space_from_description",
]
