"""The command line: bad input gives one line and a non-zero exit; a tiny real end-to-end run."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from shiftnas.cli import app
from shiftnas.engine.evaluation.latency_dataset import LatencyDataset

runner = CliRunner()


def assert_one_line_error(result, needle: str) -> None:
    text = result.output.strip()
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1 and text.startswith("error:"), text
    assert needle in text, text


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "--space", "nope"], "unknown search space 'nope'"),
        (["run", "--data", "nope"], "unknown dataset 'nope'"),
        (["run", "--data", "a[/x]"], "unknown dataset 'a[/x]'"),  # printed as typed, not read as rich markup
        (["run", "--constraint", "latency=<5ms"], "malformed constraint"),
        (["run", "--objectives", "error,speed"], "unknown objective 'speed'"),
        (["run", "--pick", "best"], "unknown pick 'best'"),
        (["run", "--set", "train.epoch=3"], "unknown config key 'train.epoch'"),
        (["run", "--set", "train.epochs=many"], "config key 'train.epochs' expects an integer, got 'many'"),
        (["run", "--set", "train.epochs=2.7"], "config key 'train.epochs' expects an integer, got 2.7"),
        (["run", "--pop-size", "0"], "config key 'search.pop_size' must be >= 2, got 0"),
        (["run", "--generations", "-1"], "config key 'search.generations' must be >= 1, got -1"),
        (
            ["run", "--set", "shift.reevaluate=maybe"],
            "config key 'shift.reevaluate' expects true or false, got 'maybe'",
        ),
        (["groundtruth", "--seeds", "a,b"], "--seeds must be comma-separated integers"),
        (["run", "--config", "missing.yaml"], "config file not found"),
        (["search", "--checkpoint", "missing.pt"], "checkpoint not found"),
        (["export", "no_such_run"], "not a finished run"),
        (["profile", "missing.onnx"], "ONNX model not found"),
        (["resume", "no_such_run"], "not a shiftnas run directory"),
        (["run", "--latency", "fast"], "hardware.latency must be 'measured' or 'predicted:DEVICE.json'"),
        (["run", "--latency", "predicted:missing.json"], "latency dataset not found"),
        (["run", "--set", "hardware.latency_confidence=0.9"], "hardware.latency_confidence bounds predicted latency"),
        (["run", "--set", "hardware.latency_confidence=1.5"], "config key 'hardware.latency_confidence' must be < 1"),
        (["run", "--set", "hardware.latency_confidence=0.3"], "'hardware.latency_confidence' must be >= 0.5"),
        (
            ["search", "--space", "table:nas-bench-macro", "--set", "hardware.latency_confidence=0.9"],
            "hardware.latency_confidence applies to supernet spaces only",
        ),
        (["run", "--dask", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler at tcp://127.0.0.1:1"),
        (["profile"], "give either an ONNX model or --space"),
        (["run", "--mode", "evolve"], "unknown search mode 'evolve'; choose one of:"),
        (["run", "--mode", "nat", "--set", "nat.surrogate=forest"], "unknown surrogate 'forest'"),
        (["run", "--mode", "nat", "--objectives", "macs,error"], "first objective must be 'error'"),
        (["run", "--mode", "nat", "--set", "shift.reevaluate=false"], "shift.reevaluate=false applies to --mode nsga2"),
        (["finetune", "no_such_run"], "not a finished run"),
        (["profile", "--space", "compact-mbv3"], "--space needs --out"),
        (["profile", "m.onnx", "--plot", "m.png", "--no-nodes"], "--plot draws the per-node profile"),
        (["run", "--deploy", "int4"], "precision"),
        (["run", "--track", "wandb"], "track must be mlflow[:URI] or tensorboard[:DIR]"),
        (["profile", "--space", "nope", "--out", "d.json"], "unknown search space 'nope'"),
        (
            ["profile", "--space", "compact-mbv3", "--out", "d.json", "--references", "7"],
            "references' must be <= 3, got 7",
        ),
        (
            ["profile", "--space", "compact-mbv3", "--out", "d.json", "--provider", "CUDAExecutionProvider"],
            "CUDAExecutionProvider is not available",
        ),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(
        runner.invoke(app, args + (["--out", str(tmp_path / "run")] if args[0] in ("run", "search") else [])), needle
    )
    assert not (tmp_path / "run").exists()  # refused before any file was written


def test_bad_files_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "kept.txt").write_text("x")
    (tmp_path / "bad.yaml").write_text("train:\n  epochs: [1, 2\n")
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81")
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    for args, needle in (
        (["run", "--config", "folder"], "config folder is a folder, not a YAML file"),
        (["run", "--config", "bad.yaml"], "cannot parse bad.yaml at line 3, column 1"),
        (["search", "--checkpoint", "notes.pt", "--data", "digits"], "notes.pt: not a PyTorch checkpoint"),
        (["search", "--checkpoint", "empty.pt", "--data", "digits"], "empty.pt: not a PyTorch checkpoint"),
        (["run", "--config", "binary.yaml"], "config binary.yaml is not a text (UTF-8) file"),
        (["groundtruth", "--samples", "2", "--out", "folder"], "ground-truth table folder is a folder"),
    ):
        assert_one_line_error(runner.invoke(app, args), needle)
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_console_script_prints_no_traceback(tmp_path):
    def shiftnas(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shiftnas", *args], capture_output=True, text=True, timeout=300)

    proc = shiftnas("run", "--space", "nope", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error: unknown search space")
    # a malformed command line is one line too (not the framework's boxed usage message)
    proc = shiftnas("run", "--epochs", "abc", "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert proc.stderr.strip().startswith("error: Invalid value for '--epochs'") and len(proc.stderr.splitlines()) == 1
    proc = shiftnas("run", "--epoch", "3")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: No such option: --epoch")
    assert len(proc.stderr.splitlines()) == 1
    proc = shiftnas()  # no command: the help, on stdout, and nothing else
    assert "Usage" in proc.stdout and "Commands" in proc.stdout and proc.stderr == ""
    assert shiftnas("spaces").returncode == 0 and shiftnas("--help").returncode == 0


@pytest.mark.parametrize(
    "command", ["run", "resume", "train", "search", "export", "profile", "spaces", "finetune", "report"]
)
def test_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_spaces_lists_every_space_and_the_shipped_tables():
    result = runner.invoke(app, ["spaces"])
    assert result.exit_code == 0, result.output
    for line in ("compact-mbv3: ", "ofa-mbv3: ", "ofa-proxyless: ", "table:nas-bench-macro: 8 genes, 3969 networks"):
        assert line in result.output


def test_end_to_end_run_export_and_profile(tmp_path):
    out = tmp_path / "run"
    args = [
        "run",
        "--out",
        str(out),
        "--data",
        "digits",
        "--epochs",
        "1",
        "--generations",
        "2",
        "--pop-size",
        "6",
        "--set",
        "space.resolutions=[16,20]",
        "--set",
        "train.batch_size=128",
        "--set",
        "train.warmup_steps=3",
        "--set",
        "threads=1",
        "--set",
        "hardware.runs=5",
        "--set",
        "hardware.repeats=2",
        "--set",
        "eval.calib_size=200",
        "--track",
        f"tensorboard:{tmp_path / 'tb'}",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in (
        "config.yaml",
        "manifest.json",
        "supernet.pt",
        "training.json",
        "archive.jsonl",
        "pareto.csv",
        "pareto.json",
        "pareto.png",
        "hypervolume.json",
        "hypervolume.png",
        "latency.sqlite",
        "subnet_knee.onnx",
        "subnet_knee.pt",
        "summary.json",
        "report.html",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["picked"]["parity_max_abs_diff"] <= 1e-4
    page = (out / "report.html").read_text()
    assert summary["picked"]["key"] in page and "latency (ms)" in page
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()  # the supernet's training loss per epoch, the search's hypervolume per generation
    assert [e.step for e in events.Scalars("train/loss")] == [1]
    assert [e.step for e in events.Scalars("search/hypervolume")] == [1, 2]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["hardware"]["ort_version"] == ort.__version__
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert len(rows) == summary["front_size"] >= 1
    assert all(float(r["test_accuracy"]) >= 0 and float(r["latency_ms"]) > 0 for r in rows)
    with sqlite3.connect(out / "latency.sqlite") as db:  # a search times each candidate alone: no reference
        measured = [json.loads(result) for (result,) in db.execute("SELECT result FROM latency")]
    assert len(measured) >= len(rows) and all(m["reference"] is None and m["n_runs"] == 10 for m in measured)
    # continuing it with another protocol would mix its medians with the archive's: refused, untouched
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    again = ["search", "--checkpoint", str(out / "supernet.pt"), "--out", str(out), "--data", "digits"]
    again += ["--set", "space.resolutions=[16,20]", "--set", "hardware.references=3"]
    assert_one_line_error(
        runner.invoke(app, again), "was measured with hardware.repeats=2, hardware.runs=5, hardware.references=0"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    sess = ort.InferenceSession(str(out / "subnet_knee.onnx"), providers=["CPUExecutionProvider"])
    shape = summary["picked"]["input_shape"]
    logits = sess.run(None, {"input": np.zeros([3] + shape[1:], dtype=np.float32)})[0]
    assert logits.shape == (3, 10)

    result = runner.invoke(app, ["export", str(out), "--pick", "max-acc"])
    assert result.exit_code == 0, result.output
    assert (out / "subnet_max-acc.onnx").is_file()

    result = runner.invoke(app, ["profile", str(out / "subnet_knee.onnx"), "--runs", "5", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    assert "median ms" in result.output and "op type" in result.output and "Conv" in result.output
    assert (out / "subnet_knee.profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # profile the space on "the device" (this machine), then search with the predicted latency
    device = tmp_path / "DEVICE.json"
    profile_args = [
        "profile",
        "--space",
        "compact-mbv3",
        "--resolutions",
        "16,20",
        "--samples",
        "12",
        "--out",
        str(device),
        "--runs",
        "4",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--references",
        "2",
    ]
    result = runner.invoke(app, profile_args)
    assert result.exit_code == 0, result.output
    assert len(json.loads(device.read_text())["records"]) == 12 and "(chosen)" in result.output
    # 12 cross-validated ratios support a bound at 0.8 and 0.9 (ranks 11, 12), not at 0.95 (rank 13)
    said = " ".join(result.output.split())
    assert "0.8: x" in said and "0.9: x" in said and "0.95: needs more samples" in said
    # a second "device" from 6 samples, with the first as prior: the transfer is cross-validated too
    new_device = tmp_path / "other" / "NEW.json"
    new_device.parent.mkdir()
    new_args = [*profile_args[:6], "6", "--out", str(new_device), *profile_args[9:], "--prior", str(device)]
    result = runner.invoke(app, new_args)
    assert result.exit_code == 0, result.output
    assert json.loads(new_device.read_text())["prior"] == "../DEVICE.json" and "transfer" in result.output

    def search(name: str, *extra: str):
        """``shiftnas search`` of the trained supernet into ``tmp_path / name`` with the predicted latency."""
        args = ["search", "--checkpoint", str(out / "supernet.pt"), "--out", str(tmp_path / name)]
        args += ["--latency", f"predicted:{device}", "--generations", "1", "--pop-size", "6", "--data", "digits"]
        for setting in ("space.resolutions=[16,20]", "threads=1", "hardware.runs=5", "hardware.repeats=1"):
            args += ["--set", setting]
        for setting in ("hardware.warmup=1", "eval.calib_size=200"):  # a search times no references
            args += ["--set", setting]
        return runner.invoke(app, [*args, *extra])

    result = search("pred")
    assert result.exit_code == 0, result.output
    check = json.loads((tmp_path / "pred" / "summary.json").read_text())["latency_check"]
    assert check["checked"] and check["n"] >= 1 and check["mape"] >= 0  # same machine: the front is re-measured
    assert check["on_dataset_scale"] == check["n"]
    rows = list(csv.DictReader((tmp_path / "pred" / "pareto.csv").open()))
    assert all(float(r["latency_measured_ms"]) > 0 and float(r["latency_ms"]) > 0 for r in rows)
    # re-measured as the dataset was measured (interleaved with its 2 references), not as a search measures
    with sqlite3.connect(tmp_path / "pred" / "latency.sqlite") as db:
        remeasured = {key: json.loads(result) for key, result in db.execute("SELECT arch_key, result FROM latency")}
    assert {r["key"] for r in rows} <= set(remeasured)
    references = json.loads(device.read_text())["references"]  # and its 2 blocks of 4 runs, not this run's 1 of 5
    assert len(references) == 2 and all(m["reference"] in references and m["n_runs"] == 8 for m in remeasured.values())
    # and put on the dataset's scale: the ratio to that reference times its median latency in the dataset
    typical = LatencyDataset.load(device).typical_reference_ms()
    for member in json.loads((tmp_path / "pred" / "pareto.json").read_text())["front"]:
        m = remeasured[member["key"]]
        assert member["metrics"]["latency_measured_ms"] == pytest.approx(m["ratio"] * typical[m["reference"]])

    # the same search with `latency<=LIMIT` at 90 % confidence: the bound is the predicted latency times the
    # predictor's 0.9 quantile of measured / predicted, so the slowest first-generation architecture, feasible
    # by its prediction (LIMIT is its prediction), is not at 90 %
    archive = [json.loads(line) for line in (tmp_path / "pred" / "archive.jsonl").read_text().splitlines()]
    first = [r for r in archive if r["generation"] == min(a["generation"] for a in archive)]
    slowest = max(first, key=lambda r: r["metrics"]["latency_ms"])
    limit = slowest["metrics"]["latency_ms"]
    result = search("pred90", "--constraint", f"latency<={limit}ms", "--set", "hardware.latency_confidence=0.9")
    assert result.exit_code == 0, result.output
    archive90 = [json.loads(line) for line in (tmp_path / "pred90" / "archive.jsonl").read_text().splitlines()]
    bounds = {r["key"]: r["metrics"]["latency_bound_ms"] for r in archive90}
    assert bounds[slowest["key"]] > limit
    rows90 = list(csv.DictReader((tmp_path / "pred90" / "pareto.csv").open()))
    assert rows90 and all(float(r["latency_bound_ms"]) <= limit for r in rows90)
    assert slowest["key"] not in {r["key"] for r in rows90}
    check = json.loads((tmp_path / "pred90" / "summary.json").read_text())["latency_check"]
    assert check["confidence"] == 0.9 and 0 <= check["within_bound"] <= check["n"] == len(rows90)
    measured = [float(r["latency_measured_ms"]) for r in rows90]  # what the device said of the limit itself
    assert check["latency_limits"] == [f"latency<={limit}ms"]
    assert check["within_limits"] == sum(ms <= limit for ms in measured)
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "measured under their latency at confidence 0.9" in said
    assert f"{check['within_limits']} of {check['n']} measured within latency<=" in said
    # continuing that search without the confidence would reuse its bounds as predictions: refused, untouched
    before = {p.name: p.read_bytes() for p in (tmp_path / "pred90").iterdir() if p.is_file()}
    assert_one_line_error(search("pred90"), "was searched with hardware.latency_confidence=0.9")
    assert {p.name: p.read_bytes() for p in (tmp_path / "pred90").iterdir() if p.is_file()} == before
    # continuing with the same dataset is a replay; after the device was profiled again at the same path (here: one
    # record fewer) the archive's predictions came from another predictor: refused, untouched; also for a run
    # predicted from a dataset that names it as its prior
    result = search("pred")
    assert result.exit_code == 0, result.output
    moved = tmp_path / "moved" / "DEVICE.json"  # the same dataset at another path: the same predictions
    moved.parent.mkdir()
    moved.write_bytes(device.read_bytes())
    result = search("pred", "--latency", f"predicted:{moved}")
    assert result.exit_code == 0, result.output
    result = search("transfer", "--latency", f"predicted:{new_device}")
    assert result.exit_code == 0, result.output
    orphan = tmp_path / "orphan" / "deeper" / "NEW.json"  # moved without the prior it names (../DEVICE.json)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(new_device.read_bytes())
    assert_one_line_error(search("transfer", "--latency", f"predicted:{orphan}"), "latency dataset not found")
    profiled = json.loads(device.read_text())
    profiled["records"] = profiled["records"][:-1]
    device.write_text(json.dumps(profiled))
    for name, dataset in (("pred", device), ("transfer", new_device)):
        before = {p.name: p.read_bytes() for p in (tmp_path / name).iterdir() if p.is_file()}
        refused = search(name, "--latency", f"predicted:{dataset}")
        assert_one_line_error(refused, f"{dataset} (or the prior it names) is not the latency dataset")
        assert {p.name: p.read_bytes() for p in (tmp_path / name).iterdir() if p.is_file()} == before

    # a command that fails touches no file of the run it is aimed at (here: a checkpoint of another space)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    failed = runner.invoke(
        app,
        [
            "search",
            "--checkpoint",
            str(out / "supernet.pt"),
            "--out",
            str(out),
            "--space",
            "ofa-mbv3",
            "--data",
            "digits",
            "--set",
            "hardware.runs=5",  # the run's own measurement protocol: what fails is the checkpoint
            "--set",
            "hardware.repeats=2",
        ],
    )
    assert_one_line_error(failed, "checkpoint does not match the search space's supernet")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    # re-running the finished command (or `resume`) is a no-op replay: nothing is retrained or re-evaluated,
    # and a torn last line (a crash mid-append) is cut instead of having the next record appended onto it
    archive_lines = (out / "archive.jsonl").read_text().count("\n")
    with (out / "archive.jsonl").open("a") as f:
        f.write('{"key": "r16-k3')
    for again in (args, ["resume", str(out)]):
        result = runner.invoke(app, again)
        assert result.exit_code == 0, result.output
        assert "already trained" in result.output
        assert (out / "archive.jsonl").read_text().count("\n") == archive_lines
        assert all(json.loads(line) for line in (out / "archive.jsonl").read_text().splitlines())  # torn line cut
    assert json.loads((out / "summary.json").read_text())["picked"]["key"] == summary["picked"]["key"]


def test_nat_mode_then_finetune(tmp_path):
    out = tmp_path / "nat"
    args = [
        "run",
        "--mode",
        "nat",
        "--out",
        str(out),
        "--data",
        "digits",
        "--epochs",
        "1",
        "--objectives",
        "error,macs",
        "--pick",
        "trade-off",
        "--set",
        "space.resolutions=[16,20]",
        "--set",
        "train.batch_size=128",
        "--set",
        "train.warmup_steps=3",
        "--set",
        "threads=1",
        "--set",
        "eval.calib_size=200",
        "--set",
        "nat.archive_size=8",
        "--set",
        "nat.oversample=2",
        "--set",
        "nat.candidates=3",
        "--set",
        "nat.iterations=2",
        "--set",
        "nat.aux_pop_size=10",
        "--set",
        "nat.aux_generations=3",
        "--set",
        "nat.adapt_steps=2",
        "--set",
        "nat.top_n=4",
        "--shift",
        "per_iteration",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("nat_state.json", "nat_supernet.pt", "pareto.csv", "hypervolume.json", "subnet_trade-off.onnx"):
        assert (out / name).is_file(), name
    history = json.loads((out / "hypervolume.json").read_text())
    assert [h["iteration"] for h in history] == [0, 1, 2] and history[1]["surrogate"]["name"] == "lgbm"
    assert history[-1]["supernet_version"] == 4  # every iteration: one shifting update, one adaptation
    assert (out / "supernet_v3.pt").is_file()  # the shifting update's checkpoint
    summary = json.loads((out / "summary.json").read_text())
    assert summary["picked"]["parity_max_abs_diff"] <= 1e-4

    result = runner.invoke(app, ["finetune", str(out), "--pick", "knee", "--max-epochs", "2", "--patience", "1"])
    assert result.exit_code == 0, result.output
    done = json.loads((out / "finetune.json").read_text())["subnets"]
    assert len(done) == 1 and done[0]["parity_max_abs_diff"] <= 1e-4
    assert 0 <= done[0]["test_accuracy_after"] <= 100 and done[0]["best_epoch"] <= 2
    # the run had no latency objective: finetune measures the subnet with the run's ONNX Runtime settings
    assert done[0]["latency_ms"] > 0 and done[0]["latency_source"] == "measured by finetune"
    assert (out / f"finetuned_{done[0]['key']}.onnx").is_file() and "fine-tuned subnets" in result.output
    page = (out / "report.html").read_text()  # the report gains the fine-tuning results
    assert "Fine-tuned subnets" in page and f"{done[0]['test_accuracy_after']:.2f}" in page
    # re-running does not fine-tune again
    mtime = (out / "finetune.json").stat().st_mtime_ns
    assert (
        runner.invoke(app, ["finetune", str(out), "--pick", "knee", "--max-epochs", "2", "--patience", "1"]).exit_code
        == 0
    )
    assert (out / "finetune.json").stat().st_mtime_ns == mtime
    assert_one_line_error(runner.invoke(app, ["finetune", str(out), "--pick", "nope"]), "neither front")


def test_run_on_fashion_mnist_and_a_missing_copy_is_one_line(tmp_path, no_debian_copy, write_fashion):
    root = tmp_path / "fashion"
    write_fashion(root / "FashionMNIST" / "raw", per_class=30, test_per_class=3)  # the real IDX format
    common = [
        "--data",
        "fashion-mnist",
        "--epochs",
        "1",
        "--generations",
        "1",
        "--pop-size",
        "4",
        "--objectives",
        "error,macs",
        "--set",
        "data.train_size=200",
        "--set",
        "space.resolutions=[16,20]",
        "--set",
        "threads=1",
        "--set",
        "eval.calib_size=64",
        "--set",
        "train.batch_size=64",
    ]
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--out", str(out), "--set", f"data.root={root}", *common])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"] == "fashion-mnist: 200 train / 30 val / 30 test / 70 held out, 10 classes, 28 px"
    assert json.loads((out / "summary.json").read_text())["front_size"] >= 1
    missing = tmp_path / "elsewhere"
    bad = runner.invoke(app, ["run", "--out", str(tmp_path / "bad"), "--set", f"data.root={missing}", *common])
    assert_one_line_error(bad, "Fashion-MNIST not found")
    assert "apt-get install dataset-fashion-mnist" in bad.output and "--set data.download=true" in bad.output
    assert not (tmp_path / "bad").exists()  # a command that fails makes no run directory


def test_progress_bars_print_what_they_are_given_as_plain_text(capsys):
    """A description or an info field with brackets (a key, a path a user typed) is text, not rich markup."""
    from shiftnas.pipeline.progress import progress_bar, stderr_console

    with progress_bar("train p[/z]", 2, stderr_console()) as update:
        update(1, info="a[/x]")
    assert "a[/x]" in capsys.readouterr().err
