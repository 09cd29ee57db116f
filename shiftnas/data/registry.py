"""Dataset names -> loaders (:data:`DATASETS`, filled by the loader modules), and :func:`load_dataset`,
the one entry point the engine uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from shiftnas.data.splits import DataSplits, check_options, limit_train
from shiftnas.errors import ConfigError, DataError
from shiftnas.registry import Registry


@dataclass(frozen=True)
class Loader:
    """``load(root, seed=..., val_fraction=..., test_fraction=..., image_size=...[, download=...])``."""

    load: Callable[..., DataSplits]
    takes_path: bool = False  # written NAME:PATH; the PATH is passed to the loader as its root
    downloads: bool = False  # also takes download=True (torchvision downloads)


DATASETS: Registry[Loader] = Registry("dataset")


def register_dataset(name: str, takes_path: bool = False, downloads: bool = False) -> Callable:
    """Decorator: register a loader function under ``name``."""

    def add(load: Callable[..., DataSplits]) -> Callable[..., DataSplits]:
        DATASETS.add(name, Loader(load, takes_path, downloads))
        return load

    return add


def available_datasets() -> list[str]:
    """The accepted dataset specs, e.g. ``['mnist5k', ..., 'imagefolder:PATH']``."""
    return [f"{name}:PATH" if DATASETS.get(name).takes_path else name for name in DATASETS]


def load_dataset(
    spec: str,
    root: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    train_size: int | None = None,
    download: bool = False,
) -> DataSplits:
    """Load ``spec`` (see :func:`available_datasets`) as seeded, disjoint, normalised train/val/test splits.

    ``root`` is where fashion-mnist/cifar10/cifar100 live (default ``~/.cache/shiftnas/data``);
    ``image_size`` resizes (default: native size, 28 for digits, 32 for imagefolder); ``train_size``
    keeps a seeded stratified subset of the training pool as train, the rest as ``holdout``;
    ``download`` lets torchvision download the data sets it knows.
    """
    name, colon, path = spec.partition(":")
    name = name.strip().lower()
    loader = DATASETS.get(name) if name in DATASETS else None
    if loader is None or (colon and not loader.takes_path):
        raise DataError(f"unknown dataset {spec!r}; choose one of: {', '.join(available_datasets())}")
    check_options(val_fraction, test_fraction, image_size)
    options = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, image_size=image_size)
    if loader.downloads:
        options["download"] = download
    elif download:
        downloadable = [n for n in DATASETS if DATASETS.get(n).downloads]
        raise ConfigError(f"data.download applies to {', '.join(sorted(downloadable))}, not to {name}")
    data = loader.load(path or root, **options)
    if data.num_classes < 2:
        raise DataError(
            f"{spec} has {data.num_classes} class: a classifier needs at least two (one sub-folder "
            "per class for an image folder)"
        )
    return limit_train(data, train_size, seed)
