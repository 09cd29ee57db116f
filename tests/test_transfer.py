"""Transfer to a new data set: the classifier is reset and trained through the shifting search."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from shiftnas.cli import app
from shiftnas.config import load_config
from shiftnas.engine.checkpoint import read_checkpoint
from shiftnas.errors import ShiftnasError
from shiftnas.pipeline.context import check_classifier_trains

runner = CliRunner()


@pytest.mark.parametrize("train", ["classifier", "all"])
def test_transfer_resets_and_trains_the_classifier(trained_supernet, tmp_path, train):
    _, ckpt, _ = trained_supernet  # trained on digits; transferred to mnist5k
    out = tmp_path / "transfer"
    result = runner.invoke(
        app,
        [
            "transfer",
            "--supernet",
            str(ckpt),
            "--data",
            "mnist5k",
            "--out",
            str(out),
            "--train",
            train,
            "--generations",
            "2",
            "--pop-size",
            "4",
            "--objectives",
            "error,macs",
            "--set",
            "threads=1",
            "--set",
            "eval.calib_size=100",
            "--set",
            "shift.steps=3",
        ],
    )
    assert result.exit_code == 0, result.output
    source = read_checkpoint(ckpt)["state_dict"]
    shifted = read_checkpoint(out / "supernet_v1.pt")["state_dict"]
    assert not torch.equal(source["classifier.linear.weight"], shifted["classifier.linear.weight"])
    params = [k for k in source if not k.startswith("classifier.") and "running" not in k and "num_batches" not in k]
    backbone_same = all(torch.equal(source[k], shifted[k]) for k in params)
    assert backbone_same == (train == "classifier")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["picked"]["metrics"]["accuracy"] > 10.0  # the new head learned something
    config = (out / "config.yaml").read_text()
    assert "reset_classifier: true" in config and "compact-mbv3" in config


def test_transfer_needs_an_existing_supernet(tmp_path):
    result = runner.invoke(
        app, ["transfer", "--supernet", str(tmp_path / "none.pt"), "--data", "digits", "--out", str(tmp_path / "t")]
    )
    assert result.exit_code == 2 and result.output.strip().startswith("error: checkpoint not found")


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--generations", "1"], "--shift per_iteration trains it between generations"),
        (["--shift", "none"], "--shift none never trains it"),
    ],
)
def test_a_transfer_that_would_never_train_the_classifier_is_refused(trained_supernet, tmp_path, extra, needle):
    _, ckpt, _ = trained_supernet
    args = ["transfer", "--supernet", str(ckpt), "--data", "digits", "--out", str(tmp_path / "t"), *extra]
    result = runner.invoke(app, args)
    text = result.output.strip()
    assert result.exit_code == 2 and len(text.splitlines()) == 1 and text.startswith("error:") and needle in text, text
    assert not (tmp_path / "t").exists()


def test_nat_transfers_train_the_classifier_by_adapting_the_supernet():
    """NAT adapts the supernet every iteration (nat.adapt_steps), so its transfers train the new head without a
    shift strategy; only with no adaptation either is one refused. NSGA-II's per_candidate trains from the first."""
    nat = ["search.mode=nat", "shift.strategy=none"]
    check_classifier_trains(load_config(None, nat))
    with pytest.raises(ShiftnasError, match="nat.adapt_steps=0 the search never trains it"):
        check_classifier_trains(load_config(None, [*nat, "nat.adapt_steps=0"]))
    check_classifier_trains(load_config(None, ["shift.strategy=per_candidate", "search.generations=1"]))
    with pytest.raises(ShiftnasError, match="needs --generations >= 2, got 1"):
        check_classifier_trains(load_config(None, ["shift.strategy=region", "search.generations=1"]))


@pytest.mark.parametrize(
    "command,extra,needle",
    [
        ("search", [], "--shift none never trains it"),  # a search's default shift strategy is none
        ("run", [], "--shift none never trains it"),
        ("search", ["--shift", "region", "--generations", "1"], "needs --generations >= 2, got 1"),
    ],
)
def test_a_search_that_resets_the_classifier_and_never_trains_it_is_refused(
    trained_supernet, tmp_path, command, extra, needle
):
    _, ckpt, _ = trained_supernet
    args = [command, "--checkpoint", str(ckpt), "--data", "digits", "--out", str(tmp_path / "s")]
    result = runner.invoke(app, [*args, "--set", "reset_classifier=true", *extra])
    text = result.output.strip()
    assert result.exit_code == 2 and len(text.splitlines()) == 1 and text.startswith("error:") and needle in text, text
    assert not (tmp_path / "s").exists()


def test_a_search_on_data_with_another_number_of_classes_that_never_trains_the_classifier_is_refused(
    trained_supernet, tmp_path
):
    """A checkpoint's classifier of another size is left freshly initialised: a search that never trains it would
    score chance accuracy. Refused before the run directory is made, like a transfer with --shift none."""
    from PIL import Image

    _, ckpt, _ = trained_supernet  # 10 classes (digits)
    for c, name in enumerate(("cat", "dog", "owl")):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (12, 12), (20 * i, 80 * c, 7)).save(tmp_path / "images" / name / f"{i}.png")
    args = ["search", "--checkpoint", str(ckpt), "--data", f"imagefolder:{tmp_path / 'images'}"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "s")])
    text = result.output.strip()
    assert result.exit_code == 2 and len(text.splitlines()) == 1 and text.startswith("error:"), text
    assert "another number of classes" in text and "--shift none never trains it" in text
    assert not (tmp_path / "s").exists()
