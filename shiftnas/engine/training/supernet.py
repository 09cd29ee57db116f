"""Supernet training with the sandwich rule and in-place distillation (BigNAS / OFA style).

Each step trains the largest subnet on the labels, then the smallest and ``n_random`` random
subnets on the labels plus a distillation term towards the largest subnet's (detached) soft
predictions. The per-subnet losses are averaged (summing them diverged at lr 0.1, ofa.md §7.1)
and the gradients clipped (the policy of ``optim.py``: SGD with Nesterov momentum, a cosine schedule
after a linear warm-up). The whole training state is checkpointed atomically after every epoch, and training
resumes from the last finished epoch. An optional :class:`LandmarkRegularizer` adds the landmark
ranking term to every step (gradients accumulated before clipping; see ``landmarks.py``). With
``train.ema_decay`` the supernet ends with the moving average of its weights (``averaging.py``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import TrainConfig
from ...data import DataSplits
from ...errors import ShiftnasError
from ...search_spaces import Arch, SearchSpace
from ..checkpoint import read_checkpoint, save_supernet
from ..tensors import channels_last, iterate_batches, random_shift, resize
from .averaging import copy_average, weight_average
from .distributed import Ranks, synced_batch_norm
from .landmarks import LandmarkRegularizer, landmark_weight
from .optim import OptimizerSettings, clipped_step, make_optimizer, set_lr


def sandwich_archs(space: SearchSpace, rng: np.random.Generator, n_random: int) -> list[Arch]:
    """The subnets of one sandwich step: largest first (the teacher), smallest, then random ones."""
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n_random)]


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, global_batch: int | None = None
) -> torch.Tensor:
    """KL(teacher || student) on soft predictions (teacher detached); per sample of this batch, or
    summed and divided by ``global_batch`` (this batch is one rank's shard of it)."""
    student, teacher = F.log_softmax(student_logits, dim=1), F.softmax(teacher_logits.detach(), dim=1)
    if global_batch is None:
        return F.kl_div(student, teacher, reduction="batchmean")
    return F.kl_div(student, teacher, reduction="sum") / global_batch


def initialize_supernet(supernet: nn.Module, init: str) -> None:
    """Set the weights a training from scratch starts from (``TrainConfig.init``); ``torch`` keeps them."""
    if init == "he_fout":
        from ofa.utils.my_modules import init_models

        init_models(supernet, "he_fout")


def sandwich_step(
    space: SearchSpace,
    supernet: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    archs: list[Arch],
    kd_ratio: float,
    global_batch: int | None = None,
) -> torch.Tensor:
    """Forward/backward of one sandwich step; returns the averaged loss (gradients accumulated).

    With ``global_batch`` the batch is one rank's shard: its losses are sums over its samples divided
    by ``global_batch``, so that the ranks' losses (and gradients) add up to the global batch's."""
    teacher_logits = None
    total = 0.0
    for i, arch in enumerate(archs):
        space.activate(supernet, arch)
        logits = supernet(resize(images, arch.resolution))
        if global_batch is None:
            loss = F.cross_entropy(logits, labels)
        else:
            loss = F.cross_entropy(logits, labels, reduction="sum") / global_batch
        if i == 0:
            teacher_logits = logits.detach()
        elif kd_ratio > 0:
            loss = loss + kd_ratio * distillation_loss(logits, teacher_logits, global_batch)
        (loss / len(archs)).backward()
        total += loss.item() / len(archs)
    return torch.tensor(total)


ProgressFn = Callable[[int, int, float], None]  # (step, total_steps, loss)


def training_identity(
    space: SearchSpace, data: DataSplits, cfg: TrainConfig, seed: int, regularizer: LandmarkRegularizer | None = None
) -> dict:
    """What determines the trained weights; a checkpoint is resumed only if this matches."""
    config = asdict(cfg)
    if cfg.processes == 1 or cfg.sync_bn:  # the weights one process trains (up to float rounding)
        del config["processes"], config["sync_bn"]
    for name, before in (("augment_shift", 0), ("init", "torch"), ("ema_decay", 0.0)):
        if config[name] == before:  # checkpoints trained before the setting existed still resume
            del config[name]
    identity = {"config": config, "seed": seed, "space": space.describe(), "data": data.summary()}
    if regularizer is not None:
        identity["landmarks"] = regularizer.identity()
    return identity


def finished_training(checkpoint_path: str | Path, identity: dict) -> dict | None:
    """The checkpoint at ``checkpoint_path`` if it holds a finished training with ``identity``."""
    path = Path(checkpoint_path)
    if not path.exists():
        return None
    state = read_checkpoint(path)
    training = state.get("training") or {}
    return state if training.get("finished") and training.get("identity") == identity else None


def train_supernet(
    space: SearchSpace,
    supernet: nn.Module,
    data: DataSplits,
    cfg: TrainConfig,
    checkpoint_path: str | Path,
    seed: int = 0,
    progress: ProgressFn | None = None,
    regularizer: LandmarkRegularizer | None = None,
    after_epoch: Callable[[int], None] | None = None,
    ranks: Ranks = Ranks(),
) -> list[dict]:
    """Train ``supernet`` in place; resumes from ``checkpoint_path`` if it holds the same run, unfinished.

    ``after_epoch(epochs_done)`` runs after every epoch, before its checkpoint is written (the
    multi-round landmark growth uses it; what it adds to the regulariser is saved with the epoch).
    Returns the per-epoch history (mean loss, learning rate; with a ``regularizer`` also its mean
    value ``landmark_loss`` and its weight ``landmark_weight``).

    Under ``torchrun`` (``ranks`` of :func:`~.distributed.ranks_from_environment`) every rank trains its
    shard of each global batch of ``cfg.batch_size``; rank 0 reports progress and writes the checkpoint.
    """
    if ranks.world > 1 and (regularizer is not None or after_epoch is not None):
        raise ShiftnasError("landmark regularization does not run under torchrun yet; train it in one process")
    with channels_last(supernet):
        return _train(
            space, supernet, data, cfg, Path(checkpoint_path), seed, progress, regularizer, after_epoch, ranks
        )


def _train(
    space: SearchSpace,
    supernet: nn.Module,
    data: DataSplits,
    cfg: TrainConfig,
    checkpoint_path: Path,
    seed: int,
    progress: ProgressFn | None,
    regularizer: LandmarkRegularizer | None,
    after_epoch: Callable[[int], None] | None,
    ranks: Ranks,
) -> list[dict]:
    settings = OptimizerSettings.of(cfg)
    optimizer = make_optimizer(supernet, settings)
    images, labels = data.train.tensors
    images = images.contiguous(memory_format=torch.channels_last)  # as the supernet (train_supernet)
    steps_per_epoch = math.ceil(len(labels) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    history: list[dict] = []
    start_epoch = 0
    identity = training_identity(space, data, cfg, seed, regularizer)
    if checkpoint_path.exists():
        state = read_checkpoint(checkpoint_path)
        training = state.get("training")
        if training is not None and training.get("identity") == identity:
            supernet.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(training["optimizer"])
            history = list(training["history"])
            start_epoch = len(history)
            if regularizer is not None:
                regularizer.load_rounds(training.get("landmark_rounds", []))
    ranks.broadcast_state(supernet)
    average = weight_average(supernet, cfg.ema_decay) if cfg.ema_decay else None
    if average is not None and start_epoch:
        average.load_state_dict(training["weight_average"])

    supernet.train()
    distributed = ranks.world > 1
    with synced_batch_norm(ranks) if cfg.sync_bn else contextlib.nullcontext():
        for epoch in range(start_epoch, cfg.epochs):
            # Every epoch derives its own generators from (seed, epoch), so a resumed run is identical.
            rng = np.random.default_rng([seed, epoch])
            shuffle = torch.Generator().manual_seed(seed * 100_003 + epoch)
            shifts = np.random.default_rng([seed, epoch, 3])  # its own stream (landmarks use 1, 2): subnets do not move
            losses, landmark_losses = [], []
            if regularizer is not None:
                regularizer.begin_epoch(epoch, seed)
            for i, idx in enumerate(iterate_batches(len(labels), cfg.batch_size, shuffle)):
                step = epoch * steps_per_epoch + i
                set_lr(optimizer, step, total_steps, settings)
                optimizer.zero_grad(set_to_none=True)
                mine = ranks.shard(idx) if distributed else idx
                batch = images[mine]
                if cfg.augment_shift:  # drawn for the global batch, so every process count trains alike
                    offsets = torch.from_numpy(
                        shifts.integers(-cfg.augment_shift, cfg.augment_shift + 1, (len(idx), 2))
                    )
                    batch = random_shift(batch, ranks.shard(offsets) if distributed else offsets)
                    batch = batch.contiguous(memory_format=torch.channels_last)
                loss = sandwich_step(
                    space,
                    supernet,
                    batch,
                    labels[mine],
                    sandwich_archs(space, rng, cfg.n_random),
                    cfg.kd_ratio,
                    global_batch=len(idx) if distributed else None,
                )
                if distributed:
                    loss = torch.tensor(ranks.sum(loss.item()))
                    ranks.sum_gradients(supernet)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training diverged at epoch {epoch}, step {i} (loss {loss.item()}); lower train.lr"
                    )
                if regularizer is not None:
                    landmark_losses.append(regularizer.step(space, supernet, epoch, cfg.epochs))
                    if not math.isfinite(landmark_losses[-1]):
                        raise FloatingPointError(f"landmark regularizer diverged at epoch {epoch}, step {i}")
                clipped_step(optimizer, supernet, settings)
                if average is not None:
                    average.update_parameters(supernet)
                losses.append(loss.item())
                if progress and ranks.is_main:
                    progress(step + 1, total_steps, loss.item())
            history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": optimizer.param_groups[0]["lr"]})
            if regularizer is not None:
                history[-1]["landmark_loss"] = float(np.mean(landmark_losses))
                history[-1]["landmark_weight"] = landmark_weight(epoch, cfg.epochs, regularizer.cfg)
            if after_epoch is not None:
                after_epoch(epoch + 1)
                supernet.train()
            training = {
                "identity": identity,
                "history": history,
                "optimizer": optimizer.state_dict(),
                "finished": epoch + 1 == cfg.epochs,
            }
            if regularizer is not None:
                training["landmark_rounds"] = regularizer.rounds
            if average is not None:
                training["weight_average"] = average.state_dict()
                if training["finished"]:
                    copy_average(average, supernet)
            if ranks.is_main:
                save_supernet(
                    checkpoint_path, supernet, space, data.num_classes, version=0, extra={"training": training}
                )
            ranks.barrier()
    supernet.eval()
    return history
