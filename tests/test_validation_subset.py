"""The stratified validation subset: which images it runs, that its estimate is unbiased, and the evaluator using it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shiftnas.config import EvalConfig
from shiftnas.engine.evaluation.inference import inference_form
from shiftnas.engine.evaluation.subnet import SubnetEvaluator, accuracy
from shiftnas.engine.evaluation.validation_subset import pilot_architectures, stratified_subset


def _pilots_and_images(seed: int = 0, n: int = 2000):
    """Pilot correctness where 70 % of images are easy (all right), 5 % impossible, 25 % disputed."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, n, p=[0.70, 0.05, 0.25])
    pilots = np.where(kind == 0, True, np.where(kind == 1, False, rng.random((6, n)) < 0.5))
    return pilots, kind


def test_disputed_images_are_all_run_and_the_rest_drawn_at_the_fraction():
    pilots, kind = _pilots_and_images()
    subset = stratified_subset(pilots, 0.2, seed=0)
    disputed = np.flatnonzero(pilots.any(0) & ~pilots.all(0))
    kept = subset.indices.numpy()
    assert set(disputed) <= set(kept)
    assert (subset.weights[np.isin(kept, disputed)] == 1).all()
    for stratum in (np.flatnonzero(pilots.all(0)), np.flatnonzero(~pilots.any(0))):
        drawn = np.isin(kept, stratum)
        assert drawn.sum() == int(np.ceil(0.2 * len(stratum)))
        assert np.allclose(subset.weights[drawn], len(stratum) / drawn.sum())
    assert float(subset.weights.sum()) == pytest.approx(subset.total)
    assert subset.share < 0.5
    assert list(kept) == sorted(kept)


def test_a_pilot_is_scored_exactly_and_the_estimate_is_unbiased():
    pilots, kind = _pilots_and_images()
    subset = stratified_subset(pilots, 0.2, seed=0)
    idx = subset.indices.numpy()
    for pilot in pilots:  # right on every sampled easy image, wrong on every impossible one: no sampling error
        assert subset.accuracy(torch.from_numpy(pilot[idx])) == pytest.approx(100 * pilot.mean(), abs=1e-9)
    # a new subnet that misses 3 % of the easy images: the mean estimate over draws is its true accuracy
    rng = np.random.default_rng(1)
    new = np.where(kind == 0, rng.random(len(kind)) > 0.03, np.where(kind == 1, False, rng.random(len(kind)) < 0.6))
    estimates = []
    for seed in range(400):
        s = stratified_subset(pilots, 0.2, seed=seed)
        estimates.append(s.accuracy(torch.from_numpy(new[s.indices.numpy()])))
    standard_error = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - 100 * new.mean()) < 4 * standard_error
    assert np.std(estimates) > 0  # the easy misses are sampled, so single draws do vary


def test_the_subset_is_seeded_and_bad_fractions_are_refused():
    pilots, _ = _pilots_and_images()
    a, b = stratified_subset(pilots, 0.3, seed=5), stratified_subset(pilots, 0.3, seed=5)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.weights, b.weights)
    assert not torch.equal(a.indices, stratified_subset(pilots, 0.3, seed=6).indices)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            stratified_subset(pilots, bad, seed=0)
    everything = stratified_subset(pilots, 1.0, seed=0)
    assert everything.share == 1.0 and torch.all(everything.weights == 1)


def test_pilots_are_the_extremes_then_seeded_samples(compact_space):
    pilots = pilot_architectures(compact_space, 6, seed=3)
    keys = [a.key() for a in pilots]
    assert keys[:2] == [compact_space.smallest().key(), compact_space.largest().key()]
    assert len(set(keys)) == 6
    assert keys == [a.key() for a in pilot_architectures(compact_space, 6, seed=3)]
    assert keys[:4] == [a.key() for a in pilot_architectures(compact_space, 4, seed=3)]


def test_the_evaluator_scores_val_on_the_stratified_subset(trained_supernet, compact_space, digits, eval_config):
    net, _, _ = trained_supernet
    sizes = {"calib_size": eval_config.calib_size, "batch_size": eval_config.batch_size}
    cfg = EvalConfig(**sizes, val_images="stratified", pilots=4, easy_fraction=0.25)
    evaluator = SubnetEvaluator(compact_space, net, digits, cfg, seed=1)
    full = SubnetEvaluator(compact_space, net, digits, EvalConfig(**sizes, val_images="all"), seed=1)
    subset = evaluator.validation_subset()
    assert subset is not None and subset.share < 1 and subset.total == len(digits.val.tensors[1])
    images, labels = digits.val.tensors
    for arch in pilot_architectures(compact_space, 4, seed=1):  # pilots: exact
        whole = accuracy(inference_form(evaluator.subnet(arch)), images, labels, arch.resolution, cfg.batch_size, True)
        assert evaluator.score(arch).accuracy == pytest.approx(whole, abs=1e-9)
    rng = np.random.default_rng(7)
    for arch in [compact_space.sample(rng) for _ in range(3)]:
        estimate, exact = evaluator.score(arch).accuracy, full.score(arch).accuracy
        assert abs(estimate - exact) < 10  # an estimate, near the full accuracy
        assert evaluator.score(arch, "test").accuracy == full.score(arch, "test").accuracy  # test: every image
    # auto: a split of 180 images is scored whole
    assert SubnetEvaluator(compact_space, net, digits, eval_config).validation_subset() is None


def test_the_subset_comes_from_the_weights_the_evaluator_was_made_with(
    trained_supernet, compact_space, digits, monkeypatch
):
    """A shifted or resumed run changes the weights before its first 'val' score: the pilots still see version 0."""
    import copy

    import shiftnas.engine.evaluation.subnet as subnet_module

    net = copy.deepcopy(trained_supernet[0])
    monkeypatch.setattr(subnet_module, "STRATIFY_FROM", len(digits.val.tensors[1]))  # auto: this split qualifies
    cfg = EvalConfig(calib_size=128, batch_size=128, pilots=3)
    untouched = SubnetEvaluator(compact_space, copy.deepcopy(net), digits, cfg, seed=2).validation_subset()
    assert untouched is not None  # auto, at the threshold
    evaluator = SubnetEvaluator(compact_space, net, digits, cfg, seed=2)
    original = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.5)  # a shifting step, or a resume loading version N
    evaluator.bump_version()
    changed = {k: v.clone() for k, v in net.state_dict().items()}
    subset = evaluator.validation_subset()
    assert torch.equal(subset.indices, untouched.indices) and torch.equal(subset.weights, untouched.weights)
    assert all(torch.equal(changed[k], v) for k, v in net.state_dict().items())  # the current weights are back
    assert not all(torch.equal(original[k], v) for k, v in net.state_dict().items())
    assert evaluator.n_evaluations == 3  # the pilots' scores count
    # INT8 scores run in ONNX Runtime on every image: no pilots, no subset
    int8 = SubnetEvaluator(compact_space, net, digits, cfg, seed=2, precision="int8")
    assert int8.validation_subset() is None and int8.n_evaluations == 0
    assert len(int8.calibration) == 256 and len(evaluator.calibration) == 128  # the quantizer keeps 256 images
