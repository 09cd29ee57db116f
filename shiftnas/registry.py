"""One way to resolve a name to an implementation: a :class:`Registry` per kind, filled by imports.

Every named choice of shiftnas (search spaces, data sets, objectives, shift strategies, searchers,
surrogates, picks) lives in a registry, as timm's models do: the module that implements a choice
registers it when it is imported, and each package's ``__init__`` imports its implementations, so
importing the package fills its registry. A registry imports nothing back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> implementations of one kind (``kind`` names it in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name``."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` as ``name`` (a name is registered once)."""
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """The implementation registered as ``name``; a one-line ConfigError naming the choices otherwise."""
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def check(self, name: str) -> str:
        """``name`` if it is registered (see :meth:`get`)."""
        self.get(name)
        return name

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
