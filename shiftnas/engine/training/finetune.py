"""Two-phase fine-tuning of a chosen subnet (NATv2 post-processing, methods.md §4.4 and B4).

Phase 1 trains the extracted subnet on the train split and validates every epoch: the best
number of epochs is the one with the highest validation accuracy; training stops early when the
validation loss has not improved for ``patience`` epochs. Phase 2 re-extracts the subnet (fresh
supernet weights) and trains it on train + val for exactly that many epochs, with the same
schedule, no early stopping and no monitoring. The test split is read once, at the very end, for
the report (NATv2's code watched the test loss in phase 2; B4).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict
from typing import Any, Callable

import torch
import torch.nn as nn

from ...config import FinetuneRecipe
from ...data import DataSplits
from ..evaluation.subnet import accuracy, accuracy_and_loss
from ..tensors import channels_last, resize
from .optim import OptimizerSettings, make_optimizer
from .standalone import train_epoch


def _loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy (``images`` already at the subnet's resolution)."""
    return accuracy_and_loss(model, images, labels, images.shape[-1], batch_size=250)[1]


def _train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: FinetuneRecipe,
    epochs: int,
    seed: int,
    after_epoch: Callable[[int], bool] | None = None,
) -> int:
    """Train ``epochs`` epochs (schedule over ``recipe.epochs``); ``after_epoch`` may stop early.

    The steps run in ``channels_last`` (as stand-alone and supernet training: 1.5-2x faster on a CPU,
    ``bench/results/train_speed.md``); the model leaves in the default layout."""
    optimizer = make_optimizer(model, OptimizerSettings.of(recipe))
    total_steps = math.ceil(len(labels) / recipe.batch_size) * recipe.epochs
    images = images.contiguous(memory_format=torch.channels_last)  # once, not per batch
    done = 0
    with channels_last(model):
        for epoch in range(epochs):
            model.train()
            train_epoch(model, optimizer, images, labels, recipe, seed, epoch, total_steps)
            done = epoch + 1
            if after_epoch is not None and after_epoch(done):
                break
    return done


def finetune(
    make_subnet: Callable[[], nn.Module],
    resolution: int,
    data: DataSplits,
    recipe: FinetuneRecipe,
    seed: int = 0,
    progress: Callable[[str, int, dict], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune the subnet ``make_subnet()`` returns; test accuracy before and after, read at the end.

    ``make_subnet`` must return a fresh copy each call (phase 2 starts again from the supernet's weights).
    """
    report = progress or (lambda phase, epoch, info: None)
    train_x, train_y = resize(data.train.tensors[0], resolution), data.train.tensors[1]
    val_x, val_y = resize(data.val.tensors[0], resolution), data.val.tensors[1]
    before = make_subnet()
    initial = copy.deepcopy(before)
    val_before = accuracy(initial, val_x, val_y, resolution)

    curve: list[dict[str, float]] = []
    initial_loss = _loss(initial, val_x, val_y)
    best = {"epoch": 0, "val_accuracy": val_before, "val_loss": initial_loss}
    best_loss, since = initial_loss, 0

    def after_epoch(epoch: int) -> bool:
        nonlocal best_loss, since
        point = {
            "epoch": epoch,
            "val_accuracy": accuracy(before, val_x, val_y, resolution),
            "val_loss": _loss(before, val_x, val_y),
        }
        curve.append(point)
        if point["val_accuracy"] > best["val_accuracy"]:
            best.update(point)
        if point["val_loss"] < best_loss - 1e-6:
            best_loss, since = point["val_loss"], 0
        else:
            since += 1
        report("phase 1", epoch, point)
        return since >= recipe.patience

    phase1_epochs = _train(before, train_x, train_y, recipe, recipe.epochs, seed, after_epoch)
    epochs = int(best["epoch"])
    final = make_subnet()
    if epochs > 0:
        both_x, both_y = torch.cat([train_x, val_x]), torch.cat([train_y, val_y])
        _train(final, both_x, both_y, recipe, epochs, seed)
    final.eval()
    report("phase 2", epochs, {})
    # the test split is read here, once, for the report
    test_x, test_y = data.test.tensors
    result = {
        "best_epoch": epochs,
        "phase1_epochs": phase1_epochs,
        "val_accuracy_before": val_before,
        "val_loss_before": initial_loss,
        "val_accuracy_best": best["val_accuracy"],
        "curve": curve,
        "test_accuracy_before": accuracy(initial, test_x, test_y, resolution),
        "test_accuracy_after": accuracy(final, test_x, test_y, resolution),
        "recipe": asdict(recipe),
    }
    result["model"] = final
    return result


def finetune_job(subnet: nn.Module, resolution: int, seed: int, shared: tuple[DataSplits, FinetuneRecipe]):
    """Run on a Dask ``train`` worker: :func:`finetune` of a copy of ``subnet`` (one torch thread,
    as a local ``threads=1`` run, so the result is the same)."""
    from ...cluster.pool import relax_malloc_trim

    relax_malloc_trim()
    data, recipe = shared
    torch.set_num_threads(1)
    return finetune(lambda: copy.deepcopy(subnet), resolution, data, recipe, seed)
