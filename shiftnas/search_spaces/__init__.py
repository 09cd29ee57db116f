"""Search spaces: elastic supernets and their integer genomes, resolved by name."""

from .base import Arch, SearchSpace
from .elastic_mbv3 import ElasticMobileNetSpace, ElasticSpec
from .registry import get_space, list_spaces, register_space

__all__ = ["Arch", "SearchSpace", "ElasticMobileNetSpace", "ElasticSpec", "get_space", "list_spaces",
           "register_space"]
