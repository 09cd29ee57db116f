"""Search spaces resolve by name through one registry (``--space NAME``), as timm does for models."""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from .base import SearchSpace

_REGISTRY: dict[str, Callable[..., SearchSpace]] = {}


def register_space(name: str) -> Callable[[Callable[..., SearchSpace]], Callable[..., SearchSpace]]:
    """Decorator: register a search-space factory under ``name``."""

    def wrap(factory: Callable[..., SearchSpace]) -> Callable[..., SearchSpace]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_spaces() -> list[str]:
    """Names of every registered search space."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_space(name: str, **kwargs) -> SearchSpace:
    """Build the search space registered as ``name``."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown search space '{name}'; choose one of: {', '.join(list_spaces())}")
    return _REGISTRY[name](**kwargs)


def _load_builtin() -> None:
    from . import compact, ofa_mbv3  # noqa: F401  (registers the built-in spaces)
