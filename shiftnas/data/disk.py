"""Data sets read from local disk: ``cifar10``, ``cifar100`` (torchvision may download them) and ``imagefolder:PATH``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision import datasets, transforms

from shiftnas.data.registry import register_dataset
from shiftnas.data.splits import DataSplits, carve, make_splits, resize, split_in_memory
from shiftnas.errors import DataError

DEFAULT_ROOT = "~/.cache/shiftnas/data"


def _cifar(
    cls: type[datasets.CIFAR10],
    name: str,
    title: str,
    num_classes: int,
    root: str | None,
    seed: int,
    val_fraction: float,
    image_size: int | None,
    download: bool,
) -> DataSplits:
    """Official test set as test; a seeded stratified ``val_fraction`` of the official train set as val."""
    root_dir = Path(root or DEFAULT_ROOT).expanduser()
    try:
        train = cls(str(root_dir), train=True, download=download)
        test = cls(str(root_dir), train=False, download=False)
    except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found or corrupted"; a failed download
        if download:
            raise DataError(f"cannot download {title} into {root_dir}: {' '.join(str(err).split())}") from None
        folder = root_dir / cls.base_folder
        problem = "is incomplete or corrupted (MD5 check failed)" if folder.is_dir() else "not found"
        raise DataError(
            f"{title} {problem} under {root_dir}: expected the extracted '{cls.base_folder}' folder "
            "(online, --set data.download=true lets torchvision download it)"
        ) from None

    def images(data: np.ndarray) -> torch.Tensor:  # uint8 N×H×W×C -> float N×C×H×W in [0, 1]
        return resize(torch.from_numpy(data).permute(0, 3, 1, 2).contiguous().float().div_(255), image_size)

    labels, test_labels = np.asarray(train.targets), np.asarray(test.targets)
    keep, val = carve(labels, round(val_fraction * len(labels)), seed, name)
    train_part = (images(train.data[keep]), labels[keep])
    val_part = (images(train.data[val]), labels[val])
    return make_splits(name, num_classes, train_part, val_part, (images(test.data), test_labels))


@register_dataset("cifar10", downloads=True)
def cifar10(
    root: str | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    download: bool = False,
) -> DataSplits:
    """CIFAR-10 from ``root`` (default ``~/.cache/shiftnas/data``); ``test_fraction`` is unused (official test)."""
    return _cifar(datasets.CIFAR10, "cifar10", "CIFAR-10", 10, root, seed, val_fraction, image_size, download)


@register_dataset("cifar100", downloads=True)
def cifar100(
    root: str | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    download: bool = False,
) -> DataSplits:
    """CIFAR-100 (fine labels) from ``root``; ``test_fraction`` is unused (official test set)."""
    return _cifar(datasets.CIFAR100, "cifar100", "CIFAR-100", 100, root, seed, val_fraction, image_size, download)


def _read_folder(path: Path, size: int) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """All images under ``path/<class>/`` as (float N×3×size×size in [0, 1], labels, class names)."""
    try:
        folder = datasets.ImageFolder(str(path))  # its default loader opens every image as RGB
    except FileNotFoundError:  # no class sub-folders, or no image files in them
        raise DataError(f"no images found under {path}: expected one sub-folder of images per class") from None
    to_tensor = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    images = []
    for file, _ in folder.samples:
        try:
            images.append(to_tensor(folder.loader(file)))
        except OSError as err:  # PIL.UnidentifiedImageError, truncated files, ...
            raise DataError(f"cannot read image {file}: {err}") from None
    return torch.stack(images), np.asarray(folder.targets, dtype=np.int64), folder.classes


@register_dataset("imagefolder", takes_path=True)
def imagefolder(
    root: str | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: int | None = None,
) -> DataSplits:
    """Images in class sub-folders under ``root``, resized to ``image_size`` (default 32).

    With ``root/train/`` and ``root/test/`` (or ``root/val/``) the latter is the test split and train/ is
    split into train+val; otherwise the one folder (or a lone train/) is split into train/val/test.
    """
    if not root:
        raise DataError("imagefolder needs a folder: use 'imagefolder:PATH'")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"image folder not found: {path}")
    name, size = f"imagefolder:{root}", image_size or 32
    train_dir = path / "train"
    test_dir = next((path / sub for sub in ("test", "val") if (path / sub).is_dir()), None)
    if not (train_dir.is_dir() and test_dir is not None):
        x, y, classes = _read_folder(train_dir if train_dir.is_dir() else path, size)
        options = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, image_size=None)
        return split_in_memory(name, x, y, len(classes), **options)

    x, y, classes = _read_folder(train_dir, size)
    test_x, test_y, test_classes = _read_folder(test_dir, size)
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise DataError(f"{test_dir} has classes missing from {train_dir}: {', '.join(unknown)}")
    test_y = np.asarray([classes.index(test_classes[t]) for t in test_y], dtype=np.int64)  # align by name
    keep, val = carve(y, round(val_fraction * len(y)), seed, name)
    return make_splits(name, len(classes), (x[keep], y[keep]), (x[val], y[val]), (test_x, test_y))
