"""``ofa-resnet50``: genome properties, the ``ofa`` package's own network and counter, predictors, a run
(ONNX export parity: ``test_search_spaces``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftnas.engine.checkpoint import load_supernet_weights, read_checkpoint
from shiftnas.errors import CheckpointError
from shiftnas.search_spaces import Arch, ResNetArch, arch_from_dict, get_space
from shiftnas.search_spaces.table import TableArch

RESNET = get_space("ofa-resnet50", resolutions=[32, 48])


@pytest.fixture(scope="module")
def package_resnet50():
    """The ``ofa`` package's own ResNet50 supernet with the model zoo's arguments (1000 classes)."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAResNets

    torch.manual_seed(3)
    net = OFAResNets(
        n_classes=1000, dropout_rate=0, depth_list=[0, 1, 2], expand_ratio_list=[0.2, 0.25, 0.35],
        width_mult_list=[0.65, 0.8, 1.0],
    )  # fmt: skip
    with torch.no_grad():  # non-trivial BN statistics, so that a wrongly sliced one shows
        net.train()
        net(torch.randn(4, 3, 48, 48))
    return net.eval()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_repair_is_canonical_and_round_trips(data):
    xl, xu = RESNET.bounds
    g = np.array(data.draw(st.tuples(*[st.integers(int(lo) - 2, int(hi) + 2) for lo, hi in zip(xl, xu)])))
    r = RESNET.repair(g)
    assert ((r >= xl) & (r <= xu)).all() and np.array_equal(RESNET.repair(r), r)
    for _, sl in RESNET.stage_genes():  # a skipped block never leaves a hole
        genes = r[sl]
        zeros = np.flatnonzero(genes == 0)
        assert not len(zeros) or (genes[zeros[0] :] == 0).all()
    arch = RESNET.decode(g)
    RESNET.validate(arch)
    assert np.array_equal(RESNET.encode(arch), r) and RESNET.decode(r) == arch
    assert arch_from_dict(arch.to_dict()) == arch


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_same_network_iff_same_repaired_genome(data):
    xl, xu = RESNET.bounds
    draw = st.tuples(*[st.integers(int(lo), int(hi)) for lo, hi in zip(xl, xu)]).map(np.array)
    a, b = data.draw(draw), data.draw(draw)
    same = RESNET.decode(a) == RESNET.decode(b)
    assert (
        same == np.array_equal(RESNET.repair(a), RESNET.repair(b)) == (RESNET.decode(a).key() == RESNET.decode(b).key())
    )


def test_space_size_matches_ofa_md_and_bad_archs_are_rejected():
    # ofa.md §3.4: 117 * 117 * 1053 * 117 depth/expand choices x 2 (stem skip) x 3^6 (width indices)
    assert get_space("ofa-resnet50", resolutions=[224]).size() == 117 * 117 * 1053 * 117 * 2 * 3**6
    assert RESNET.n_var == 1 + 3 + 4 + 18
    big = RESNET.largest()
    assert big.depths == (4, 4, 6, 4) and not big.stem_skip and RESNET.smallest().depths == (2, 2, 4, 2)
    bad = [
        ResNetArch(big.stem_skip, big.widths, big.stages, 99),
        ResNetArch(big.stem_skip, (0.5,) + big.widths[1:], big.stages, 32),
        ResNetArch(big.stem_skip, big.widths, ((0.35,),) + big.stages[1:], 32),
        ResNetArch(big.stem_skip, big.widths, ((0.3,) * 2,) + big.stages[1:], 32),
        Arch(((),), 32),
    ]
    for arch in bad:
        with pytest.raises(ValueError):
            RESNET.validate(arch)


def test_records_of_every_space_family_come_back_as_their_type():
    for arch in (RESNET.sample(np.random.default_rng(0)), get_space("compact-mbv3").largest(), TableArch((0, 2, 1))):
        back = arch_from_dict(arch.to_dict())
        assert type(back) is type(arch) and back == arch and back.key() == arch.key()


def test_package_state_dict_loads_and_subnets_match_the_package(tmp_path, package_resnet50):
    from ofa.utils.pytorch_utils import count_net_flops

    from shiftnas.hardware import count_macs

    path = tmp_path / "ofa_resnet50_d0-1-2_e0.2-0.25-0.35_w0.65-0.8-1.0"
    torch.save({"state_dict": package_resnet50.state_dict()}, path)
    net = RESNET.build_supernet(10)
    assert load_supernet_weights(net, read_checkpoint(path)["state_dict"]) == [
        "classifier.linear.linear.weight",
        "classifier.linear.linear.bias",
    ]
    rng = np.random.default_rng(4)
    for arch in (RESNET.smallest(), RESNET.largest(), RESNET.sample(rng), RESNET.sample(rng)):
        ours = RESNET.extract(net, arch)
        RESNET.activate(package_resnet50, arch)
        theirs = package_resnet50.get_active_subnet(preserve_weight=True).eval()
        theirs.classifier = ours.classifier  # 10 vs 1000 classes; everything else must be the package's
        x = torch.randn(2, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            assert torch.allclose(ours(x), theirs(x))
        chw = RESNET.input_size(arch)
        assert count_macs(ours, chw) == count_net_flops(theirs, (1, *chw))  # the package's own counter


def test_flat_published_key_names_load_as_the_package_loads_them(package_resnet50):
    """The published ResNet50 file names the dynamic layers flat (``bn.weight`` for ``bn.bn.weight``);
    both loaders map those names to the same supernet."""
    flat = {
        k.replace(".bn.bn.", ".bn.").replace(".conv.conv.", ".conv.").replace(".linear.linear.", ".linear."): v
        for k, v in package_resnet50.state_dict().items()
    }
    assert set(flat) != set(package_resnet50.state_dict())
    ours = RESNET.build_supernet(1000)
    assert load_supernet_weights(ours, flat) == []
    theirs = RESNET.build_supernet(1000)
    theirs.load_state_dict(flat)  # OFAResNets' own renaming loader
    for (k, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_checkpoint_of_another_ofa_space_is_a_clear_error():
    from shiftnas.search_spaces.ofa_mbv3 import build_ofa_mbv3_supernet

    with pytest.raises(CheckpointError, match="checkpoint does not match the search space's supernet"):
        load_supernet_weights(RESNET.build_supernet(10), build_ofa_mbv3_supernet(10).state_dict())


def test_the_per_block_latency_model_recovers_a_known_bottleneck_cost():
    """Synthetic latencies built from the ResNet block terms (3x3 and 1x1 parts, a per-block launch cost):
    the per-block table, fitted on 60 architectures, ranks 60 others almost perfectly."""
    from shiftnas.predictors.latency import fit_latency_predictor, prediction_errors

    rng = np.random.default_rng(0)
    archs = [RESNET.sample(rng) for _ in range(120)]

    def cost(a: ResNetArch) -> float:
        area = (a.resolution / 48) ** 2
        return 0.3 + sum(area * (2.0 * t1 + 0.5 * t2) + 0.05 * (s + 1) for s, (t1, t2) in a.block_terms())

    y = np.array([cost(a) for a in archs])
    mmacs = np.zeros(len(archs))  # no MACs: only the block terms can explain the cost
    predictor = fit_latency_predictor(RESNET, archs[:60], mmacs[:60], y[:60], candidates=["lut"], seed=0)
    assert prediction_errors(y[60:], predictor.predict(archs[60:], mmacs[60:]))["kendall_tau"] > 0.95


def test_run_searches_exports_and_reports_a_resnet_subnet(tmp_path):
    """``shiftnas run --space ofa-resnet50`` end to end on digits: training, search, front, ONNX, report."""
    import json

    import onnxruntime as ort
    from typer.testing import CliRunner

    from shiftnas.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["run", "--space", "ofa-resnet50", "--out", str(out), "--data", "digits", "--epochs", "1",
         "--generations", "1", "--pop-size", "4", "--set", "space.resolutions=[32]", "--set", "data.train_size=256",
         "--set", "train.batch_size=64", "--set", "train.warmup_steps=1", "--set", "threads=1",
         "--set", "eval.calib_size=100", "--set", "hardware.runs=5", "--set", "hardware.repeats=2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    picked = arch_from_dict(summary["picked"]["arch"])
    assert isinstance(picked, ResNetArch) and picked.key() == summary["picked"]["key"]
    assert picked.key() in (out / "report.html").read_text()
    sess = ort.InferenceSession(str(out / summary["picked"]["onnx"]), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": np.zeros((2, 3, 32, 32), dtype=np.float32)})[0]
    assert logits.shape == (2, 10)
