"""Supernet training (sandwich rule, resume, determinism) and subnet evaluation (BN recalibration)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from shiftnas.config import TrainConfig, load_config
from shiftnas.data import DataSplits
from shiftnas.engine.checkpoint import read_checkpoint, save_supernet
from shiftnas.engine.evaluation.subnet import SubnetEvaluator, accuracy, recalibrate_bn
from shiftnas.engine.tensors import random_shift
from shiftnas.engine.training.averaging import ramped_decay
from shiftnas.engine.training.optim import lr_at
from shiftnas.engine.training.supernet import (
    distillation_loss,
    initialize_supernet,
    sandwich_archs,
    train_supernet,
    training_identity,
)
from shiftnas.pipeline.context import prepare
from shiftnas.search_spaces import get_space


def small_split(data: DataSplits, n: int) -> DataSplits:
    x, y = data.train.tensors
    return DataSplits(
        data.name,
        TensorDataset(x[:n], y[:n]),
        data.val,
        data.test,
        data.num_classes,
        data.image_size,
        data.mean,
        data.std,
    )


def test_training_lowers_the_loss_and_checkpoints(trained_supernet):
    _, ckpt, history = trained_supernet
    assert len(history) == 3 and history[-1]["loss"] < history[0]["loss"]
    state = read_checkpoint(ckpt)
    assert state["training"]["finished"] and len(state["training"]["history"]) == 3


def test_subnets_of_the_trained_supernet_beat_chance_only_after_bn_recalibration(
    trained_supernet, compact_space, digits, eval_config
):
    net, _, _ = trained_supernet
    evaluator = SubnetEvaluator(compact_space, net, digits, eval_config)
    x, y = digits.val.tensors
    rng = np.random.default_rng(0)
    gains = []
    for arch in [compact_space.smallest(), compact_space.sample(rng), compact_space.sample(rng)]:
        raw = accuracy(compact_space.extract(net, arch), x, y, arch.resolution)
        recal = evaluator.score(arch).accuracy
        gains.append(recal - raw)
        assert recal > 50.0, f"{arch.key()}: {recal:.1f}% after BN recalibration"
    assert np.mean(gains) > 10.0, gains


def test_evaluation_never_touches_the_supernet_and_is_cached_per_version(
    trained_supernet, compact_space, digits, eval_config
):
    net, _, _ = trained_supernet
    before = {k: v.clone() for k, v in net.state_dict().items()}
    evaluator = SubnetEvaluator(compact_space, net, digits, eval_config)
    arch = compact_space.largest()
    first = evaluator.score(arch)
    assert evaluator.score(arch).accuracy == first.accuracy and evaluator.n_evaluations == 1
    evaluator.bump_version()
    second = evaluator.score(arch)
    assert evaluator.n_evaluations == 2 and second.supernet_version == first.supernet_version + 1
    assert second.accuracy == first.accuracy  # same weights -> same score: evaluation is deterministic
    for k, v in net.state_dict().items():  # BN recalibration ran on the extracted subnet only
        assert torch.equal(v, before[k]), k


def test_our_bn_recalibration_matches_ofa_set_running_statistics(trained_supernet, compact_space, digits):
    from ofa.imagenet_classification.elastic_nn.utils import set_running_statistics

    net, _, _ = trained_supernet
    arch = compact_space.sample(np.random.default_rng(3))
    images = digits.train.tensors[0][:200]
    ours = recalibrate_bn(
        compact_space.extract(net, arch),
        torch.nn.functional.interpolate(images, size=arch.resolution, mode="bilinear", align_corners=False),
        batch_size=100,
    )
    theirs = compact_space.extract(net, arch)
    loader = [
        (
            torch.nn.functional.interpolate(
                images[i : i + 100], size=arch.resolution, mode="bilinear", align_corners=False
            ),
            None,
        )
        for i in range(0, 200, 100)
    ]
    set_running_statistics(theirs, loader)
    for (name, a), b in zip(ours.named_buffers(), theirs.buffers()):
        if "running_mean" in name:
            assert torch.allclose(a, b, atol=1e-5), name
        if "running_var" in name:  # torch keeps the unbiased variance, ofa the biased one
            assert torch.allclose(a, b, rtol=2e-2, atol=1e-5), name


@pytest.mark.parametrize("shift, ema", [(0, 0.0), (2, 0.0), (0, 0.9)])
def test_training_resumes_bit_identically(compact_space, digits, tmp_path, shift, ema):
    data = small_split(digits, 192)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, warmup_steps=2, n_random=1, augment_shift=shift, ema_decay=ema)
    torch.manual_seed(1)
    full = compact_space.build_supernet(10)
    init = {k: v.clone() for k, v in full.state_dict().items()}
    train_supernet(compact_space, full, data, cfg, tmp_path / "full.pt", seed=5)

    # the same run, killed (Ctrl-C) in epoch 2 and resumed from its checkpoint by a fresh process
    part = compact_space.build_supernet(10)
    part.load_state_dict(init)
    ckpt = tmp_path / "part.pt"

    def interrupt_in_epoch_2(step: int, total: int, loss: float) -> None:
        if step == 4:  # 192 images / 64 = 3 steps per epoch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_supernet(compact_space, part, data, cfg, ckpt, seed=5, progress=interrupt_in_epoch_2)
    assert len(read_checkpoint(ckpt)["training"]["history"]) == 1
    resumed = compact_space.build_supernet(10)
    train_supernet(compact_space, resumed, data, cfg, ckpt, seed=5)
    assert read_checkpoint(ckpt)["training"]["finished"]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_weight_average_leaves_the_ramped_average_of_every_steps_weights(compact_space, digits, tmp_path):
    data = small_split(digits, 192)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, warmup_steps=2, n_random=1, ema_decay=0.3)
    torch.manual_seed(1)
    net = compact_space.build_supernet(10)
    steps = []  # every step's weights, as the optimiser left them

    def record(step: int, total: int, loss: float) -> None:
        steps.append([p.detach().clone() for p in net.parameters()])

    train_supernet(compact_space, net, data, cfg, tmp_path / "ema.pt", seed=5, progress=record)
    # 6 updates: the decay ramps up (2/11, 3/12) and then stays at 0.3 (the setting) from the 4th update on
    assert len(steps) == 6 and ramped_decay(0.3, 1) == pytest.approx(2 / 11) and ramped_decay(0.3, 3) == 0.3
    expected = steps[0]
    for t, weights in enumerate(steps[1:], start=1):
        d = ramped_decay(0.3, t)
        expected = [d * a + (1 - d) * w for a, w in zip(expected, weights)]
    final = list(net.parameters())
    assert all(torch.allclose(f, e, atol=1e-6) for f, e in zip(final, expected))
    assert not all(torch.allclose(f, w, atol=1e-4) for f, w in zip(final, steps[-1]))  # not the last step's
    saved = read_checkpoint(tmp_path / "ema.pt")
    assert saved["training"]["identity"]["config"]["ema_decay"] == 0.3
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in net.state_dict().items())
    assert "ema_decay" not in training_identity(compact_space, data, TrainConfig(), 0)["config"]


def test_sandwich_contains_largest_smallest_and_random(compact_space):
    archs = sandwich_archs(compact_space, np.random.default_rng(0), 2)
    assert archs[0] == compact_space.largest() and archs[1] == compact_space.smallest() and len(archs) == 4


def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [lr_at(s, 100, 0.1, 10) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(0.1) and lrs[-1] < 0.001
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_distillation_loss_is_zero_for_identical_logits():
    logits = torch.randn(4, 10)
    assert distillation_loss(logits, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(torch.randn(4, 10), logits).item() > 0


def test_random_shift_moves_each_image_by_its_offset_and_zeroes_the_border():
    images = torch.zeros(3, 1, 6, 6)
    images[:, 0, 2, 3] = 1.0  # one bright pixel per image
    images[2, 0, 5, 5] = 2.0  # moved out of the image by (1, 1)
    offsets = torch.tensor([[0, 0], [2, -3], [1, 1]])
    shifted = random_shift(images, offsets)
    assert torch.equal(shifted[0], images[0])
    assert shifted[1, 0, 4, 0] == 1.0 and shifted[1].sum() == 1.0
    assert shifted[2, 0, 3, 4] == 1.0 and shifted[2].sum() == 1.0  # the corner pixel left the image
    assert torch.equal(random_shift(images, torch.zeros(3, 2, dtype=torch.long)), images)


def test_he_fout_init_draws_convolutions_with_ofas_spread_and_torch_keeps_the_weights(compact_space):
    torch.manual_seed(0)
    net = compact_space.build_supernet(10)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    initialize_supernet(net, "torch")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    initialize_supernet(net, "he_fout")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.numel() >= 2000]
    assert len(convs) > 10
    for conv in convs:  # normal(0, sqrt(2 / (k^2 out_channels))), not torch's uniform(+-1 / sqrt(fan_in))
        expected = (2.0 / (conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels)) ** 0.5
        assert float(conv.weight.detach().std()) == pytest.approx(expected, rel=0.1)


def test_shifted_training_trains_other_weights_from_the_same_start(compact_space, digits, tmp_path):
    data = small_split(digits, 128)
    nets = []
    for shift in (0, 2):
        torch.manual_seed(1)
        net = compact_space.build_supernet(10)
        cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, warmup_steps=1, n_random=0, augment_shift=shift)
        train_supernet(compact_space, net, data, cfg, tmp_path / f"s{shift}.pt", seed=5)
        nets.append(net)
    weights = [torch.cat([p.detach().reshape(-1) for p in n.parameters()]) for n in nets]
    assert not torch.allclose(weights[0], weights[1])


@pytest.mark.parametrize("init", ["torch", "he_fout"])
def test_prepare_initializes_only_a_supernet_without_checkpoint_and_draws_nothing_for_it(tmp_path, init, capsys):
    overrides = ["data.dataset=digits", "space.resolutions=[16]", f"train.init={init}"]
    torch.manual_seed(3)
    trained = get_space("compact-mbv3", resolutions=[16]).build_supernet(10)
    checkpoint = save_supernet(tmp_path / "given.pt", trained, get_space("compact-mbv3", resolutions=[16]), 10, 0)
    loaded = prepare(load_config(None, [*overrides, f"checkpoint={checkpoint}", f"out={tmp_path / 'a'}"]), False, False)
    said = capsys.readouterr().err
    assert ("train.init=he_fout is not applied" in said) == (init == "he_fout")
    for a, b in zip(trained.state_dict().values(), loaded.supernet.state_dict().values()):
        assert torch.equal(a, b)  # --checkpoint weights are never re-initialized
    fresh = prepare(load_config(None, [*overrides, f"out={tmp_path / 'b'}"]), True, False)
    after_init = torch.rand(3)
    fresh_torch = prepare(load_config(None, [*overrides[:2], f"out={tmp_path / 'c'}"]), True, False)
    assert torch.equal(after_init, torch.rand(3))  # train.init draws from a forked generator
    same = all(torch.equal(a, b) for a, b in zip(fresh.supernet.parameters(), fresh_torch.supernet.parameters()))
    assert same == (init == "torch")
