"""INT8 deployment: real ONNX Runtime static quantization of real trained subnets, scored and timed in ORT."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from shiftnas.cli import app
from shiftnas.config import LatencyConfig
from shiftnas.engine.evaluation.subnet import SubnetEvaluator
from shiftnas.engine.tensors import resize
from shiftnas.hardware import LatencyCache, LatencyProfiler, export_onnx, hardware_fingerprint
from shiftnas.hardware.quantize import deployed_onnx, onnx_accuracy

QUICK = dict(warmup=2, repeats=1, runs=5, references=0)


@pytest.fixture(scope="module")
def largest(compact_space):
    return compact_space.largest()


def _ops(onnx_bytes: bytes) -> set[str]:
    return {n.op_type for n in onnx.load_from_string(onnx_bytes).graph.node}


def test_int8_subnet_is_quantized_and_keeps_its_accuracy(trained_supernet, compact_space, digits, eval_config, largest):
    net, _, _ = trained_supernet
    fp32_eval = SubnetEvaluator(compact_space, net, digits, eval_config)
    int8_eval = SubnetEvaluator(compact_space, net, digits, eval_config, precision="int8")
    int8 = int8_eval.deployed(largest)
    fp32 = export_onnx(fp32_eval.subnet(largest), (1, *compact_space.input_size(largest)))
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(int8) and "QuantizeLinear" not in _ops(fp32)
    assert len(int8) < 0.5 * len(fp32)  # int8 weights
    acc_fp32 = fp32_eval.score(largest).accuracy
    acc_int8 = int8_eval.score(largest).accuracy
    images, labels = digits.val.tensors
    assert acc_int8 == onnx_accuracy(int8, resize(images, largest.resolution), labels)  # what ORT really scores
    assert acc_int8 > 50 and abs(acc_fp32 - acc_int8) < 5  # 10 classes: far above chance, near FP32
    again = SubnetEvaluator(compact_space, net, digits, eval_config, precision="int8")
    assert again.score(largest).accuracy == acc_int8  # deterministic on the CPU


def test_int8_latency_is_cached_apart_from_fp32_and_fp32_keys_did_not_change(trained_supernet, compact_space, largest):
    net, _, _ = trained_supernet
    model, chw = compact_space.extract(net, largest), tuple(compact_space.input_size(largest))
    cache = LatencyCache()
    fp32 = LatencyProfiler(LatencyConfig(**QUICK), cache=cache)
    int8 = LatencyProfiler(LatencyConfig(**QUICK, precision="int8"), cache=cache)
    a, b = fp32.profile(largest.key(), model, chw), int8.profile(largest.key(), model, chw)
    assert len(cache) == 2 and a.median_ms > 0 and b.median_ms > 0 and b.fingerprint["precision"] == "int8"
    assert int8.profile(largest.key(), model, chw) is not None and int8.n_measured == 1  # a cache hit
    fp = hardware_fingerprint()
    legacy = {k: v for k, v in fp.as_dict().items() if k != "precision"}
    blob = json.dumps(legacy, sort_keys=True, separators=(",", ":")).encode()
    assert fp.key() == hashlib.sha256(blob).hexdigest()[:16]  # caches and datasets written before INT8 stay valid
    assert hardware_fingerprint(precision="int8").key() != fp.key()


def test_deployed_onnx_refuses_an_unknown_precision(trained_supernet, compact_space, largest):
    net, _, _ = trained_supernet
    with pytest.raises(ValueError, match="precision"):
        deployed_onnx(compact_space.extract(net, largest), (1, *compact_space.input_size(largest)), "int4")


def test_profile_deploy_int8_and_bad_precision_is_one_line(trained_supernet, compact_space, tmp_path):
    net, _, _ = trained_supernet
    arch = compact_space.smallest()
    path = tmp_path / "small.onnx"
    export_onnx(compact_space.extract(net, arch), (1, *compact_space.input_size(arch)), path)
    runner = CliRunner()
    args = ["profile", str(path), "--deploy", "int8", "--runs", "5", "--repeats", "1", "--no-nodes"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "int8" in result.output
    result = runner.invoke(app, ["profile", str(path), "--deploy", "int4", "--no-nodes"])
    assert result.exit_code != 0 and "precision" in result.output and "Traceback" not in result.output


def test_random_calibration_is_seeded():
    from shiftnas.hardware.quantize import random_calibration

    assert np.array_equal(random_calibration((1, 8, 8)), random_calibration((1, 8, 8)))


def test_a_run_deployed_int8_scores_and_exports_int8_subnets(tmp_path):
    out = tmp_path / "int8"
    args = ["run", "--out", str(out), "--data", "digits", "--epochs", "1", "--generations", "2", "--pop-size", "4"]
    args += ["--objectives", "error,latency", "--deploy", "int8", "--set", "space.resolutions=[16,20]"]
    args += ["--set", "train.batch_size=128", "--set", "threads=1", "--set", "eval.calib_size=128"]
    args += ["--set", "hardware.runs=5", "--set", "hardware.repeats=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    picked = summary["picked"]
    assert picked["precision"] == "int8" and "parity_max_abs_diff" not in picked
    assert abs(picked["accuracy_drop"] - (picked["val_accuracy_fp32"] - picked["val_accuracy_int8"])) < 1e-9
    assert picked["metrics"]["accuracy"] == picked["val_accuracy_int8"]  # the search scored the INT8 model
    assert "QuantizeLinear" in _ops((out / "subnet_knee.onnx").read_bytes())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["hardware"]["precision"] == "int8"
    # the same run exported in FP32: the parity path
    result = CliRunner().invoke(app, ["export", str(out), "--deploy", "fp32", "--out", str(tmp_path / "f.onnx")])
    assert result.exit_code == 0, result.output
    assert "parity" in result.output and "QuantizeLinear" not in _ops((tmp_path / "f.onnx").read_bytes())
