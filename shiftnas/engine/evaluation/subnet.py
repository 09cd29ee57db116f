"""Accuracy of a subnet through the supernet: extract, recalibrate BN, validate; cached.

BN recalibration is mandatory for weight-shared subnets: without it the subnets of a
sandwich-trained supernet score 10–20 % on 10 classes, with it 92–96 % (ofa.md §4). It runs on
the *extracted* subnet, never on the supernet (that would overwrite the shared BN slices).

We recalibrate with PyTorch's own cumulative BN averaging (``momentum=None`` in train mode)
instead of ``ofa``'s ``set_running_statistics``, which deep-copies the model and monkey-patches
every BN forward through a global flag; ``bench/bench_latency_eval.py`` compares the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import EvalConfig
from ...data import DataSplits
from ...hardware.quantize import deployed_onnx, onnx_accuracy
from ...search_spaces import Arch, SearchSpace
from ..checkpoint import weights_fingerprint
from ..tensors import channels_last, resize
from .inference import inference_form
from .validation_subset import ValidationSubset, pilot_architectures, stratified_subset

if TYPE_CHECKING:
    from ...cluster.evaluation import RemoteScorer

INT8_CALIBRATION = 256  # images of the BN-recalibration subset that calibrate the INT8 quantization
STRATIFY_FROM = 2000  # val_images=auto: validation splits from this size are scored on a stratified subset


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: torch.Tensor, batch_size: int = 100) -> nn.Module:
    """Reset every BatchNorm's running statistics to the exact average over ``images``; returns eval model."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = plain mean over batches
    model.train()
    for start in range(0, len(images), batch_size):
        model(images[start : start + batch_size])
    for bn, m in zip(bns, saved):
        bn.momentum = m
    return model.eval()


def _logits_by_batch(model: nn.Module, images: torch.Tensor, resolution: int, batch_size: int, nhwc: bool):
    """(start, logits) of every batch of ``images`` resized to ``resolution``, through eval-mode ``model``."""
    model.eval()
    layout = torch.channels_last if nhwc else torch.contiguous_format
    for start in range(0, len(images), batch_size):
        x = resize(images[start : start + batch_size], resolution)
        yield start, model(x.contiguous(memory_format=layout))


@torch.no_grad()
def accuracy_and_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    resolution: int,
    batch_size: int = 100,
    nhwc: bool = False,
) -> tuple[float, float]:
    """(top-1 accuracy in percent, mean cross-entropy) of ``model`` in eval mode (``nhwc``: inputs in
    channels_last memory format, for a model in :func:`~.inference.inference_form`)."""
    correct, loss = 0, 0.0
    for start, logits in _logits_by_batch(model, images, resolution, batch_size, nhwc):
        y = labels[start : start + batch_size]
        correct += (logits.argmax(1) == y).sum().item()
        loss += F.cross_entropy(logits, y, reduction="sum").item()
    n = max(1, len(labels))
    return 100.0 * correct / n, loss / n


@torch.no_grad()
def correct_per_image(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    resolution: int,
    batch_size: int = 100,
    nhwc: bool = False,
) -> torch.Tensor:
    """Whether eval-mode ``model`` classifies each image right (bool, in the images' order)."""
    hits = [
        logits.argmax(1) == labels[start : start + batch_size]
        for start, logits in _logits_by_batch(model, images, resolution, batch_size, nhwc)
    ]
    return torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool)


def accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    resolution: int,
    batch_size: int = 100,
    nhwc: bool = False,
) -> float:
    """Top-1 accuracy in percent."""
    return accuracy_and_loss(model, images, labels, resolution, batch_size, nhwc)[0]


@dataclass
class SubnetScore:
    arch: Arch
    accuracy: float  # percent, on the split it was asked for
    split: str
    supernet_version: int


class SubnetEvaluator:
    """Scores subnets of a supernet on the validation split; cached by (architecture, version).

    ``version`` identifies the supernet weights: whoever updates the supernet (shifting,
    fine-tuning) bumps it, so stale scores are never reused. With ``precision='int8'`` the accuracy is
    that of the subnet as deployed: quantized by ONNX Runtime (calibrated on the first
    ``INT8_CALIBRATION`` images of the BN-recalibration subset) and run in ONNX Runtime.
    ``calibration`` replaces the seeded draw of the BN-recalibration subset from the train split (a
    remote worker gets the local evaluator's subset). FP32 'val' scores run on :meth:`validation_subset`
    (``cfg.val_images``): a weighted stratified subset, built at the first 'val' score from ``cfg.pilots``
    subnets of the weights this evaluator was made with (version 0, snapshotted then, so a resumed or
    shifted run builds the same subset) and kept for the evaluator's life (a stale stratification stays
    unbiased, it only loses precision); ``val_subset`` gives it instead. 'test' and INT8 scores use
    every image. The calibration draw holds ``cfg.calib_size`` images (BN recalibration), at least
    ``INT8_CALIBRATION`` for INT8 (the quantizer's calibration). With a ``remote`` scorer
    (:class:`shiftnas.cluster.evaluation.RemoteScorer`), :meth:`score_many` scores the architectures
    it has not cached on Dask workers, with the same result as here.
    """

    def __init__(
        self,
        space: SearchSpace,
        supernet: nn.Module,
        data: DataSplits,
        cfg: EvalConfig,
        seed: int = 0,
        version: int = 0,
        precision: str = "fp32",
        calibration: torch.Tensor | None = None,
        remote: RemoteScorer | None = None,
        val_subset: ValidationSubset | None = None,
    ) -> None:
        self.space, self.supernet, self.data, self.cfg = space, supernet, data, cfg
        self.version, self.precision, self.remote, self.seed = version, precision, remote, seed
        self._val_subset, self._val_subset_ready = val_subset, val_subset is not None
        self._val_images: tuple[torch.Tensor, torch.Tensor] | None = None
        # which weights version 0 refers to, and (when 'val' scores are stratified) which subset scores them,
        # so a resumed search never mixes exact and estimated scores, or estimates of two subsets
        self.supernet_id = weights_fingerprint(supernet)
        self._pilot_weights = None  # version 0's weights, kept until the subset is built from them
        if self._stratifies():
            self.supernet_id += f"+val{cfg.pilots}p{cfg.easy_fraction:g}s{seed}"
            if not self._val_subset_ready:
                self._pilot_weights = {k: v.detach().clone() for k, v in supernet.state_dict().items()}
        if calibration is None:
            images = data.train.tensors[0]
            gen = torch.Generator().manual_seed(seed)
            n = min(max(cfg.calib_size, INT8_CALIBRATION if precision == "int8" else 0), len(images))
            calibration = images[torch.randperm(len(images), generator=gen)[:n]]
        self._calib = calibration
        self._calib_by_res: dict[int, torch.Tensor] = {}
        self._cache: dict[tuple[str, int, str], float] = {}
        self.n_evaluations = 0

    def calibration_images(self, resolution: int) -> torch.Tensor:
        """The fixed BN-recalibration subset at ``resolution`` (resized once, then reused; channels_last)."""
        if resolution not in self._calib_by_res:
            images = resize(self._calib, resolution).contiguous(memory_format=torch.channels_last)
            self._calib_by_res[resolution] = images
        return self._calib_by_res[resolution]

    def subnet(self, arch: Arch) -> nn.Module:
        """The extracted, BN-recalibrated subnet of ``arch`` (eval mode). The recalibration pass runs in
        channels_last (1.65x faster at 12-28 px), the subnet is returned in the default layout."""
        was_training = self.supernet.training
        sub = self.space.extract(self.supernet, arch)
        self.supernet.train(was_training)
        with channels_last(sub):
            images = self.calibration_images(arch.resolution)[: self.cfg.calib_size]
            return recalibrate_bn(sub, images, self.cfg.batch_size)

    def score(self, arch: Arch, split: str = "val", subnet: nn.Module | None = None) -> SubnetScore:
        """Accuracy of ``arch`` on ``split`` ('val' during search, 'test' only for final reports).

        ``subnet``, if given, must be ``self.subnet(arch)`` (saves extracting it twice).
        """
        key = (arch.key(), self.version, split)
        if key not in self._cache:
            images, labels = getattr(self.data, split).tensors
            model = subnet if subnet is not None else self.subnet(arch)
            if self.precision == "fp32":  # BN folded, channels_last: the same function, faster (inference.py)
                fast, subset = inference_form(model), self.validation_subset() if split == "val" else None
                if subset is None:
                    self._cache[key] = accuracy(fast, images, labels, arch.resolution, self.cfg.batch_size, True)
                else:
                    correct = correct_per_image(
                        fast, *self._subset_images(), arch.resolution, self.cfg.batch_size, True
                    )
                    self._cache[key] = subset.accuracy(correct)
            else:
                onnx_model = self.deployed(arch, model)
                self._cache[key] = onnx_accuracy(onnx_model, resize(images, arch.resolution), labels)
            self.n_evaluations += 1
        return SubnetScore(arch, self._cache[key], split, self.version)

    def score_many(self, archs: list[Arch], split: str = "val") -> list[SubnetScore]:
        """:meth:`score` of every architecture; those not cached go to the ``remote`` scorer at once, if any."""
        if self.remote is not None:
            missing = list({a.key(): a for a in archs if (a.key(), self.version, split) not in self._cache}.values())
            if missing:
                for arch, acc in zip(missing, self.remote.accuracies(self, missing, split)):
                    self._cache[(arch.key(), self.version, split)] = acc
                    self.n_evaluations += 1
        return [self.score(a, split) for a in archs]

    def _stratifies(self) -> bool:
        mode, n_val = self.cfg.val_images, len(self.data.val.tensors[1])
        return self.precision == "fp32" and (mode == "stratified" or (mode == "auto" and n_val >= STRATIFY_FROM))

    def validation_subset(self) -> ValidationSubset | None:
        """The weighted validation subset of FP32 'val' scores (None: every image), built on first use
        from the per-image correctness of :func:`~.validation_subset.pilot_architectures` under the
        weights this evaluator was made with (its pilot scores count in ``n_evaluations``)."""
        if not self._val_subset_ready:
            if self._stratifies():
                images, labels = self.data.val.tensors
                pilots = pilot_architectures(self.space, self.cfg.pilots, self.seed)
                current = {k: v.detach().clone() for k, v in self.supernet.state_dict().items()}
                self.supernet.load_state_dict(self._pilot_weights)
                try:
                    correct = [
                        correct_per_image(
                            inference_form(self.subnet(a)), images, labels, a.resolution, self.cfg.batch_size, True
                        )
                        for a in pilots
                    ]
                finally:
                    self.supernet.load_state_dict(current)
                self.n_evaluations += len(pilots)
                self._val_subset = stratified_subset(torch.stack(correct).numpy(), self.cfg.easy_fraction, self.seed)
            self._val_subset_ready, self._pilot_weights = True, None
        return self._val_subset

    def _subset_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._val_images is None:
            images, labels = self.data.val.tensors
            idx = self._val_subset.indices
            self._val_images = (images[idx], labels[idx])
        return self._val_images

    @property
    def calibration(self) -> torch.Tensor:
        """The BN-recalibration subset at the stored image size."""
        return self._calib

    def deployed(self, arch: Arch, subnet: nn.Module | None = None) -> bytes:
        """The ONNX model of ``arch`` at this evaluator's precision (INT8: calibrated on real images)."""
        model = subnet if subnet is not None else self.subnet(arch)
        chw = tuple(self.space.input_size(arch))
        calibration = self.calibration_images(arch.resolution)[:INT8_CALIBRATION].contiguous().numpy()
        return deployed_onnx(model, (1, *chw), self.precision, calibration)

    def bump_version(self) -> int:
        """Declare that the supernet weights changed; later scores are recomputed."""
        self.version += 1
        return self.version
