"""The one optimisation policy of every training loop in shiftnas.

Supernet training, stand-alone and fine-tuning training, Supernet Shifting and NAT's adaptation all
use it: SGD with Nesterov momentum, no weight decay on BatchNorm parameters and biases (tensors of
one dimension or less), a linear warm-up then cosine decay to zero (a constant rate where there is
no schedule), and the gradient norm clipped before every step. The numbers (rate, momentum, decay,
clipping, warm-up) come from each loop's own config section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn


@dataclass(frozen=True)
class OptimizerSettings:
    """The numbers of one loop's optimiser (from its config section)."""

    lr: float
    momentum: float
    weight_decay: float
    grad_clip: float
    warmup_steps: int = 0

    @classmethod
    def of(cls, cfg: Any) -> OptimizerSettings:
        """From a config section with ``lr``, ``momentum``, ``weight_decay``, ``grad_clip`` (and ``warmup_steps``)."""
        return cls(cfg.lr, cfg.momentum, cfg.weight_decay, cfg.grad_clip, getattr(cfg, "warmup_steps", 0))


def make_optimizer(module: nn.Module, settings: OptimizerSettings) -> torch.optim.SGD:
    """SGD + Nesterov over ``module``'s parameters; no weight decay on BN parameters and biases."""
    decay, no_decay = [], []
    for p in module.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
        momentum=settings.momentum,
        nesterov=True,
    )


def lr_at(step: int, total_steps: int, lr: float, warmup_steps: int) -> float:
    """Learning rate of ``step`` (0-based) of ``total_steps``: linear warm-up, then cosine decay to zero."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * lr * (1 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, step: int, total_steps: int, settings: OptimizerSettings) -> None:
    """Put the scheduled rate of ``step`` into every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, total_steps, settings.lr, settings.warmup_steps)


def clipped_step(optimizer: torch.optim.Optimizer, module: nn.Module, settings: OptimizerSettings) -> None:
    """Clip the gradient norm of ``module`` (the one the optimiser trains) to ``grad_clip``, then step."""
    nn.utils.clip_grad_norm_(module.parameters(), settings.grad_clip)
    optimizer.step()
