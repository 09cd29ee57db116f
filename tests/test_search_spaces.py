"""Genome properties (hypothesis), the ofa traps of ofa.md §11.3, extraction and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftnas.engine.checkpoint import load_supernet_weights, read_checkpoint, save_supernet
from shiftnas.errors import CheckpointError, ConfigError
from shiftnas.search_spaces import Arch, get_space, list_spaces

COMPACT = get_space("compact-mbv3")
OFA = get_space("ofa-mbv3", resolutions=[32, 48])
PROXYLESS = get_space("ofa-proxyless", resolutions=[32, 48])
RESNET = get_space("ofa-resnet50", resolutions=[32, 48])


def genomes(space, slack: int = 2):
    xl, xu = space.bounds
    return st.tuples(*[st.integers(int(lo) - slack, int(hi) + slack) for lo, hi in zip(xl, xu)]).map(np.array)


def stage_genes(space, genome):
    return [genome[sl] for sl in space.stage_slices()]


@pytest.mark.parametrize("space", [COMPACT, OFA, PROXYLESS], ids=["compact", "ofa", "proxyless"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_repair_is_canonical_and_round_trips(space, data):
    g = data.draw(genomes(space))
    r = space.repair(g)
    xl, xu = space.bounds
    assert ((r >= xl) & (r <= xu)).all()
    assert np.array_equal(space.repair(r), r), "repair must be idempotent"
    for genes in stage_genes(space, r):  # a skipped layer never leaves a hole
        nz = np.flatnonzero(genes == 0)
        assert all(genes[i] == 0 for i in range(nz[0], len(genes))) if len(nz) else True
    arch = space.decode(g)
    space.validate(arch)
    assert np.array_equal(space.encode(arch), r)
    assert space.decode(space.encode(arch)) == arch


@pytest.mark.parametrize("space", [COMPACT, OFA, PROXYLESS], ids=["compact", "ofa", "proxyless"])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_same_network_iff_same_repaired_genome(space, data):
    a, b = data.draw(genomes(space, 0)), data.draw(genomes(space, 0))
    same_arch = space.decode(a) == space.decode(b)
    assert same_arch == np.array_equal(space.repair(a), space.repair(b))
    assert same_arch == (space.decode(a).key() == space.decode(b).key())


def test_hole_is_pushed_to_the_end_of_its_stage():
    g = COMPACT.encode(COMPACT.largest())
    g[1 + 1] = 0  # stage 0, second slot skipped: (x, 0, y) -> (x, y, 0)
    assert COMPACT.decode(g).depths[0] == 2
    assert list(COMPACT.repair(g)[1:4]) == [g[1], g[3], 0]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_sampled_archs_are_valid_and_encode_exactly(seed):
    rng = np.random.default_rng(seed)
    for space in (COMPACT, OFA):
        arch = space.sample(rng)
        space.validate(arch)
        assert space.decode(space.encode(arch)) == arch
        assert Arch.from_dict(arch.to_dict()) == arch


def test_space_sizes_match_the_closed_form():
    assert COMPACT.size() == (9 + 9**2 + 9**3) ** 4 * 3
    assert get_space("ofa-mbv3", resolutions=[224]).size() == 7371**5  # ofa.md §3.4: 2.18e19


def test_registry_and_unknown_space():
    assert {"compact-mbv3", "ofa-mbv3"} <= set(list_spaces())
    with pytest.raises(ConfigError, match="unknown search space 'nope'"):
        get_space("nope")


def with_first_layer(arch: Arch, layer: tuple[int, int]) -> Arch:
    first = (layer,) + arch.stages[0][1:]
    return Arch((first,) + arch.stages[1:], arch.resolution)


def test_validate_rejects_out_of_space_archs():
    good = COMPACT.largest()
    bad = [
        Arch(good.stages, 99),
        Arch(good.stages[:3], 28),
        with_first_layer(good, (9, 6)),
        with_first_layer(good, (3, 5)),
        Arch(tuple(() for _ in range(4)), 28),
    ]
    for arch in bad:
        with pytest.raises(ValueError):
            COMPACT.validate(arch)


# ---- the ofa package's traps (ofa.md §11.3) --------------------------------------------------


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    net = COMPACT.build_supernet(10)
    net.train()
    with torch.no_grad():  # non-trivial BN statistics
        for r in (20, 28):
            COMPACT.activate(net, COMPACT.largest() if r == 28 else COMPACT.smallest())
            net(torch.randn(16, 3, r, r))
    return net.eval()


def test_trap_set_active_subnet_silently_ignores_typos_so_we_validate(supernet):
    COMPACT.activate(supernet, COMPACT.largest())
    supernet.set_active_subnet(k=3, depth=1, expand=3)  # typos: ofa accepts them and changes nothing
    assert supernet.runtime_depth == [3, 3, 3, 3]
    bad = with_first_layer(COMPACT.largest(), (4, 3))
    with pytest.raises(ValueError, match="not in kernels"):
        COMPACT.activate(supernet, bad)


def test_trap_short_lists_leave_stale_settings_so_we_pass_full_lists(supernet):
    COMPACT.activate(supernet, COMPACT.largest())
    supernet.set_active_subnet(ks=[3, 3], e=[3, 3], d=[1])  # ofa only updates a prefix
    assert supernet.blocks[3].conv.active_kernel_size == 7
    arch = COMPACT.smallest()
    COMPACT.activate(supernet, arch)
    settings_ = COMPACT.ofa_settings(arch)
    assert len(settings_["ks"]) == len(supernet.blocks) - 1 and len(settings_["d"]) == 4
    assert all(b.conv.active_kernel_size == 3 for b in supernet.blocks[1:])


def test_extracted_subnet_is_fully_in_eval_mode_and_matches_the_supernet(supernet):
    rng = np.random.default_rng(1)
    for arch in (COMPACT.largest(), COMPACT.smallest(), COMPACT.sample(rng), COMPACT.sample(rng)):
        sub = COMPACT.extract(supernet, arch)
        assert not any(m.training for m in sub.modules()), "get_active_subnet() leaves layers in train mode"
        x = torch.randn(3, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            COMPACT.activate(supernet, arch)
            assert torch.equal(supernet(x), sub(x))
        with torch.no_grad():  # weights are copies, not views
            next(sub.parameters()).add_(1.0)
        assert not torch.equal(next(sub.parameters()), next(supernet.parameters()))


def test_subnet_params_grow_with_the_architecture(supernet):
    small = sum(p.numel() for p in COMPACT.extract(supernet, COMPACT.smallest()).parameters())
    large = sum(p.numel() for p in COMPACT.extract(supernet, COMPACT.largest()).parameters())
    assert small < large


# ---- checkpoints -------------------------------------------------------------------------------


def test_published_ofa_checkpoint_format_loads_and_resets_the_classifier(tmp_path):
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    torch.manual_seed(0)
    published = OFAMobileNetV3(
        n_classes=1000,
        dropout_rate=0,
        width_mult=1.0,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    # the published files pickle {'state_dict': ...} with some pre-rename key names
    sd = {
        k.replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.1.conv.") else k: v
        for k, v in published.state_dict().items()
    }
    path = tmp_path / "ofa_mbv3_d234_e346_k357_w1.0"
    torch.save({"state_dict": sd}, path)
    space = get_space("ofa-mbv3")
    net = space.build_supernet(10)
    reset = load_supernet_weights(net, read_checkpoint(path)["state_dict"])
    assert reset == ["classifier.linear.weight", "classifier.linear.bias"]
    assert torch.equal(
        net.blocks[1].conv.depth_conv.conv.conv.weight, published.blocks[1].conv.depth_conv.conv.conv.weight
    )
    assert net.classifier.linear.weight.shape == (10, 1280)


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    w12 = get_space("ofa-mbv3", width_mult=1.2).build_supernet(10)
    path = tmp_path / "w12.pt"
    torch.save({"state_dict": w12.state_dict()}, path)
    net = get_space("ofa-mbv3").build_supernet(10)
    with pytest.raises(CheckpointError, match="does not match .* shape mismatches"):
        load_supernet_weights(net, read_checkpoint(path)["state_dict"])


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")


def test_own_checkpoint_round_trip(tmp_path, supernet):
    path = save_supernet(tmp_path / "s.pt", supernet, COMPACT, 10, version=3)
    state = read_checkpoint(path)
    assert state["version"] == 3 and state["space"]["name"] == "compact-mbv3"
    fresh = COMPACT.build_supernet(10)
    assert load_supernet_weights(fresh, state["state_dict"]) == []
    for (k, a), b in zip(supernet.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k


# ---- ofa-proxyless -------------------------------------------------------------------------------


def _package_proxyless():
    """The ``ofa`` package's own ProxylessNAS supernet with the model zoo's w1.3 arguments."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAProxylessNASNets

    torch.manual_seed(3)
    return OFAProxylessNASNets(
        n_classes=1000,
        dropout_rate=0,
        width_mult=1.3,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )


def test_proxyless_genome_has_a_single_block_last_stage():
    space = get_space("ofa-proxyless")
    assert space.spec.slots == (4, 4, 4, 4, 4, 1) and space.n_var == 1 + 21
    assert space.size() == 4 * 7371**5 * 9  # 4 resolutions x (9^2 + 9^3 + 9^4)^5 x 9 last-block choices
    assert [len(s) for s in space.smallest().stages] == [2, 2, 2, 2, 2, 1]
    with pytest.raises(ValueError, match="stage 5 has depth 2"):
        space.validate(Arch(stages=(((3, 3),) * 2,) * 6, resolution=224))


def test_proxyless_package_state_dict_loads_and_subnets_match_the_package(tmp_path):
    from ofa.utils.pytorch_utils import count_net_flops

    from shiftnas.hardware import count_macs

    published = _package_proxyless()
    path = tmp_path / "ofa_proxyless_d234_e346_k357_w1.3"
    torch.save({"state_dict": published.state_dict()}, path)
    net = PROXYLESS.build_supernet(10)
    reset = load_supernet_weights(net, read_checkpoint(path)["state_dict"])
    assert reset == ["classifier.linear.weight", "classifier.linear.bias"]
    published.eval()
    for arch in (PROXYLESS.smallest(), PROXYLESS.largest(), PROXYLESS.sample(np.random.default_rng(4))):
        ours = PROXYLESS.extract(net, arch)
        PROXYLESS.activate(published, arch)
        theirs = published.get_active_subnet(preserve_weight=True).eval()
        theirs.classifier = ours.classifier  # the classifiers differ (10 vs 1000 classes), the rest must not
        x = torch.randn(2, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            assert torch.allclose(ours(x), theirs(x))
        chw = PROXYLESS.input_size(arch)
        assert count_macs(ours, chw) == count_net_flops(theirs, (1, *chw))  # the package's own counter


@pytest.mark.parametrize("space", [PROXYLESS, RESNET], ids=["proxyless", "resnet50"])
def test_ofa_subnets_export_to_onnx_with_parity_and_the_same_macs(space):
    from shiftnas.engine.evaluation.inference import inference_form
    from shiftnas.hardware import assert_parity, count_macs, export_onnx
    from shiftnas.hardware.macs import onnx_macs

    torch.manual_seed(0)
    net = space.build_supernet(10)
    arch = space.sample(np.random.default_rng(5))
    sub = space.extract(net, arch)
    chw = space.input_size(arch)
    onnx_bytes = export_onnx(sub, (1, *chw))
    assert assert_parity(sub, onnx_bytes, (1, *chw)).max_abs_diff <= 1e-3
    assert onnx_macs(onnx_bytes) == count_macs(sub, chw)
    x = torch.randn(3, *chw)
    with torch.no_grad():  # the evaluator's BN-folded channels_last form computes the same function
        fast = inference_form(sub)(x.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(sub(x), fast, atol=1e-4, rtol=1e-3)
