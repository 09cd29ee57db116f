"""The config layer: every key typed and range-checked once, before any work; no engine import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shiftnas.config import (
    FinetuneRecipe,
    HardwareConfig,
    LatencyConfig,
    NATConfig,
    RunConfig,
    StandaloneRecipe,
    TrainConfig,
    build,
    load_config,
)
from shiftnas.errors import ConfigError


def test_importing_the_config_imports_no_torch_and_no_engine():
    code = (
        "import sys, shiftnas.config; bad = [m for m in sys.modules if m == 'torch' or m.startswith("
        "('shiftnas.engine', 'sklearn', 'scipy', 'onnxruntime'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_command_line_loads_no_torch_until_a_command_runs():
    code = "import sys, shiftnas, shiftnas.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # `shiftnas --help` answers without importing torch


def test_defaults_load_and_overrides_apply(tmp_path):
    cfg = load_config(
        None,
        [
            "search.pop_size=10",
            "data.train_size=1000",
            "space.resolutions=[20,24]",
            "search.objectives=error,macs",
            "out=2024",
        ],
    )
    assert isinstance(cfg, RunConfig) and cfg.search.pop_size == 10 and cfg.data.train_size == 1000
    assert cfg.space.resolutions == [20, 24] and cfg.search.objectives == ["error", "macs"]
    assert cfg.out == "2024"  # YAML reads a number; a string key takes it as text
    # YAML 1.1 reads on/off as booleans; a string key takes them back as words
    assert [load_config(None, [f"hardware.background={v}"]).hardware.background for v in ("on", "off", "auto")] == [
        "on",
        "off",
        "auto",
    ]
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0 and isinstance(
        load_config(None, ["train.lr=1"]).train.lr, float
    )
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\nsearch:\n  pick: max-acc\n")
    assert load_config(path).train.epochs == 3 and load_config(path, ["train.epochs=4"]).train.epochs == 4


@pytest.mark.parametrize(
    "override,message",
    [
        ("search.pop_size=0", "config key 'search.pop_size' must be >= 2, got 0"),
        ("search.generations=-1", "config key 'search.generations' must be >= 1, got -1"),
        ("train.epochs=2.7", "config key 'train.epochs' expects an integer, got 2.7"),
        ("train.epochs=true", "config key 'train.epochs' expects an integer, got True"),
        ("shift.reevaluate=maybe", "config key 'shift.reevaluate' expects true or false, got 'maybe'"),
        ("shift.reevaluate=1", "config key 'shift.reevaluate' expects true or false, got 1"),
        ("train.lr=0", "config key 'train.lr' must be > 0, got 0.0"),
        ("train.momentum=1", "config key 'train.momentum' must be < 1, got 1.0"),
        ("landmarks.batch_source=test", "config key 'landmarks.batch_source' must be one of holdout, val, train"),
        ("hardware.references=4", "config key 'hardware.references' must be <= 3, got 4"),
        ("hardware.drift=1.5", "config key 'hardware.drift' must be < 1, got 1.5"),
        ("space.resolutions=[4,28]", "config key 'space.resolutions' must be >= 8, got 4"),
        ("space.resolutions=big", "config key 'space.resolutions' expects an integer, got 'big'"),
        ("data.train_size=0", "config key 'data.train_size' must be >= 1, got 0"),
        ("nat.policy=nat3", "config key 'nat.policy' must be one of natv2, nat, got 'nat3'"),
        ("nat.policy=off", "config key 'nat.policy' must be one of natv2, nat, got 'off'"),
        ("hardware.background=sometimes", "config key 'hardware.background' must be one of auto, on, off"),
        ("train.epoch=3", "unknown config key 'train.epoch'"),
        ("train=3", "config section 'train' must be a mapping"),
        ("hardware.latency=fast", "hardware.latency must be 'measured' or 'predicted:DEVICE.json'"),
        ("search.objectives=[error]", "needs at least two objectives"),
        ("search.objectives=[error,error]", "duplicate objectives"),
        ("landmarks.rounds=2", "landmarks.rounds > 1 needs landmarks.table"),
        ("oops", "must look like section.key=value"),
    ],
)
def test_bad_values_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_nat_mode_rules():
    with pytest.raises(ConfigError, match="first objective must be 'error'"):
        load_config(None, ["search.mode=nat", "search.objectives=[macs,error]"])
    with pytest.raises(ConfigError, match="shift.reevaluate=false applies to --mode nsga2"):
        load_config(None, ["search.mode=nat", "shift.reevaluate=false"])
    resolved = NATConfig(policy="nat").resolved()
    assert (resolved.init, resolved.update, resolved.surrogate, resolved.preprocess) == (
        "genome-uniform",
        "grow",
        "rbf",
        False,
    )


def test_settings_made_directly_are_checked_too():
    with pytest.raises(ConfigError, match="'train.epochs' must be >= 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="'hardware.runs' must be >= 1"):
        LatencyConfig(runs=0)
    with pytest.raises(ConfigError, match="'recipe.patience' must be >= 1"):
        FinetuneRecipe(patience=0)
    with pytest.raises(ConfigError, match="'recipe.batch_size' must be >= 2"):
        StandaloneRecipe(batch_size=1)
    assert build(LatencyConfig, {"runs": 5}).runs == 5
    # a search's own defaults for two measurement settings keep the measurement's allowed values
    assert (HardwareConfig().references, HardwareConfig().candidate_sessions) == (0, "once")
    with pytest.raises(ConfigError, match="'hardware.references' must be <= 3"):
        HardwareConfig(references=4)
    with pytest.raises(ConfigError, match="'hardware.candidate_sessions' must be one of per_block, once"):
        HardwareConfig(candidate_sessions="always")
    with pytest.raises(ConfigError, match="unknown config key 'provder'"):
        build(LatencyConfig, {"provder": "x"})


def test_saved_config_reloads_identically(tmp_path):
    from shiftnas.config import config_text

    cfg = load_config(None, ["search.generations=3", "landmarks.num=4", "nat.policy=nat"])
    path = tmp_path / "config.yaml"
    path.write_text(config_text(cfg))
    assert load_config(path) == cfg
