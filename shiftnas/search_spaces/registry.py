"""Search spaces resolve by name through one registry (``--space NAME``), as timm does for models.

Each space module registers its factory when imported; ``search_spaces/__init__`` imports them all.
"""

from __future__ import annotations

from typing import Callable

from ..registry import Registry
from .base import SearchSpace

SPACES: Registry[Callable[..., SearchSpace]] = Registry("search space")


def list_spaces() -> list[str]:
    """Names of every registered search space, sorted."""
    return sorted(SPACES.names())


def get_space(name: str, **kwargs) -> SearchSpace:
    """Build the search space registered as ``name``."""
    return SPACES.get(name)(**kwargs)


def space_from_description(description: dict) -> SearchSpace:
    """Rebuild a space from its :meth:`SearchSpace.describe` (what checkpoints and remote workers get)."""
    kwargs = {k: v for k, v in description.items() if k != "name"}
    return get_space(description["name"], **kwargs)
