"""Supernet training across the processes of ``torchrun`` (one copy of the supernet per process).

Every rank samples the same subnets for a step (the generators are seeded by seed and epoch, as in a
single process), takes its own shard of the same global batch, and the gradients are summed across
ranks before the (identical) optimizer step, so N processes train the weights one process would,
up to float rounding. BatchNorm statistics are taken over the global batch (:func:`synced_batch_norm`).

Why not ``DistributedDataParallel`` and ``SyncBatchNorm``: a sandwich step runs several forward and
backward passes through different subnets before one optimizer step, with a different set of unused
parameters each time (DDP's reducer expects one backward per step, or ``no_sync`` bookkeeping and
``find_unused_parameters``); and the elastic BatchNorm of ``ofa`` slices its weights and calls
``F.batch_norm`` directly, which ``SyncBatchNorm`` (whole modules, GPU only) cannot replace. One
all-reduce of the flattened gradients per step is all the sandwich rule needs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ``world`` processes of a distributed training."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and reports progress."""
        return self.rank == 0

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch (every ``world``-th index from ``rank``)."""
        return indices[self.rank :: self.world]

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def sum_gradients(self, model: nn.Module) -> None:
        """Replace every gradient by its sum over the ranks (one all-reduce of the flattened gradients)."""
        if self.world == 1:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def broadcast_state(self, model: nn.Module) -> None:
        """Make every rank start from rank 0's parameters and buffers."""
        if self.world == 1:
            return
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def die_with_parent(parent: int | None = None) -> None:
    """On Linux, end this process (SIGKILL) when its parent dies: torchrun starts each rank in a session of
    its own, and nothing ends torchrun when the ``shiftnas`` that started it is killed (``kill -9``, the OOM
    killer), which would leave them training and writing the checkpoint beside the run that resumes it.
    ``parent``: the pid the parent must have (a parent that died before the request was in place is
    caught by it); without it, a parent that is init counts as dead."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    parent_gone = os.getppid() == 1 if parent is None else os.getppid() != parent
    if parent_gone:
        os._exit(1)


def ranks_from_environment() -> Ranks:
    """The ranks ``torchrun`` describes in the environment (joining its process group: gloo, since shiftnas
    trains on the CPU even where CUDA is available); one rank when not under ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    die_with_parent()
    if not dist.is_initialized():
        dist.init_process_group("gloo")  # NCCL cannot reduce the CPU tensors this training holds
    return Ranks(dist.get_rank(), dist.get_world_size())


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced (summed) gradient: the derivative of the
    sum of every rank's loss."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def _global_batch_norm(
    original,
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``F.batch_norm`` with training statistics over every rank's batch (differentiable all-reduce)."""
    if not training:
        return original(x, running_mean, running_var, weight, bias, training, momentum, eps)
    dims = [0] + list(range(2, x.dim()))
    count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype)
    stats = _SumOverRanks.apply(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
    channels = x.shape[1]
    n = stats[-1]
    mean = stats[:channels] / n
    var = stats[channels : 2 * channels] / n - mean * mean
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            running_var.mul_(1 - momentum).add_(momentum * var.detach() * n / (n - 1))
    shape = [1, channels] + [1] * (x.dim() - 2)
    y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    return y


@contextlib.contextmanager
def synced_batch_norm(ranks: Ranks) -> Iterator[None]:
    """Inside the block, every training-mode ``F.batch_norm`` (which ``nn.BatchNorm2d`` and ``ofa``'s
    sliced elastic BatchNorm both call) normalises with the statistics of the global batch."""
    if ranks.world == 1:
        yield
        return
    original = F.batch_norm

    def batch_norm(*args, **kwargs):
        return _global_batch_norm(original, *args, **kwargs)

    F.batch_norm = batch_norm
    try:
        yield
    finally:
        F.batch_norm = original
