"""shiftnas: multi-objective, hardware-aware NAS over OFA-style elastic supernets.

The public API (imported on first use, so ``import shiftnas`` stays light)::

    import shiftnas
    cfg = shiftnas.load_config("configs/default.yaml", ["search.generations=4"])
    summary = shiftnas.run(cfg)                     # train, search, export: what `shiftnas run` does
    space = shiftnas.get_space("compact-mbv3")      # shiftnas.list_spaces() names them all
    arch = space.sample(numpy.random.default_rng(0))  # an Arch
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "run": "shiftnas.pipeline.run",
    "load_config": "shiftnas.config",
    "RunConfig": "shiftnas.config",
    "get_space": "shiftnas.search_spaces",
    "list_spaces": "shiftnas.search_spaces",
    "Arch": "shiftnas.search_spaces",
}
__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'shiftnas' has no attribute '{name}'")
