"""Landmark regularization: hinge, weight schedule, pair sampling, landmark selection, training hook."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from shiftnas.config import EvalConfig, LandmarkConfig, StandaloneRecipe, TrainConfig
from shiftnas.data import DataSplits, load_dataset
from shiftnas.engine.groundtruth.table import GroundTruthTable, build_groundtruth, table_ground_truth
from shiftnas.engine.search.nsga2 import current_best_proposer
from shiftnas.engine.tensors import resize
from shiftnas.engine.training.landmarks import (
    Landmark,
    LandmarkGrowth,
    LandmarkRegularizer,
    add_landmarks,
    exclude_landmarks,
    landmark_keys,
    landmark_weight,
    pairwise_hinge,
    round_boundaries,
    sample_pairs,
    select_landmarks,
)
from shiftnas.engine.training.supernet import finished_training, train_supernet, training_identity
from shiftnas.errors import ConfigError, ShiftnasError
from shiftnas.search_spaces import get_space


def subset(data: DataSplits, n_train: int, n_val: int) -> DataSplits:
    """The first ``n_train`` training images as train, the next ``n_val`` as holdout, ``n_val`` of val."""
    (x, y), (xv, yv) = data.train.tensors, data.val.tensors
    held = slice(n_train, n_train + n_val)
    return DataSplits(
        data.name,
        TensorDataset(x[:n_train], y[:n_train]),
        TensorDataset(xv[:n_val], yv[:n_val]),
        data.test,
        data.num_classes,
        data.image_size,
        data.mean,
        data.std,
        holdout=TensorDataset(x[held], y[held]),
    )


def distinct_archs(space, n: int, seed: int = 0) -> list:
    rng, archs = np.random.default_rng(seed), {}
    while len(archs) < n:
        arch = space.sample(rng)
        archs[arch.key()] = arch
    return list(archs.values())


@pytest.fixture
def landmarks(compact_space) -> list[Landmark]:
    """Four distinct archs with made-up stand-alone accuracies (ascending)."""
    return [Landmark(a, acc) for a, acc in zip(distinct_archs(compact_space, 4), [60.0, 70.0, 80.0, 90.0])]


# ---- hinge ---------------------------------------------------------------------------------------


def test_hinge_is_zero_when_the_order_is_respected_and_positive_otherwise():
    worse, better = torch.tensor(2.0), torch.tensor(1.5)
    assert pairwise_hinge(worse, better).item() == 0.0  # better arch has the lower loss: no penalty
    assert pairwise_hinge(better, worse).item() == pytest.approx(0.5)
    assert pairwise_hinge(worse, better, "softplus", beta=5.0).item() == pytest.approx(
        F.softplus(torch.tensor(-0.5), beta=5.0).item()
    )
    with pytest.raises(ValueError):
        pairwise_hinge(worse, better, "tanh")


def test_one_sgd_step_on_the_hinge_lowers_the_better_minus_worse_loss(compact_space, digits):
    torch.manual_seed(0)
    net = compact_space.build_supernet(10).train()
    x, y = digits.val.tensors[0][:64], digits.val.tensors[1][:64]
    worse, better = distinct_archs(compact_space, 2, seed=1)

    def loss(arch):
        compact_space.activate(net, arch)
        return F.cross_entropy(net(resize(x, arch.resolution)), y)

    if loss(better).item() < loss(worse).item():  # make the pair violate the order, so the hinge is active
        worse, better = better, worse
    gap_before = (loss(better) - loss(worse)).item()
    assert gap_before > 0
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    optimizer.zero_grad()
    pairwise_hinge(loss(worse), loss(better)).backward()
    optimizer.step()
    with torch.no_grad():
        gap_after = (loss(better) - loss(worse)).item()
    assert gap_after < gap_before


# ---- weight schedule -----------------------------------------------------------------------------


def test_weight_is_zero_before_warmup_then_rises_monotonically_to_coef():
    cfg = LandmarkConfig(coef=10.0, warmup_fraction=0.5)
    weights = [landmark_weight(e, 10, cfg) for e in range(10)]
    assert weights[:5] == [0.0] * 5
    assert all(0 < a < b for a, b in zip(weights[5:], weights[6:]))
    assert weights[-1] == pytest.approx(10.0)
    assert landmark_weight(0, 1, LandmarkConfig(warmup_fraction=0.0)) == pytest.approx(10.0)
    assert landmark_weight(3, 4, LandmarkConfig(warmup_fraction=1.0)) == 0.0


# ---- pair sampling -------------------------------------------------------------------------------


def test_pairs_are_ordered_and_code_sampling_is_not_uniform_over_pairs():
    m, n = 4, 30_000
    code = sample_pairs(m, n, "code", np.random.default_rng(0))
    uniform = sample_pairs(m, n, "uniform_pairs", np.random.default_rng(0))
    assert all(0 <= a < b < m for a, b in code + uniform)
    freq_code = {p: c / n for p, c in Counter(code).items()}
    freq_uniform = {p: c / n for p, c in Counter(uniform).items()}
    assert len(freq_code) == len(freq_uniform) == 6
    # code: P(a) = 1/3, then b uniform above a -> (0, b): 1/9 each, (1, b): 1/6, (2, 3): 1/3
    assert freq_code[(0, 1)] == pytest.approx(1 / 9, abs=0.01)
    assert freq_code[(2, 3)] == pytest.approx(1 / 3, abs=0.01)
    assert all(f == pytest.approx(1 / 6, abs=0.01) for f in freq_uniform.values())


# ---- landmark selection and bookkeeping ----------------------------------------------------------


def test_fixed_selection_is_evenly_spaced_and_includes_the_best(compact_space):
    archs = distinct_archs(compact_space, 10)
    accs = [float(a) for a in np.random.default_rng(0).permutation(10) * 3 + 50]
    chosen = select_landmarks(list(zip(archs, accs)), 3, "fixed")
    ranks = sorted(accs)
    assert [lm.accuracy for lm in chosen] == [ranks[3], ranks[6], ranks[9]]  # step 10 // 3 = 3, best = 9
    assert chosen[-1].accuracy == max(accs)
    rand = select_landmarks(list(zip(archs, accs)), 5, "random", np.random.default_rng(1))
    assert len({lm.arch.key() for lm in rand}) == 5
    assert [lm.accuracy for lm in rand] == sorted(lm.accuracy for lm in rand)
    with pytest.raises(ValueError):
        select_landmarks(list(zip(archs, accs)), 11, "fixed")


def test_landmarks_are_excluded_and_added_without_duplicates(compact_space, landmarks):
    pool = distinct_archs(compact_space, 12)
    kept = exclude_landmarks(pool + [landmarks[0].arch, landmarks[2].arch], landmarks)
    assert not {a.key() for a in kept} & {lm.arch.key() for lm in landmarks}
    new = [Landmark(pool[-1], 75.0), Landmark(landmarks[1].arch, 99.0)]
    grown = add_landmarks(landmarks, new)
    assert len(grown) == 5  # pool[-1] is new (distinct_archs shares its first 4 with the landmarks)
    assert [lm.accuracy for lm in grown] == sorted(lm.accuracy for lm in grown)
    assert [lm.accuracy for lm in grown if lm.arch == landmarks[1].arch] == [70.0]  # known ones kept


# ---- the regulariser on a real supernet ----------------------------------------------------------


def test_step_computes_the_weighted_hinge_on_the_held_out_batch(compact_space, digits, landmarks):
    data = subset(digits, 64, 32)  # the held-out batch is then the whole holdout
    worse, better = landmarks[0], landmarks[3]
    cfg = LandmarkConfig(coef=4.0, warmup_fraction=0.5, batch_size=32)
    reg = LandmarkRegularizer([worse, better], data, cfg)
    torch.manual_seed(0)
    net = compact_space.build_supernet(10).train()
    calls = []
    net.register_forward_pre_hook(lambda *_: calls.append(1))
    assert reg.step(compact_space, net, epoch=0, epochs=2) == 0.0 and not calls  # warm-up: no forward
    value = reg.step(compact_space, net, epoch=1, epochs=2)
    assert len(calls) == 2
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads  # backward ran
    x, y = data.holdout.tensors
    check = copy.deepcopy(net)
    with torch.no_grad():
        losses = []
        for lm in (worse, better):
            compact_space.activate(check, lm.arch)
            losses.append(F.cross_entropy(check(resize(x, lm.arch.resolution)), y))
    assert value == pytest.approx(4.0 * max(0.0, (losses[1] - losses[0]).item()), abs=1e-5)


def test_training_with_the_regularizer_records_it_changes_the_weights_and_is_deterministic(
    compact_space, digits, landmarks, tmp_path
):
    data = subset(digits, 96, 64)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, warmup_steps=2, n_random=0)
    lm_cfg = LandmarkConfig(warmup_fraction=0.0, pairs_per_step=2, batch_size=32)

    def run(name: str, reg: LandmarkRegularizer | None):
        torch.manual_seed(1)
        net = compact_space.build_supernet(10)
        history = train_supernet(compact_space, net, data, cfg, tmp_path / f"{name}.pt", seed=3, regularizer=reg)
        return net, history

    plain, plain_history = run("plain", None)
    reg = LandmarkRegularizer(landmarks, data, lm_cfg)
    with_reg, history = run("reg", reg)
    again, _ = run("again", LandmarkRegularizer(landmarks, data, lm_cfg))

    assert "landmark_loss" not in plain_history[0]
    assert [h["landmark_weight"] for h in history] == [pytest.approx(5.0), pytest.approx(10.0)]
    assert all(h["landmark_loss"] >= 0 for h in history) and any(h["landmark_loss"] > 0 for h in history)
    params = dict(plain.named_parameters())
    assert any(not torch.equal(p, params[k]) for k, p in with_reg.named_parameters())
    for (k, a), b in zip(with_reg.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k

    # a checkpoint trained without (or with other) landmarks is not taken for this run
    ident = training_identity(compact_space, data, cfg, 3, reg)
    assert finished_training(tmp_path / "reg.pt", ident) is not None
    assert finished_training(tmp_path / "plain.pt", ident) is None
    other = LandmarkRegularizer(landmarks[1:], data, lm_cfg)
    assert training_identity(compact_space, data, cfg, 3, other) != ident
    assert training_identity(compact_space, data, cfg, 3) == training_identity(compact_space, data, cfg, 3, None)


# ---- multi-round variant -------------------------------------------------------------------------


def test_round_boundaries_split_the_regularised_epochs():
    assert round_boundaries(6, LandmarkConfig(warmup_fraction=0.5, rounds=1)) == []
    assert round_boundaries(6, LandmarkConfig(warmup_fraction=0.5, rounds=3)) == [4, 5]
    assert round_boundaries(10, LandmarkConfig(warmup_fraction=0.2, rounds=2)) == [6]
    with pytest.raises(ValueError):
        round_boundaries(6, LandmarkConfig(warmup_fraction=0.5, rounds=4))  # 3 regularised epochs only
    with pytest.raises(ConfigError, match="'landmarks.rounds' must be >= 1"):
        LandmarkConfig(rounds=0)


def test_the_landmark_batch_comes_from_held_out_training_images_not_from_val(landmarks):
    data = load_dataset("digits", seed=0, image_size=16, train_size=800)  # the pool's other 458 held out

    def hashes(images: torch.Tensor) -> set[bytes]:
        return {x.numpy().tobytes() for x in images}

    reg = LandmarkRegularizer(landmarks[:2], data, LandmarkConfig())  # default: batch_source=holdout
    assert len(reg.images) == 458 and hashes(reg.images) == hashes(data.holdout.tensors[0])
    assert not hashes(reg.images) & hashes(data.val.tensors[0])  # not the split the search scores on
    assert not hashes(reg.images) & hashes(data.train.tensors[0])  # nor what the supernet trains on
    leaky = LandmarkRegularizer(landmarks[:2], data, LandmarkConfig(batch_source="val"))
    assert torch.equal(leaky.images, data.val.tensors[0])
    with pytest.raises(ShiftnasError, match="batch_source=holdout needs training images held out.*data.train_size"):
        LandmarkRegularizer(landmarks[:2], load_dataset("digits", seed=0, image_size=16), LandmarkConfig())
    with pytest.raises(ShiftnasError, match="'landmarks.batch_source' must be one of"):
        LandmarkRegularizer(landmarks[:2], data, LandmarkConfig(batch_source="test"))


def test_grow_keeps_the_identity_and_load_rounds_restores_the_set(compact_space, digits, landmarks):
    digits = subset(digits, 64, 32)
    reg = LandmarkRegularizer(landmarks[:2], digits, LandmarkConfig())
    ident = reg.identity()
    added = reg.grow(
        [Landmark(landmarks[2].arch, 75.0), Landmark(landmarks[0].arch, 1.0), Landmark(landmarks[2].arch, 76.0)],
        epoch=3,
    )
    assert [lm.arch for lm in added] == [landmarks[2].arch]  # known and repeated ones skipped
    assert [lm.accuracy for lm in reg.landmarks] == [60.0, 70.0, 75.0]
    assert reg.identity() == ident  # a resumed run is still recognised
    fresh = LandmarkRegularizer(landmarks[:2], digits, LandmarkConfig())
    fresh.load_rounds(reg.rounds)
    assert fresh.landmarks == reg.landmarks and fresh.rounds == reg.rounds
    keys = landmark_keys({"identity": {"landmarks": ident}, "landmark_rounds": reg.rounds})
    assert keys == {lm.arch.key() for lm in reg.landmarks}


@pytest.mark.slow
def test_multi_round_training_adds_the_current_best_and_resumes_identically(tmp_path):
    space = get_space("compact-mbv3", resolutions=[16])
    data = subset(load_dataset("digits", seed=0, image_size=16), 96, 64)
    table = tmp_path / "gt.jsonl"
    build_groundtruth(
        space, data, distinct_archs(space, 4, seed=5), StandaloneRecipe(epochs=1, batch_size=32), [0], table
    )
    initial = [Landmark(r["arch"], r["mean_test_accuracy"]) for r in GroundTruthTable(table).rows()]
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, warmup_steps=2, n_random=0)
    lm_cfg = LandmarkConfig(
        warmup_fraction=0.0, batch_size=32, rounds=3, per_round=2, round_pop_size=4, round_generations=2
    )
    eval_cfg = EvalConfig(calib_size=64, batch_size=64)

    def train(name: str, crash_after: int | None = None):
        torch.manual_seed(1)
        net = space.build_supernet(10)
        reg = LandmarkRegularizer(initial, data, lm_cfg, seed=3)
        growth = LandmarkGrowth(
            space,
            net,
            reg,
            cfg.epochs,
            current_best_proposer(space, data, eval_cfg, 4, 2, seed=3),
            table_ground_truth(table, space, data),
        )

        def hook(epochs_done: int) -> None:
            growth(epochs_done)
            if epochs_done == crash_after:
                raise KeyboardInterrupt

        train_supernet(space, net, data, cfg, tmp_path / f"{name}.pt", seed=3, regularizer=reg, after_epoch=hook)
        return net, reg

    net, reg = train(name="full")
    assert [entry["epoch"] for entry in reg.rounds] == [1, 2]
    assert all(1 <= len(entry["added"]) <= 2 for entry in reg.rounds)
    gt = GroundTruthTable(table)
    assert len(gt) == len(reg.landmarks)  # every new landmark was trained with the table's recipe and appended
    assert all(lm.accuracy == gt.accuracy(lm.arch.key()) for lm in reg.landmarks)
    training = torch.load(tmp_path / "full.pt", weights_only=False)["training"]
    assert training["landmark_rounds"] == reg.rounds
    assert landmark_keys(training) == {lm.arch.key() for lm in reg.landmarks}

    with pytest.raises(KeyboardInterrupt):  # crash after the second round, before the last epoch is saved
        train(name="crashed", crash_after=3)
    resumed, resumed_reg = train(name="crashed")
    assert resumed_reg.rounds == reg.rounds
    for (k, a), b in zip(net.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
