"""Two-phase fine-tuning on real digits: epochs found on train/val, retrained on train+val, test read last."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from shiftnas.config import FinetuneRecipe
from shiftnas.data import DataSplits
from shiftnas.engine.evaluation.subnet import SubnetEvaluator, accuracy
from shiftnas.engine.training.finetune import finetune


class WatchedSplits(DataSplits):
    """Real splits that log every read of the test split (and anything else the caller logs)."""

    def __getattribute__(self, name):
        if name == "test":
            object.__getattribute__(self, "events").append("test read")
        return super().__getattribute__(name)


@pytest.fixture
def watched(digits):
    data = WatchedSplits(**{f.name: getattr(digits, f.name) for f in dataclasses.fields(DataSplits)})
    object.__setattr__(data, "events", [])
    return data


def test_two_phases_and_the_test_split_is_read_only_at_the_end(trained_supernet, compact_space, watched, eval_config):
    net, _, _ = trained_supernet
    evaluator = SubnetEvaluator(compact_space, net, watched, eval_config)
    arch = compact_space.smallest()
    watched.events.clear()
    built = []

    def make_subnet():
        built.append(len(watched.events))
        return evaluator.subnet(arch)

    recipe = FinetuneRecipe(epochs=4, patience=2, lr=0.02)
    result = finetune(
        make_subnet,
        arch.resolution,
        watched,
        recipe,
        seed=0,
        progress=lambda phase, epoch, info: watched.events.append(f"{phase}:{epoch}"),
    )
    events = watched.events
    assert events.count("test read") == 1 and events[-1] == "test read"  # once, after everything else
    assert any(e.startswith("phase 2") for e in events[:-1])
    assert len(built) == 2  # phase 2 starts again from the supernet's weights
    curve = result["curve"]
    assert 1 <= result["phase1_epochs"] == len(curve) <= recipe.epochs
    best = max([result["val_accuracy_before"]] + [p["val_accuracy"] for p in curve])
    assert result["val_accuracy_best"] == best
    improving = [
        p["epoch"] for p in curve if p["val_accuracy"] == best and p["val_accuracy"] > result["val_accuracy_before"]
    ]
    assert result["best_epoch"] == (improving[0] if improving else 0)
    if result["phase1_epochs"] < recipe.epochs:  # stopped early: the loss did not improve for `patience` epochs
        losses = [p["val_loss"] for p in curve]
        before = [result["val_loss_before"]] + losses[: -recipe.patience]
        assert min(losses[-recipe.patience :]) >= min(before) - 1e-6
    # the reported accuracies are the real ones of the returned model and of the untouched subnet
    test_x, test_y = watched.test.tensors
    assert result["test_accuracy_after"] == pytest.approx(accuracy(result["model"], test_x, test_y, arch.resolution))
    assert result["test_accuracy_before"] == pytest.approx(
        accuracy(evaluator.subnet(arch), test_x, test_y, arch.resolution)
    )
    if result["best_epoch"] > 0:  # phase 2 trained: the weights moved away from the supernet's
        fresh = evaluator.subnet(arch)
        assert any(not torch.equal(a, b) for a, b in zip(fresh.parameters(), result["model"].parameters()))


def test_finetune_is_deterministic(trained_supernet, compact_space, digits, eval_config):
    net, _, _ = trained_supernet
    evaluator = SubnetEvaluator(compact_space, net, digits, eval_config)
    arch = compact_space.smallest()
    recipe = FinetuneRecipe(epochs=2, patience=2)
    a = finetune(lambda: evaluator.subnet(arch), arch.resolution, digits, recipe, seed=3)
    b = finetune(lambda: evaluator.subnet(arch), arch.resolution, digits, recipe, seed=3)
    assert a["curve"] == b["curve"] and a["test_accuracy_after"] == b["test_accuracy_after"]


def test_training_steps_run_in_channels_last_and_match_the_default_layout(
    trained_supernet, compact_space, digits, eval_config
):
    """The fast layout changes float rounding only: the same steps in NCHW land on the same weights."""
    from shiftnas.engine.training.finetune import _train
    from shiftnas.engine.training.optim import OptimizerSettings, make_optimizer
    from shiftnas.engine.training.standalone import train_epoch

    net, _, _ = trained_supernet
    evaluator = SubnetEvaluator(compact_space, net, digits, eval_config)
    arch = compact_space.largest()
    images, labels = digits.train.tensors[0][:256], digits.train.tensors[1][:256]
    recipe = FinetuneRecipe(epochs=2, batch_size=32, lr=0.02)
    fast, plain = evaluator.subnet(arch), evaluator.subnet(arch)
    assert _train(fast, images, labels, recipe, 2, seed=1) == 2
    optimizer = make_optimizer(plain, OptimizerSettings.of(recipe))
    for epoch in range(2):
        plain.train()
        train_epoch(plain, optimizer, images, labels, recipe, 1, epoch, 16)
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        assert a.is_contiguous(), f"{name} left in channels_last"  # back in the default layout
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
    assert any(not torch.equal(a, b) for a, b in zip(fast.parameters(), evaluator.subnet(arch).parameters()))
