"""shiftnas.hardware on real OFA-MBv3 subnets: export, parity, latency, cache, MACs.

Real components only (ofa, torch exporter, onnx, ONNX Runtime, fvcore, thop). No timing thresholds
are asserted: the machine is shared and latency numbers are noisy (latency.md §0).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sqlite3
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from shiftnas.config import HardwareConfig, LatencyConfig
from shiftnas.errors import ExportError, ShiftnasError
from shiftnas.hardware import (
    HardwareFingerprint,
    LatencyCache,
    LatencyProfiler,
    LatencyResult,
    ModelUnderTest,
    assert_parity,
    check_parity,
    count_macs,
    count_params,
    deployable,
    export_onnx,
    hardware_fingerprint,
    make_session,
    measure_latency,
    onnx_macs,
)
from shiftnas.hardware.export import _export_dynamo
from shiftnas.hardware.fingerprint import fingerprint_of
from shiftnas.hardware.latency import measurement_protocol

CHW = (3, 32, 32)
N_CLASSES = 10
# Small sampling plan: the tests check bookkeeping, not speed.
FAST = dict(warmup=2, repeats=3, runs=5)

ARCH_A = dict(ks=[3, 5, 7, 5] * 5, e=[3, 4, 6, 4] * 5, d=[2, 3, 4, 3, 2])
ARCH_B = dict(ks=[7, 3, 3, 5, 3] * 4, e=[6, 3, 3, 4, 6] * 4, d=[4, 2, 3, 2, 4])


@pytest.fixture(scope="module")
def supernet():  # conftest.py runs the tests with one torch thread
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    torch.manual_seed(0)
    return OFAMobileNetV3(
        n_classes=N_CLASSES,
        dropout_rate=0,
        width_mult=1.0,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )


def _subnet(net: nn.Module, arch: dict, seed: int) -> nn.Module:
    """Static subnet whose BN running statistics are non-trivial (not mean 0 / var 1)."""
    net.set_active_subnet(**arch)
    net.train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(4, *CHW, generator=g) * 2 + 0.5)
    return net.get_active_subnet(preserve_weight=True).eval()


@pytest.fixture(scope="module")
def subnets(supernet):
    return {"a": _subnet(supernet, ARCH_A, 1), "b": _subnet(supernet, ARCH_B, 2)}


@pytest.fixture(scope="module")
def sub(subnets):
    return subnets["a"]


@pytest.fixture(scope="module")
def onnx_a(sub):
    return export_onnx(sub, (1, *CHW))


def _ofa_acts():
    from ofa.utils.pytorch_modules import Hsigmoid, Hswish

    return Hswish, Hsigmoid


# --------------------------------------------------------------------------- export


def test_export_is_valid_single_file_with_dynamic_batch(sub, onnx_a, tmp_path):
    path = tmp_path / "sub" / "a.onnx"
    data = export_onnx(sub, (1, *CHW), path=path)
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.onnx"]  # no external data file

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    for vi in (model.graph.input[0], model.graph.output[0]):
        batch = vi.type.tensor_type.shape.dim[0]
        assert batch.dim_param and not batch.HasField("dim_value")
    assert all(op.version == 17 for op in model.opset_import if op.domain in ("", "ai.onnx"))

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for bs in (1, 3):
        x = np.random.default_rng(bs).standard_normal((bs, *CHW)).astype(np.float32)
        (y,) = sess.run(None, {"input": x})
        assert y.shape == (bs, N_CLASSES)
        assert np.isfinite(y).all()


def test_parity_within_tolerance(sub, onnx_a):
    report = assert_parity(sub, onnx_a, (1, *CHW), batch_sizes=(1, 2, 4))
    assert report.ok and report.max_abs_diff <= 1e-4
    assert report.batch_sizes == (1, 2, 4) and report.tolerance == 1e-4


def test_parity_failure_is_detected(sub, onnx_a):
    perturbed = copy.deepcopy(sub)
    with torch.no_grad():
        perturbed.classifier.linear.weight.add_(0.05)
    report = check_parity(perturbed, onnx_a, CHW)
    assert not report.ok and report.max_abs_diff > 1e-4
    with pytest.raises(ExportError, match=r"ONNX output differs from PyTorch by .* \(more than 0.0001 \+ 0.001 x"):
        assert_parity(perturbed, onnx_a, CHW)


def test_parity_tolerance_is_relative_to_the_output_too(sub, onnx_a):
    """atol 1e-4 + rtol 1e-3 (numpy.allclose): logits scaled by 1 + 2e-4 pass whatever their magnitude,
    by 1 + 5e-3 they do not."""
    for scale, ok in ((1 + 2e-4, True), (1 + 5e-3, False)):
        scaled = copy.deepcopy(sub)
        with torch.no_grad():
            scaled.classifier.linear.weight.mul_(scale)
            scaled.classifier.linear.bias.mul_(scale)
        report = check_parity(scaled, onnx_a, CHW)
        assert report.ok is ok and report.rtol == 1e-3
        assert check_parity(scaled, onnx_a, CHW, rtol=0).ok is (report.max_abs_diff <= 1e-4)


def test_deployable_swaps_ofa_activations(sub, onnx_a):
    hswish, hsigmoid = _ofa_acts()
    before = Counter(type(m) for m in sub.modules())
    assert before[hswish] > 0 and before[hsigmoid] > 0
    state = {k: v.clone() for k, v in sub.state_dict().items()}

    dep = deployable(sub)
    after = Counter(type(m) for m in dep.modules())
    assert after[hswish] == 0 and after[hsigmoid] == 0
    assert after[nn.Hardswish] == before[hswish]
    assert after[nn.Hardsigmoid] == before[hsigmoid]
    assert not dep.training

    # The original is untouched: same modules, same weights, same mode.
    assert Counter(type(m) for m in sub.modules()) == before
    assert all(torch.equal(state[k], v) for k, v in sub.state_dict().items())
    assert not sub.training

    x = torch.randn(2, *CHW, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(dep(x), sub(x), atol=1e-6, rtol=0)

    ops = Counter(n.op_type for n in onnx.load_from_string(onnx_a).graph.node)
    assert ops["HardSwish"] == before[hswish]
    assert ops["HardSigmoid"] == before[hsigmoid]
    assert ops["Div"] == 0 and ops["Clip"] == 0  # no decomposed x*relu6(x+3)/6 left


def test_export_leaves_model_mode_and_weights_alone(sub):
    model = copy.deepcopy(sub).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, (2, *CHW))
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_export_failure_is_one_line_export_error(supernet):
    # The elastic supernet cannot be traced (OFA rounds a traced tensor); export subnets instead.
    with pytest.raises(ExportError) as info:
        export_onnx(supernet.eval(), (1, *CHW))
    assert str(info.value).startswith("ONNX export failed:")
    assert "\n" not in str(info.value)
    with pytest.raises(ExportError, match="N, C, H, W"):
        export_onnx(nn.Identity(), CHW)  # type: ignore[arg-type]


def test_dynamo_fallback_exporter_works():
    """The fallback path used when a future torch drops the legacy exporter."""
    tiny = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()
    data = _export_dynamo(tiny, torch.randn(1, 3, 8, 8), opset=17)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert_parity(tiny, data, (3, 8, 8), batch_sizes=(1, 3))
    assert onnx_macs(data) == count_macs(tiny, (3, 8, 8))


# --------------------------------------------------------------------------- latency


def test_measure_latency_statistics(onnx_a):
    cfg = LatencyConfig(**FAST)
    r = measure_latency(onnx_a, CHW, cfg)
    assert len(r.block_medians_ms) == cfg.repeats
    assert r.n_runs == cfg.repeats * cfg.runs
    assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms
    assert all(m > 0 for m in r.block_medians_ms)
    assert r.median_ms == pytest.approx(float(np.median(r.block_medians_ms)))
    spread = (max(r.block_medians_ms) - min(r.block_medians_ms)) / r.median_ms
    assert r.spread == pytest.approx(spread) and r.spread >= 0
    assert r.p90_ms < 60_000  # milliseconds, not ns: one 32x32 forward is far below a minute
    assert r.input_shape == [1, *CHW]
    assert r.fingerprint == fingerprint_of(cfg).as_dict()
    # what the measurement cost (seconds): the candidate's timed runs, at least its runs x their 10th percentile
    assert set(r.cost) == {"sessions_s", "warmup_s", "candidate_runs_s", "reference_runs_s"}
    assert r.cost["sessions_s"] > 0 and r.cost["reference_runs_s"] == 0  # no references
    assert r.n_runs * r.p10_ms / 1e3 <= r.cost["candidate_runs_s"] <= r.n_runs * r.p90_ms / 1e3 * 100  # s, not ms


def test_measure_latency_uses_configured_batch_size(onnx_a):
    cfg = LatencyConfig(batch_size=2, warmup=1, repeats=1, runs=3)
    r = measure_latency(onnx_a, CHW, cfg)
    assert r.input_shape == [2, *CHW]
    assert r.fingerprint["batch_size"] == 2
    assert r.n_runs == 3 and len(r.block_medians_ms) == 1 and r.spread == 0


def test_make_session_settings(onnx_a):
    cfg = LatencyConfig(intra_threads=2, inter_threads=1)
    so = make_session(onnx_a, cfg).get_session_options()
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_unavailable_provider_is_an_error_not_a_fallback(onnx_a):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ShiftnasError, match="onnxruntime-gpu"):
            make_session(onnx_a, LatencyConfig(provider="CUDAExecutionProvider"))
    with pytest.raises(ShiftnasError, match="NoSuchExecutionProvider is not available"):
        measure_latency(onnx_a, CHW, LatencyConfig(provider="NoSuchExecutionProvider"))


def test_fingerprint():
    fp = hardware_fingerprint()
    assert isinstance(fp, HardwareFingerprint)
    assert fp.cpu_model and fp.cores == os.cpu_count()
    assert fp.ort_version == ort.__version__ and fp.provider == "CPUExecutionProvider"
    assert fp.key() == hardware_fingerprint().key()  # stable
    assert len(fp.key()) == 16
    assert fp.key() != hardware_fingerprint(intra_threads=2).key()
    assert fp.key() != hardware_fingerprint(batch_size=8).key()
    assert set(fp.as_dict()) == {
        "cpu_model",
        "cores",
        "provider",
        "ort_version",
        "intra_threads",
        "inter_threads",
        "batch_size",
        "precision",
    }
    assert fp.key() != hardware_fingerprint(precision="int8").key()


# --------------------------------------------------------------------------- cache


def _rows(path) -> int:
    with sqlite3.connect(str(path)) as conn:
        return conn.execute("SELECT COUNT(*) FROM latency").fetchone()[0]


def test_profiler_cache_miss_then_hit(sub, tmp_path):
    db = tmp_path / "lat.sqlite"
    cache = LatencyCache(db)
    prof = LatencyProfiler(LatencyConfig(**FAST), cache=cache)
    first = prof.profile("arch-a", sub, CHW)
    assert prof.n_measured == 1 and _rows(db) == 1
    assert first.fingerprint == prof.fingerprint.as_dict()

    second = prof.profile("arch-a", sub, CHW)
    assert second == first  # the stored result, not a new (noisy) measurement
    assert prof.n_measured == 1 and _rows(db) == 1 and len(cache) == 1

    # Another fingerprint (2 intra-op threads) misses and adds a row.
    prof2 = LatencyProfiler(LatencyConfig(intra_threads=2, **FAST), cache=cache)
    assert prof2.fingerprint.key() != prof.fingerprint.key()
    assert cache.get("arch-a", CHW, prof2.cache_key) is None
    third = prof2.profile("arch-a", sub, CHW)
    assert prof2.n_measured == 1 and _rows(db) == 2
    assert third.fingerprint["intra_threads"] == 2
    # Another input shape misses too.
    assert cache.get("arch-a", (3, 64, 64), prof.cache_key) is None
    cache.close()


def test_a_shared_cache_keeps_two_protocols_apart(sub, tmp_path):
    """Two runs on one device that measure with different protocols (here: interleaved references or none) and
    share a cache file each read only their own medians; a third with the first's protocol reads the first's."""
    db = tmp_path / "shared.sqlite"
    refs = [ModelUnderTest("ref", export_onnx(sub, (1, *CHW)), CHW)]
    interleaved = LatencyConfig(references=1, **FAST)
    alone = LatencyConfig(references=0, **FAST)
    with LatencyCache(db) as cache:
        first = LatencyProfiler(interleaved, cache=cache, references=refs)
        second = LatencyProfiler(alone, cache=cache)
        assert first.fingerprint.key() == second.fingerprint.key() and first.cache_key != second.cache_key
        with_ref = first.profile("arch-a", sub, CHW)
        without = second.profile("arch-a", sub, CHW)
        assert second.n_measured == 1 and _rows(db) == 2  # measured again, not read from the other protocol
        assert with_ref.reference == "ref" and without.reference is None
        third = LatencyProfiler(LatencyConfig(references=1, **FAST), cache=cache, references=refs)
        assert third.profile("arch-a", sub, CHW) == with_ref and third.n_measured == 0
    assert measurement_protocol(HardwareConfig()) == measurement_protocol(
        LatencyConfig(**{f.name: getattr(HardwareConfig(), f.name) for f in dataclasses.fields(LatencyConfig)})
    )  # a search's own settings (cache path, latency source) are not part of the protocol


def test_cache_persists_across_instances(tmp_path):
    db = tmp_path / "nested" / "lat.sqlite"
    fp = hardware_fingerprint()
    res = LatencyResult(
        median_ms=1.25,
        p10_ms=1.0,
        p90_ms=2.0,
        spread=0.1,
        block_medians_ms=[1.2, 1.25, 1.32],
        n_runs=90,
        fingerprint=fp.as_dict(),
        input_shape=[1, *CHW],
    )
    with LatencyCache(db) as cache:
        assert cache.get("k", CHW, fp) is None
        cache.put("k", CHW, fp, res)
    with LatencyCache(db) as cache:
        assert cache.get("k", CHW, fp) == res
        assert cache.get("k", "3x32x32", fp.key()) == res  # string keys are the same keys
        assert cache.get("other", CHW, fp) is None
        cache.put("k", CHW, fp, res)  # overwrite, not duplicate
        assert len(cache) == 1

    mem = LatencyCache(":memory:")
    mem.put("k", CHW, fp, res)
    assert mem.get("k", CHW, fp) == res
    mem.close()


# --------------------------------------------------------------------------- MACs / params


def test_count_macs_hand_computed():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=True),  # 8*8*8 out * 3*9  = 13,824
        nn.Conv2d(8, 8, 3, groups=8),  # 8*6*6 out * 1*9 = 2,592
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 5),  # 288 * 5 = 1,440
    )
    assert count_macs(model, (3, 8, 8)) == 13_824 + 2_592 + 1_440
    assert count_params(model) == (8 * 27 + 8) + (8 * 9 + 8) + (288 * 5 + 5)
    assert model.training  # mode restored


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", ["a", "b"])
def test_macs_agree_with_fvcore_and_onnx_graph(subnets, name):
    from fvcore.nn import FlopCountAnalysis

    sub = subnets[name]
    ours = count_macs(sub, CHW)
    assert all(not m._forward_hooks for m in sub.modules())  # hooks removed

    fa = FlopCountAnalysis(sub, torch.zeros(1, *CHW))
    fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = fa.by_operator()
    assert ours == by_op["conv"] + by_op["linear"]
    assert ours == onnx_macs(export_onnx(sub, (1, *CHW)))


def test_onnx_macs_accepts_path_and_proto(sub, onnx_a, tmp_path):
    path = tmp_path / "a.onnx"
    path.write_bytes(onnx_a)
    expected = count_macs(sub, CHW)
    assert onnx_macs(path) == onnx_macs(str(path)) == onnx_macs(onnx.load(str(path))) == expected


def test_macs_and_params_agree_with_thop(subnets):
    """thop 0.1.1 (thop/vision/basic_hooks.py) counts, per leaf module with a registered rule:
    Conv = out_elems * Cin/groups * kH*kW (bias ignored), Linear = in_features * out_elems,
    BatchNorm = 4 ops per input element when affine (calculate_norm = 2*numel, doubled for
    affine), ReLU/ReLU6 = 0. OFA's Hswish/Hsigmoid and SE's functional mean have no rule and
    count 0. So thop_total = our MACs + 4 * (BN input elements), and zeroing BN gives ours.
    Params are counted only for modules with a rule (a count_parameters hook rides along with
    each rule); every OFA module holding parameters (Conv2d, BatchNorm2d, Linear) has one.
    """
    thop = pytest.importorskip("thop")

    def zero_ops(m, x, y):
        m.total_ops += 0

    for sub in subnets.values():
        x = torch.zeros(1, *CHW)
        ours = count_macs(sub, CHW)

        bn_elems = 0

        def bn_hook(m, inp, out):
            nonlocal bn_elems
            bn_elems += inp[0].numel()

        handles = [m.register_forward_hook(bn_hook) for m in sub.modules() if isinstance(m, nn.BatchNorm2d)]
        with torch.no_grad():
            sub(x)
        for h in handles:
            h.remove()

        total, params = thop.profile(copy.deepcopy(sub), inputs=(x,), verbose=False)
        assert int(total) == ours + 4 * bn_elems
        zeroed, params_z = thop.profile(
            copy.deepcopy(sub), inputs=(x,), custom_ops={nn.BatchNorm2d: zero_ops}, verbose=False
        )
        assert int(zeroed) == ours
        assert int(params) == int(params_z) == count_params(sub) == sum(p.numel() for p in sub.parameters())


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="needs onnxruntime-gpu and a GPU (the GPU machine)",
)
def test_cuda_provider_measures_on_the_gpu(onnx_a):
    cfg = LatencyConfig(provider="CUDAExecutionProvider", **FAST)
    assert make_session(onnx_a, cfg).get_providers()[0] == "CUDAExecutionProvider"
    r = measure_latency(onnx_a, CHW, cfg)
    assert r.fingerprint["provider"] == "CUDAExecutionProvider" and 0 < r.p10_ms <= r.median_ms
    assert r.fingerprint != LatencyConfig(**FAST).fingerprint().as_dict()
