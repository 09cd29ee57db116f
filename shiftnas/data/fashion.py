"""Fashion-MNIST (70,000 28×28 grey images, 10 classes) parsed by torchvision, found offline where possible.

Where the files are looked for, in order:

1. ``ROOT/FashionMNIST/raw/`` with the four uncompressed IDX files: torchvision's own layout, which
   ``torchvision.datasets.FashionMNIST(ROOT, download=True)`` produces (``ROOT`` is ``data.root``,
   default ``~/.cache/shiftnas/data``);
2. the four original ``.gz`` files in ``ROOT/FashionMNIST/raw/``, in ``ROOT`` itself, or where the
   Debian package ``dataset-fashion-mnist`` installs them (``/usr/share/datasets/fashion-mnist/``):
   they are decompressed once into torchvision's layout (under ``ROOT``, or under the default cache
   when ``ROOT`` is not writable) and parsed from there;
3. with ``download=True`` (``--set data.download=true``), torchvision downloads them into ``ROOT``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.utils import extract_archive

from shiftnas.data.registry import register_dataset
from shiftnas.data.splits import DataSplits, carve, make_splits, resize
from shiftnas.errors import DataError

DEFAULT_ROOT = "~/.cache/shiftnas/data"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _raw_folder(root: Path) -> Path:
    return root / datasets.FashionMNIST.__name__ / "raw"


def _has(folder: Path, suffix: str = "") -> bool:
    return all((folder / f"{name}{suffix}").is_file() for name in RAW_FILES)


def _decompress(source: Path, root: Path) -> None:
    """Decompress the four ``.gz`` files of ``source`` into torchvision's layout under ``root`` (atomically)."""
    raw = _raw_folder(root)
    raw.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        if (raw / name).is_file():
            continue
        with tempfile.TemporaryDirectory(dir=raw) as tmp:
            extracted = extract_archive(str(source / f"{name}.gz"), tmp)  # torchvision's gzip handling
            os.replace(extracted, raw / name)


def locate(root: str | None, download: bool = False) -> Path:
    """The root under which torchvision's ``FashionMNIST`` finds the raw files (see the module docstring)."""
    root_dir = Path(root or DEFAULT_ROOT).expanduser()
    if _has(_raw_folder(root_dir)):
        return root_dir
    for source in (_raw_folder(root_dir), root_dir, DEBIAN_DIR):
        if not _has(source, ".gz"):
            continue
        for target in dict.fromkeys((root_dir, Path(DEFAULT_ROOT).expanduser())):
            try:
                _decompress(source, target)
                return target
            except OSError:  # a read-only root: fall back to the default cache
                continue
        raise DataError(
            f"Fashion-MNIST found in {source} but cannot be decompressed under {root_dir} "
            f"or {DEFAULT_ROOT}: make one of them writable"
        )
    if download:
        try:
            datasets.FashionMNIST(str(root_dir), train=True, download=True)
            datasets.FashionMNIST(str(root_dir), train=False, download=True)
        except (OSError, RuntimeError) as err:
            raise DataError(f"cannot download Fashion-MNIST into {root_dir}: {' '.join(str(err).split())}") from None
        return root_dir
    raise DataError(
        f"Fashion-MNIST not found in {root_dir} or {DEBIAN_DIR}: install the Debian package "
        "(apt-get install dataset-fashion-mnist) or, online, let torchvision download it (--set data.download=true)"
    )


def _read(root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N×28×28 images, int64 labels) of one official split, parsed by torchvision."""
    split = "train" if train else "test"
    try:
        data = datasets.FashionMNIST(str(root), train=train, download=False)
    except (RuntimeError, ValueError, OSError) as err:  # bad magic number, truncated file, ...
        raise DataError(
            f"cannot read Fashion-MNIST {split} files under {_raw_folder(root)}: {' '.join(str(err).split())}"
        ) from None
    images, labels = data.data.numpy(), data.targets.numpy().astype(np.int64)
    if len(images) != len(labels) or images.shape[1:] != (28, 28):
        raise DataError(
            f"Fashion-MNIST {split} files under {_raw_folder(root)} are inconsistent: "
            f"{len(images)} images of shape {tuple(images.shape[1:])}, {len(labels)} labels"
        )
    return images, labels


@register_dataset("fashion-mnist", downloads=True)
def fashion_mnist(
    root: str | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    download: bool = False,
) -> DataSplits:
    """The official 60k train pool (a seeded stratified ``val_fraction`` of it as val) and 10k test set.

    ``test_fraction`` is unused (the official test set is the test split); ``data.train_size`` takes a
    subset of the rest as train (see :func:`shiftnas.data.load_dataset`).
    """
    found = locate(root, download)
    train_images, train_labels = _read(found, train=True)
    test_images, test_labels = _read(found, train=False)

    def tensor(images: np.ndarray) -> torch.Tensor:  # uint8 N×H×W -> float N×1×H×W in [0, 1]
        return resize(torch.from_numpy(images).unsqueeze(1).float().div_(255), image_size)

    keep, val = carve(train_labels, round(val_fraction * len(train_labels)), seed, "fashion-mnist")
    return make_splits(
        "fashion-mnist",
        10,
        (tensor(train_images[keep]), train_labels[keep]),
        (tensor(train_images[val]), train_labels[val]),
        (tensor(test_images), test_labels),
    )
