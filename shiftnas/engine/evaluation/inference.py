"""The form of a recalibrated subnet that validation runs fastest in, computing the same function.

Every eval-mode BatchNorm that follows a convolution is folded into it (``torch.nn.utils.fusion``),
OFA's hand-written h-swish / h-sigmoid become the native ops (:func:`shiftnas.hardware.deploy.deployable`)
and the weights and inputs are ``channels_last`` (oneDNN's fast layout for depthwise convolutions).
Logits agree with the plain subnet to float rounding (about 1e-6); measured in
``bench/results/eval_speed.md`` (issue 16).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ...hardware.deploy import deployable


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold, in place, each BatchNorm2d named ``bn`` into its sibling Conv2d ``conv`` (OFA's layers);
    returns ``model`` (eval mode). A BatchNorm without such a convolution is left as it is."""
    model.eval()
    for module in model.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
            module.conv = fuse_conv_bn_eval(conv, bn)
            module.bn = nn.Identity()
    return model


def inference_form(model: nn.Module) -> nn.Module:
    """A copy of the eval-mode ``model`` for validation: native activations, BN folded, channels_last.
    Feed it inputs in ``channels_last`` too."""
    return fold_batch_norm(deployable(model)).to(memory_format=torch.channels_last)
