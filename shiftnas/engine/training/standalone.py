"""Stand-alone training of one architecture from scratch: the ground truth for ranking (methods.md §6.7).

Every architecture gets the *same* fixed recipe (:class:`StandaloneRecipe`) and a fresh random
initialisation per seed, so differences in final accuracy come from the architecture (and the
seed), never from per-architecture tuning. This is the small-scale stand-in for NAS-Bench tables.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import StandaloneRecipe
from ...data import DataSplits
from ...search_spaces import Arch, SearchSpace
from ..evaluation.subnet import accuracy_and_loss
from ..tensors import iterate_batches, resize
from .optim import OptimizerSettings, clipped_step, make_optimizer, set_lr


def fresh_subnet(space: SearchSpace, arch: Arch, num_classes: int, seed: int) -> nn.Module:
    """A randomly initialised static network of ``arch``: a supernet built under ``seed``, extracted.

    The global torch RNG is restored afterwards, so callers' random streams are untouched.
    """
    space.validate(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        supernet = space.build_supernet(num_classes)
        return space.extract(supernet, arch)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: StandaloneRecipe,
    seed: int,
    epoch: int,
    total_steps: int,
) -> None:
    """One epoch of SGD over ``images`` (already at the architecture's resolution)."""
    steps_per_epoch = math.ceil(len(labels) / recipe.batch_size)
    settings = OptimizerSettings.of(recipe)
    shuffle = torch.Generator().manual_seed(seed * 100_003 + epoch)
    for i, idx in enumerate(iterate_batches(len(labels), recipe.batch_size, shuffle)):
        if len(idx) < 2:  # BatchNorm cannot normalise a batch of one in train mode
            continue
        step = epoch * steps_per_epoch + i
        set_lr(optimizer, step, total_steps, settings)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"stand-alone training diverged at epoch {epoch}, step {i} (loss {loss.item()}); lower the recipe lr"
            )
        loss.backward()
        clipped_step(optimizer, model, settings)


def train_standalone(
    space: SearchSpace, arch: Arch, data: DataSplits, recipe: StandaloneRecipe, seed: int
) -> dict[str, float]:
    """Train a fresh network of ``arch`` alone on ``data.train``; deterministic for a given ``seed``.

    Returns ``{'val_accuracy', 'test_accuracy', 'val_loss', 'test_loss', 'seconds'}`` (accuracies in
    percent, mean cross-entropy; BN running statistics from training, no recalibration).
    ``test_accuracy`` is the ground truth that supernet rankings are compared against (``test_loss``
    its continuous, less granular companion); the val numbers are reported for reference only.
    """
    # channels_last: oneDNN's fast layout for depthwise convolutions, ~2x faster training steps at
    # 12-28 px on one CPU thread (``bench/results/train_speed.md``); the same function up to float rounding.
    model = fresh_subnet(space, arch, data.num_classes, seed).to(memory_format=torch.channels_last)
    start = time.perf_counter()
    optimizer = make_optimizer(model, OptimizerSettings.of(recipe))
    images, labels = data.train.tensors
    images = resize(images, arch.resolution).contiguous(memory_format=torch.channels_last)  # once, not per batch
    total_steps = math.ceil(len(labels) / recipe.batch_size) * recipe.epochs
    model.train()
    for epoch in range(recipe.epochs):
        train_epoch(model, optimizer, images, labels, recipe, seed, epoch, total_steps)
    model.eval()
    val, val_loss = accuracy_and_loss(model, *data.val.tensors, arch.resolution, nhwc=True)
    test, test_loss = accuracy_and_loss(model, *data.test.tensors, arch.resolution, nhwc=True)
    return {
        "val_accuracy": val,
        "test_accuracy": test,
        "val_loss": val_loss,
        "test_loss": test_loss,
        "seconds": time.perf_counter() - start,
        "memory_format": "channels_last",  # records without it were trained in NCHW
    }
