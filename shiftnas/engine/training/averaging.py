"""An exponential moving average of the supernet's weights over training steps (``train.ema_decay``).

PyTorch's :class:`~torch.optim.swa_utils.AveragedModel` with its EMA update, the decay ramped up as
``min(decay, (1 + t) / (10 + t))`` after ``t`` updates so that the first steps' weights fade out
quickly (as TensorFlow's ``ExponentialMovingAverage(num_updates=...)``). Only parameters are
averaged: BatchNorm statistics are recalibrated per subnet before every score anyway. The average is
what training leaves in the supernet at the end.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ramped_decay(decay: float, updates: int) -> float:
    """The decay of the update after ``updates`` earlier ones."""
    return min(decay, (1 + updates) / (10 + updates))


def weight_average(module: nn.Module, decay: float) -> AveragedModel:
    """A running average of ``module``'s parameters; ``update_parameters(module)`` after every step."""

    def ema(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        get_ema_multi_avg_fn(ramped_decay(decay, int(updates)))(averaged, current, updates)

    return AveragedModel(module, multi_avg_fn=ema)


def copy_average(average: AveragedModel, module: nn.Module) -> None:
    """Put the averaged parameters into ``module`` (its buffers stay its own)."""
    with torch.no_grad():
        for p, averaged in zip(module.parameters(), average.module.parameters(), strict=True):
            p.copy_(averaged)
