"""Small tensor helpers shared by training and evaluation."""

from __future__ import annotations

import torch
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
