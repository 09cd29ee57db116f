"""The inference form of a subnet (BN folded, native activations, channels_last) computes the same function."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from shiftnas.engine.evaluation.inference import fold_batch_norm, inference_form
from shiftnas.engine.evaluation.subnet import SubnetEvaluator, accuracy, recalibrate_bn
from shiftnas.engine.tensors import resize
from shiftnas.search_spaces import get_space


def _batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_every_batch_norm_of_a_trained_subnet_folds_and_the_logits_stay(trained_supernet, compact_space, digits):
    net, _, _ = trained_supernet
    images = digits.val.tensors[0][:64]
    for arch in (compact_space.smallest(), compact_space.largest()):
        sub = recalibrate_bn(compact_space.extract(net, arch), resize(digits.train.tensors[0][:200], arch.resolution))
        assert _batch_norms(sub) > 0
        fast = inference_form(sub)
        assert _batch_norms(fast) == 0 and _batch_norms(sub) > 0  # a copy: the subnet keeps its BN
        x = resize(images, arch.resolution)
        with torch.no_grad():
            plain, folded = sub(x), fast(x.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(plain, folded, atol=1e-4, rtol=1e-4)


def test_ofa_mbv3_subnets_fold_too():
    space = get_space("ofa-mbv3", resolutions=[64])
    torch.manual_seed(0)
    net = space.build_supernet(10).eval()
    sub = recalibrate_bn(space.extract(net, space.largest()), torch.randn(16, 3, 64, 64))
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        plain = sub(x)
        folded = fold_batch_norm(sub)(x)
    assert _batch_norms(sub) == 0
    assert torch.allclose(plain, folded, atol=1e-4, rtol=1e-3)


def test_the_evaluator_scores_what_the_plain_subnet_scores(trained_supernet, compact_space, digits, eval_config):
    net, _, _ = trained_supernet
    evaluator = SubnetEvaluator(compact_space, net, digits, eval_config)
    images, labels = digits.val.tensors
    rng = np.random.default_rng(3)
    for arch in [compact_space.smallest(), compact_space.largest(), *(compact_space.sample(rng) for _ in range(4))]:
        sub = evaluator.subnet(arch)
        plain = accuracy(sub, images, labels, arch.resolution, eval_config.batch_size)
        assert abs(evaluator.score(arch).accuracy - plain) * len(labels) / 100 <= 1  # within one image
