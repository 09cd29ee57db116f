"""Dataset names -> loaders, and :func:`load_dataset`, the one entry point the engine uses."""

from __future__ import annotations

from typing import Callable

from shiftnas.data.bundled import digits, mnist5k
from shiftnas.data.disk import cifar10, cifar100, imagefolder
from shiftnas.data.fashion import fashion_mnist
from shiftnas.data.splits import DataSplits, check_options, limit_train
from shiftnas.errors import ConfigError, DataError

# Every loader is called as loader(root, seed=..., val_fraction=..., test_fraction=..., image_size=...).
LOADERS: dict[str, Callable[..., DataSplits]] = {
    "mnist5k": mnist5k,
    "digits": digits,
    "fashion-mnist": fashion_mnist,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "imagefolder": imagefolder,
}
TAKES_PATH = {"imagefolder"}  # written NAME:PATH; the PATH is passed to the loader as its root
DOWNLOADS = {"fashion-mnist", "cifar10", "cifar100"}  # also take download=True (torchvision downloads)


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
    loader = LOADERS.get(name)
    if loader is None or (colon and name not in TAKES_PATH):
        raise DataError(f"unknown dataset {spec!r}; choose one of: {', '.join(available_datasets())}")
    check_options(val_fraction, test_fraction, image_size)
    options = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, image_size=image_size)
    if name in DOWNLOADS:
        options["download"] = download
    elif download:
        raise ConfigError(f"data.download applies to {', '.join(sorted(DOWNLOADS))}, not to {name}")
    return limit_train(loader(path or root, **options), train_size, seed)
