"""Ground-truth harness: stand-alone training, the resumable table, ranking a supernet against it."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
from torch.utils.data import TensorDataset

from shiftnas.config import StandaloneRecipe
from shiftnas.data import load_dataset
from shiftnas.engine.groundtruth.ranking import rank_supernet
from shiftnas.engine.groundtruth.table import (
    CSV_COLUMNS,
    GroundTruthTable,
    build_groundtruth,
    meta_path,
    sample_architectures,
    sample_stratified,
)
from shiftnas.engine.training.standalone import train_standalone
from shiftnas.errors import ShiftnasError
from shiftnas.hardware.macs import count_macs
from shiftnas.search_spaces import Arch, get_space

RECIPE = StandaloneRecipe(epochs=5, batch_size=32, lr=0.05)
SEEDS = [0, 1]
N_TRAIN = 400


def _arch(*layers: tuple[int, int]) -> Arch:
    """Depth-1 stages (cheap to train), one layer per stage."""
    return Arch(stages=tuple((layer,) for layer in layers), resolution=16)


ARCHS = [
    _arch((3, 3), (3, 3), (3, 3), (3, 3)),
    _arch((5, 4), (3, 3), (5, 3), (3, 4)),
    _arch((3, 6), (7, 3), (3, 3), (5, 3)),
    _arch((7, 3), (3, 4), (7, 4), (3, 6)),
]


def _subset(data, n: int):
    images, labels = data.train.tensors
    return dataclasses.replace(data, train=TensorDataset(images[:n], labels[:n]))


@pytest.fixture(scope="module")
def data16():
    return _subset(load_dataset("digits", seed=0, image_size=16), N_TRAIN)


@pytest.fixture(scope="module")
def space16():
    return get_space("compact-mbv3", resolutions=[16])


@pytest.fixture(scope="module")
def table_path(space16, data16, tmp_path_factory):
    """An uninterrupted build: 4 architectures x 2 seeds."""
    path = tmp_path_factory.mktemp("gt") / "gt.jsonl"
    build_groundtruth(space16, data16, ARCHS, RECIPE, SEEDS, path)
    return path


def _content(path) -> list[tuple]:
    return [
        (r["key"], r["seed"], r["val_accuracy"], r["test_accuracy"], r["macs"], r["params"])
        for r in GroundTruthTable(path).records
    ]


def test_sample_architectures(space16):
    archs = sample_architectures(space16, 12, seed=3)
    keys = [a.key() for a in archs]
    assert len(archs) == 12 and len(set(keys)) == 12
    assert space16.smallest() in archs and space16.largest() in archs
    assert keys == [a.key() for a in sample_architectures(space16, 12, seed=3)]
    for a in archs:
        space16.validate(a)
    with pytest.raises(ShiftnasError):
        sample_architectures(space16, 1, seed=0)


def test_stratified_sample_spreads_over_macs_in_every_prefix():
    space = get_space("compact-mbv3", resolutions=[12, 16, 20, 24, 28])
    archs = sample_stratified(space, 14, seed=1)
    assert len({a.key() for a in archs}) == 14 and archs == sample_stratified(space, 14, seed=1)
    assert archs[:2] == [space.smallest(), space.largest()]
    supernet = space.build_supernet(10)
    macs = [count_macs(space.extract(supernet, a), space.input_size(a)) for a in archs[2:]]
    ranks = np.argsort(np.argsort(macs))  # 0 = the smallest pick
    assert sorted(ranks[:6]) != list(range(6)) and sorted(ranks[:6]) != list(range(6, 12))
    assert ranks[:6].min() < 4 and ranks[:6].max() > 7  # an interrupted build's first picks span the range
    assert sample_stratified(space, 2, seed=1) == [space.smallest(), space.largest()]  # the extremes alone


def test_standalone_deterministic_and_beats_chance(space16, data16, table_path):
    first = GroundTruthTable(table_path).records[0]
    again = train_standalone(space16, ARCHS[0], data16, RECIPE, seed=0)
    assert (first["key"], first["seed"]) == (ARCHS[0].key(), 0)
    assert again["val_accuracy"] == first["val_accuracy"]
    assert again["test_accuracy"] == first["test_accuracy"]
    assert again["seconds"] > 0
    assert again["test_accuracy"] > 50 and again["val_accuracy"] > 50  # chance is 10 %


def test_table_resumes_after_interrupt(space16, data16, table_path, tmp_path):
    path, archs = tmp_path / "gt.jsonl", ARCHS[:2]
    calls = []

    def stop_after_one(done: int, total: int, record: dict) -> None:
        calls.append((done, total))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_groundtruth(space16, data16, archs, RECIPE, SEEDS, path, progress=stop_after_one)
    assert len(GroundTruthTable(path).records) == 1 and calls == [(1, 4)]

    calls.clear()
    table = build_groundtruth(
        space16, data16, archs, RECIPE, SEEDS, path, progress=lambda d, t, r: calls.append((d, t))
    )
    assert calls == [(2, 4), (3, 4), (4, 4)]  # only the three missing records were trained
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 4 and len({(r["key"], r["seed"]) for r in lines}) == 4
    keys = {a.key() for a in archs}
    assert _content(path) == [c for c in _content(table_path) if c[0] in keys]  # = uninterrupted build
    assert len(table) == 2

    before = path.read_bytes()  # a complete table: a rerun trains nothing
    build_groundtruth(space16, data16, archs, RECIPE, SEEDS, path, progress=lambda *a: pytest.fail("trained"))
    assert path.read_bytes() == before


def test_truncated_last_line_is_repaired(space16, data16, table_path, tmp_path):
    path = tmp_path / "gt.jsonl"
    shutil.copy(meta_path(table_path), meta_path(path))
    lines = table_path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:20])  # crash in the middle of the last record
    build_groundtruth(space16, data16, ARCHS, RECIPE, SEEDS, path)
    assert _content(path) == _content(table_path)


def test_mismatched_metadata_is_refused(space16, data16, table_path, tmp_path):
    path = tmp_path / "gt.jsonl"
    shutil.copy(table_path, path)
    shutil.copy(meta_path(table_path), meta_path(path))
    before = path.read_bytes()
    other_recipe = dataclasses.replace(RECIPE, lr=0.1)
    other_space = get_space("compact-mbv3", resolutions=[16, 20])
    for space, data, recipe in [
        (space16, data16, other_recipe),
        (space16, _subset(data16, N_TRAIN - 50), RECIPE),
        (other_space, data16, RECIPE),
    ]:
        with pytest.raises(ShiftnasError) as err:
            build_groundtruth(space, data, ARCHS, recipe, SEEDS, path)
        assert "\n" not in str(err.value) and "different" in str(err.value)
    assert path.read_bytes() == before

    meta_path(path).unlink()  # records without metadata: refused too
    with pytest.raises(ShiftnasError, match="no metadata"):
        build_groundtruth(space16, data16, ARCHS, RECIPE, SEEDS, path)


def test_new_seeds_extend_the_table(space16, data16, table_path, tmp_path):
    path = tmp_path / "gt.jsonl"
    shutil.copy(table_path, path)
    shutil.copy(meta_path(table_path), meta_path(path))
    table = build_groundtruth(space16, data16, ARCHS[:1], RECIPE, [2], path)
    assert json.loads(meta_path(path).read_text())["seeds"] == [0, 1, 2]
    rows = {r["key"]: r for r in table.rows()}
    assert rows[ARCHS[0].key()]["n_seeds"] == 3 and rows[ARCHS[1].key()]["n_seeds"] == 2


def test_rows_aggregate_over_seeds(table_path):
    table = GroundTruthTable(table_path)
    assert table.archs() == ARCHS and table.keys() == [a.key() for a in ARCHS]
    meta = table.meta
    assert meta["seeds"] == SEEDS and meta["recipe"]["epochs"] == RECIPE.epochs
    assert meta["space"]["name"] == "compact-mbv3" and meta["data"]["name"] == "digits"
    for row in table.rows():
        recs = [r for r in table.records if r["key"] == row["key"]]
        acc = [r["test_accuracy"] for r in recs]
        assert row["n_seeds"] == 2 and row["seeds"] == SEEDS
        assert row["mean_test_accuracy"] == pytest.approx((acc[0] + acc[1]) / 2)
        assert row["std_test_accuracy"] == pytest.approx(abs(acc[0] - acc[1]) / 2)
        assert table.accuracy(row["key"]) == row["mean_test_accuracy"]
        assert row["mmacs"] == recs[0]["macs"] / 1e6 > 0 and row["params_m"] > 0
    rows = table.rows()
    assert rows[0]["mmacs"] < rows[3]["mmacs"] and rows[0]["params_m"] < rows[3]["params_m"]
    with pytest.raises(ShiftnasError):
        table.accuracy("r16-nope")


def test_csv_written(table_path, tmp_path):
    table = GroundTruthTable(table_path)
    out = table.write_csv(tmp_path / "sub" / "gt.csv")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == len(ARCHS)
    for got, want in zip(rows, table.rows()):
        assert got["key"] == want["key"]
        assert float(got["mean_test_accuracy"]) == pytest.approx(want["mean_test_accuracy"], rel=1e-5)
        assert Arch.from_dict(json.loads(got["arch"])) == want["arch"]
        assert int(got["n_seeds"]) == 2


def test_rank_supernet(trained_supernet, compact_space, digits, eval_config, table_path):
    supernet, _, _ = trained_supernet
    table = GroundTruthTable(table_path)
    landmark = ARCHS[1].key()
    result = rank_supernet(compact_space, supernet, digits, table, eval_config, exclude={landmark, "r16-absent"})
    report = result["report"]
    assert result["n"] == 3 and report["n"] == 3.0
    assert set(result["scores"]) == set(result["truth"]) == set(table.keys()) - {landmark}
    assert result["excluded"] == [landmark]
    assert -1.0 <= report["kendall_tau"] <= 1.0 and not math.isnan(report["kendall_tau"])
    assert all(0 <= s <= 100 for s in result["scores"].values())
    assert result["truth"][ARCHS[0].key()] == table.accuracy(ARCHS[0].key())
    assert np.isfinite(report["spearman_rho"])

    with pytest.raises(ShiftnasError, match="at least 2"):
        rank_supernet(compact_space, supernet, digits, table, eval_config, exclude=set(table.keys()[1:]))
    other_split = load_dataset("digits", seed=1, image_size=20)
    with pytest.raises(ShiftnasError, match="different data split"):
        rank_supernet(compact_space, supernet, other_split, table, eval_config)


def test_groundtruth_and_rank_commands(trained_supernet, tmp_path):
    import json

    from typer.testing import CliRunner

    from shiftnas.cli import app

    runner = CliRunner()
    _, ckpt, _ = trained_supernet  # compact-mbv3 at [16, 20] on digits
    table = tmp_path / "gt.jsonl"
    report = tmp_path / "rank.json"
    args = [
        "groundtruth",
        "--out",
        str(table),
        "--data",
        "digits",
        "--samples",
        "6",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--sampling",
        "uniform",
        "--set",
        "space.resolutions=[16,20]",
        "--set",
        "data.train_size=1000",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert table.with_suffix(".csv").is_file() and len(table.read_text().splitlines()) == 6
    assert runner.invoke(app, args).exit_code == 0  # resumes: nothing new to train
    assert len(table.read_text().splitlines()) == 6
    original_keys = {json.loads(line)["key"] for line in table.read_text().splitlines()}

    # a supernet trained with 3 landmarks from the table: rank leaves those 3 out
    run = tmp_path / "lm"
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            "digits",
            "--out",
            str(run),
            "--epochs",
            "1",
            "--set",
            "space.resolutions=[16,20]",
            "--set",
            "train.batch_size=128",
            "--set",
            "data.train_size=1000",
            "--set",
            "threads=1",
            "--set",
            f"landmarks.table={table}",
            "--set",
            "landmarks.num=3",
            "--set",
            "landmarks.warmup_fraction=0",
            "--set",  # a config made for a Dask search: training alone neither connects nor measures
            "hardware.dask=tcp://127.0.0.1:9",
        ],
    )
    assert result.exit_code == 0, result.output
    history = json.loads((run / "training.json").read_text())["history"]
    assert history[0]["landmark_loss"] >= 0 and history[0]["landmark_weight"] > 0
    assert len(json.loads((run / "landmarks.json").read_text())) == 3
    result = runner.invoke(
        app, ["rank", "--supernet", str(run / "supernet.pt"), "--table", str(table), "--out", str(report)]
    )
    assert result.exit_code == 0, result.output
    ranked = json.loads(report.read_text())
    assert ranked["n"] == 3 and len(ranked["excluded"]) == 3
    result = runner.invoke(app, ["rank", "--supernet", str(ckpt), "--table", str(table), "--out", str(report)])
    assert result.exit_code == 0, result.output
    assert "kendall_tau" in result.output
    assert json.loads(report.read_text())["n"] == 6
    missing = runner.invoke(app, ["rank", "--supernet", str(ckpt), "--table", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2 and "ground-truth table not found" in missing.output

    # multi-round: after epoch 1 the supernet's current best joins the landmarks (trained, appended to the table)
    rounds = [
        "train",
        "--data",
        "digits",
        "--out",
        str(tmp_path / "rounds"),
        "--epochs",
        "2",
        "--set",
        "space.resolutions=[16,20]",
        "--set",
        "train.batch_size=128",
        "--set",
        "threads=1",
        "--set",
        "data.train_size=1000",
        "--set",
        f"landmarks.table={table}",
        "--set",
        "landmarks.num=3",
        "--set",
        "landmarks.warmup_fraction=0",
        "--set",
        "landmarks.rounds=2",
        "--set",
        "landmarks.per_round=1",
        "--set",
        "landmarks.round_pop_size=4",
        "--set",
        "landmarks.round_generations=1",
    ]
    too_many = runner.invoke(app, rounds[:-8] + ["--set", "landmarks.rounds=3"])
    assert too_many.exit_code == 2 and "landmark rounds need" in too_many.output
    result = runner.invoke(app, rounds)
    assert result.exit_code == 0, result.output
    marks = json.loads((tmp_path / "rounds" / "landmarks.json").read_text())
    assert sorted(m["round"] for m in marks) == [0, 0, 0, 1]
    added = [m["key"] for m in marks if m["round"] == 1]
    trained = [k for k in added if k not in original_keys]  # a table architecture is looked up, not trained
    assert len(table.read_text().splitlines()) == 6 + len(trained)
    result = runner.invoke(
        app,
        ["rank", "--supernet", str(tmp_path / "rounds" / "supernet.pt"), "--table", str(table), "--out", str(report)],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["n"] == 6 + len(trained) - 4  # the 4 landmarks left out


def test_parallel_build_matches_the_sequential_one(space16, data16, table_path, tmp_path):
    path = tmp_path / "parallel.jsonl"
    build_groundtruth(space16, data16, ARCHS, RECIPE, SEEDS, path, workers=2)
    assert sorted(_content(path)) == sorted(_content(table_path))


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()}
    except FileNotFoundError:  # it has exited
        return set()


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_sigterm_stops_the_training_workers(tmp_path):
    """``kill`` on a parallel build is Ctrl-C: a one-line message, exit 130, and no worker left training."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "gt.jsonl"
    cmd = [sys.executable, "-m", "shiftnas", "groundtruth", "--out", str(out), "--data", "digits", "--samples", "2",
           "--seeds", "0", "--workers", "2", "--epochs", "400", "--set", "space.resolutions=[16]"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        workers = _children(proc.pid)
        assert len(workers) >= 2, proc.communicate()
        time.sleep(3)  # the workers are importing torch or training
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, stderr
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
    assert not out.exists() or all(json.loads(line) for line in out.read_text().splitlines())
