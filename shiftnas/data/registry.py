"""Dataset names -> loaders, and :func:`load_dataset`, the one entry point the engine uses."""

from __future__ import annotations

from typing import Callable

from shiftnas.data.bundled import digits, mnist5k
from shiftnas.data.disk import cifar10, cifar100, imagefolder
from shiftnas.data.splits import DataSplits, check_options
from shiftnas.errors import DataError

# Every loader is called as loader(root, seed=..., val_fraction=..., test_fraction=..., image_size=...).
LOADERS: dict[str, Callable[..., DataSplits]] = {
    "mnist5k": mnist5k,
    "digits": digits,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "imagefolder": imagefolder,
}
TAKES_PATH = {"imagefolder"}  # written NAME:PATH; the PATH is passed to the loader as its root


def available_datasets() -> list[str]:
    """The accepted dataset specs, e.g. ``['mnist5k', ..., 'imagefolder:PATH']``."""
    return [f"{name}:PATH" if name in TAKES_PATH else name for name in LOADERS]


def load_dataset(
    spec: str,
    root: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: int | None = None,
) -> DataSplits:
    """Load ``spec`` (see :func:`available_datasets`) as seeded, disjoint, normalised train/val/test splits.

    ``root`` is where cifar10/cifar100 live (default ``~/.cache/shiftnas/data``); ``image_size`` resizes
    (default: native size, 28 for digits, 32 for imagefolder).
    """
    name, colon, path = spec.partition(":")
    loader = LOADERS.get(name.strip().lower())
    if loader is None or (colon and name.strip().lower() not in TAKES_PATH):
        raise DataError(f"unknown dataset {spec!r}; choose one of: {', '.join(available_datasets())}")
    check_options(val_fraction, test_fraction, image_size)
    return loader(
        path or root, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, image_size=image_size
    )
