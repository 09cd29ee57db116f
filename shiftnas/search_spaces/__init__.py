"""Search spaces: elastic supernets and their integer genomes, resolved by name."""

from . import compact, ofa_mbv3, ofa_proxyless, table  # noqa: F401  (register the built-in spaces)
from .base import Arch, SearchSpace
from .elastic_mbv3 import ElasticMobileNetSpace, ElasticSpec
from .registry import SPACES, get_space, list_spaces, space_from_description

__all__ = [
    "SPACES",
    "Arch",
    "SearchSpace",
    "ElasticMobileNetSpace",
    "ElasticSpec",
    "get_space",
    "list_spaces",
    "space_from_description",
]
