"""The :class:`DataSplits` container and the seeded, stratified split / resize / normalise helpers."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from shiftnas.errors import ConfigError, DataError

Arrays = tuple[torch.Tensor, np.ndarray]  # (images N×C×H×W float in [0, 1], labels N)


@dataclass
class DataSplits:
    """In-memory train / val / test splits of one data set, normalised with train statistics."""

    name: str
    train: TensorDataset  # (images float32 N×3×H×W, labels int64)
    val: TensorDataset  # scores subnets during search
    test: TensorDataset  # touched only for final reports
    num_classes: int
    image_size: int  # H (= W) of the stored tensors
    mean: tuple[float, float, float]  # per-channel normalisation applied to every split
    std: tuple[float, float, float]
    holdout: TensorDataset | None = None  # train-pool images left out of train (``data.train_size``)

    def summary(self) -> str:
        """One line, e.g. ``mnist5k: 3500 train / 500 val / 1000 test, 10 classes, 28 px``."""
        held = f" / {len(self.holdout)} held out" if self.holdout is not None and len(self.holdout) else ""
        return (
            f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test{held}, "
            f"{self.num_classes} classes, {self.image_size} px"
        )


def check_options(val_fraction: float, test_fraction: float, image_size: int | None) -> None:
    """Reject split fractions outside (0, 1) or summing to >= 1, and non-positive image sizes."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each lie in (0, 1) "
            "and sum to less than 1"
        )
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be a positive number of pixels, got {image_size}")


def carve(labels: np.ndarray, count: int, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified split of ``range(len(labels))`` into (rest, ``count`` carved-out indices)."""
    try:
        return train_test_split(np.arange(len(labels)), test_size=count, stratify=labels, random_state=seed % 2**32)
    except ValueError as err:  # too few images per class for a stratified split
        reason = " ".join(str(err).split())
        message = f"{name}: cannot carve {count} of {len(labels)} images stratified by class: {reason}"
        raise DataError(message) from None


def limit_train(data: DataSplits, train_size: int | None, seed: int) -> DataSplits:
    """Keep a seeded, stratified ``train_size`` of ``data.train`` as train; the rest becomes ``holdout``.

    Normalisation stays that of the whole train pool, so the subset and the holdout share it.
    ``None`` (or the whole pool) keeps every training image and leaves ``holdout`` empty.
    """
    images, labels = data.train.tensors
    if train_size is None or train_size == len(labels):
        return data
    if not isinstance(train_size, int) or not 0 < train_size < len(labels):
        raise ConfigError(
            f"data.train_size={train_size} must lie in 1..{len(labels)} "
            f"(the training pool of {data.name} after val and test)"
        )
    held, kept = carve(labels.numpy(), train_size, seed, data.name)
    kept, held = np.sort(kept), np.sort(held)  # keep the pool's order inside each part
    subset = TensorDataset(images[kept], labels[kept])
    return replace(data, train=subset, holdout=TensorDataset(images[held], labels[held]))


def split_three_ways(
    labels: np.ndarray, seed: int, val_fraction: float, test_fraction: float, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, val, test): test_fraction of all to test, then val_fraction of all to val."""
    n = len(labels)
    rest, test = carve(labels, round(test_fraction * n), seed, name)
    keep, val = carve(labels[rest], round(val_fraction * n), seed, name)
    return rest[keep], rest[val], test


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear resize of N×C×H×W images to size×size (anti-aliased when shrinking); None keeps them."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    shrink = size < max(images.shape[-2:])
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def make_splits(name: str, num_classes: int, train: Arrays, val: Arrays, test: Arrays) -> DataSplits:
    """Replicate grey images to 3 channels and normalise all splits with per-channel train mean/std.

    The image tensors are normalised in place, so pass tensors the caller no longer needs.
    """
    rgb = [x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1).contiguous() for x, _ in (train, val, test)]
    mean = rgb[0].mean(dim=(0, 2, 3))
    std = rgb[0].std(dim=(0, 2, 3), correction=0).clamp_min(1e-6)  # constant images: avoid dividing by 0
    datasets = [
        TensorDataset(x.float().sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1)), torch.as_tensor(y).long())
        for x, (_, y) in zip(rgb, (train, val, test))
    ]
    return DataSplits(
        name=name,
        train=datasets[0],
        val=datasets[1],
        test=datasets[2],
        num_classes=num_classes,
        image_size=int(rgb[0].shape[-1]),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def split_in_memory(
    name: str,
    images: torch.Tensor,
    labels: np.ndarray,
    num_classes: int,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    image_size: int | None,
) -> DataSplits:
    """Seeded stratified train/val/test split of one in-memory image set, resized and normalised."""
    images = resize(images, image_size)
    parts = split_three_ways(labels, seed, val_fraction, test_fraction, name)
    return make_splits(name, num_classes, *[(images[idx], labels[idx]) for idx in parts])
