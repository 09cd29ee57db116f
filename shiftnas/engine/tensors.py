"""Small tensor helpers shared by training and evaluation."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize a batch to ``resolution`` x ``resolution`` (bilinear; a no-op at the native size)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


def iterate_batches(n: int, batch_size: int, generator: torch.Generator | None = None):
    """Yield index tensors covering ``range(n)`` in batches (shuffled when a generator is given)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def random_shift(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Each image moved by its ``(dy, dx)`` row of ``offsets`` (pixels), the uncovered border zero: the
    padded random crop of ``torchvision.transforms.RandomCrop(padding=...)``, done on a whole batch."""
    pad = int(offsets.abs().max()) if offsets.numel() else 0
    if pad == 0:
        return images
    height, width = images.shape[-2:]
    padded = F.pad(images, (pad, pad, pad, pad))
    crops = [
        padded[i, :, pad - dy : pad - dy + height, pad - dx : pad - dx + width]
        for i, (dy, dx) in enumerate(offsets.tolist())
    ]
    return torch.stack(crops)


@contextmanager
def channels_last(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in ``channels_last`` inside the block (oneDNN's fast layout on a CPU: training steps
    1.5-2x faster at 12-28 px, ``bench/results/train_speed.md``), back in the default layout after it;
    the values are untouched, so whatever runs after the block sees the same model as before."""
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)
