"""One function that turns any stored architecture (a record's ``arch`` dict) back into its type.

Each space family has its own architecture value (``Arch`` for the elastic MobileNets, ``ResNetArch``
for OFA ResNet50, ``TableArch`` for tables); their dicts are told apart by the fields they carry, so
records, landmarks, tables and latency datasets need no space to be read.
"""

from __future__ import annotations

from typing import Any, Union

from .base import Arch
from .ofa_resnet import ResNetArch
from .table import TableArch

AnyArch = Union[Arch, ResNetArch, TableArch]


def arch_from_dict(d: dict[str, Any]) -> AnyArch:
    """The architecture ``d`` (from ``arch.to_dict()``) describes, of the right type."""
    if "genes" in d:
        return TableArch.from_dict(d)
    if "stem_skip" in d:
        return ResNetArch.from_dict(d)
    return Arch.from_dict(d)
