"""Supernet training under real ``torchrun`` (2 CPU processes, gloo) against one process, and its resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from shiftnas.config import StandaloneRecipe, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.checkpoint import read_checkpoint
from shiftnas.engine.groundtruth.table import build_groundtruth
from shiftnas.engine.training.supernet import training_identity
from shiftnas.pipeline.launch import arguments_without_nproc
from shiftnas.search_spaces import get_space

TRAIN = [
    "--data",
    "digits",
    "--set",
    "data.train_size=192",
    "--set",
    "space.resolutions=[16]",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.warmup_steps=1",
    "--set",
    "train.lr=0.005",  # a small step: at 0.05, float rounding grows ~100x per step (see below)
    "--set",
    "threads=1",
]
TINY_SEARCH = ["--generations", "1", "--pop-size", "4", "--objectives", "error,macs"]


def _train(out: Path, *extra: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [sys.executable, "-m", "shiftnas", "train", "--out", str(out), *TRAIN, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(command, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _params(path: Path) -> torch.Tensor:
    state = read_checkpoint(path)["state_dict"]
    return torch.cat([v.reshape(-1).double() for k, v in state.items() if v.is_floating_point()])


def _relative_distance(a: Path, b: Path) -> float:
    x, y = _params(a), _params(b)
    return float((x - y).norm() / x.norm())


def test_nproc_is_dropped_from_the_relaunched_command_line():
    assert arguments_without_nproc(["train", "--nproc", "2", "--epochs", "1"]) == ["train", "--epochs", "1"]
    assert arguments_without_nproc(["train", "--nproc=2", "-o", "x"]) == ["train", "-o", "x"]


def test_two_torchrun_processes_train_the_weights_one_process_does(tmp_path):
    shifted = ("--set", "train.augment_shift=2")  # each image's shift is drawn for the global batch
    averaged = ("--set", "train.ema_decay=0.5")  # what is saved: rank 0's moving average of the weights
    one = _train(tmp_path / "one", "--epochs", "1", *shifted, *averaged)
    two = _train(tmp_path / "two", "--epochs", "1", "--nproc", "2", *shifted, *averaged)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert "trained by 2 processes" in two.stderr
    # 3 steps of one global batch of 64, sharded 32 + 32: equal up to float rounding, which training
    # amplifies (measured: 5e-7 after one step; after three, 1e-5 at lr 0.005 but 1e-4 at lr 0.05).
    # Without the synced BatchNorm statistics the distance is 5e-3, so this test can fail.
    distance = _relative_distance(tmp_path / "one" / "supernet.pt", tmp_path / "two" / "supernet.pt")
    assert distance < 1e-4, distance
    training = read_checkpoint(tmp_path / "two" / "supernet.pt")["training"]
    assert training["finished"] and len(training["history"]) == 1
    assert training["identity"]["config"]["augment_shift"] == 2  # the ranks trained with shifts
    assert training["weight_average"]["n_averaged"] == 3  # and averaged every step's weights


def _descendants(pid: int) -> dict[int, int]:
    """Every process below ``pid`` (from /proc) with its start time (clock ticks after boot, field 22 of
    /proc/PID/stat, read together with its parent): torchrun starts each rank in a session of its own, so
    killing torchrun's process group leaves the ranks running (and writing the checkpoint)."""
    parents, starts = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        parents[int(stat.parent.name)], starts[int(stat.parent.name)] = int(fields[1]), int(fields[19])
    found, todo = {}, [pid]
    while todo:
        current = todo.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found |= {p: starts[p] for p in children}
        todo += children
    return found


def _started(pid: int) -> int | None:
    """When ``pid`` started (as in :func:`_descendants`); None once it is gone. A pid with another start
    time is another process that reused the number."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _kill_after_an_epoch(out: Path, kill: Callable[[int], None], what: str) -> None:
    """Start ``shiftnas train --nproc 2`` (6 epochs), ``kill`` its pid once the first epoch is checkpointed,
    and check that torchrun and both ranks are gone within a minute."""
    ckpt = out / "supernet.pt"
    proc = _train(out, "--epochs", "6", "--nproc", "2", wait=False)
    below: dict[int, int] = {}  # pid -> start time
    try:
        deadline = time.time() + 500
        while time.time() < deadline and proc.poll() is None:
            if ckpt.is_file() and len(read_checkpoint(ckpt)["training"]["history"]) >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()
        below = _descendants(proc.pid)
        assert len(below) >= 3  # torchrun and its two ranks
        kill(proc.pid)
        proc.wait(timeout=60)
        deadline = time.time() + 60
        while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in below):
            time.sleep(0.1)  # the ranks (no children of ours) are gone once init has reaped them
        assert not [pid for pid in below if Path(f"/proc/{pid}").exists()], what
    finally:  # what the kill left, also processes no longer below it (re-parented when it died)
        if proc.poll() is None:  # still ours: its pid cannot have been reused
            below |= _descendants(proc.pid)
            proc.kill()
        for pid, start in below.items():
            if _started(pid) == start:  # the same process, not a reused pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        with contextlib.suppress(subprocess.TimeoutExpired):  # never hide the test's own failure
            proc.wait(timeout=60)
        proc.stderr.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux: finds the ranks through /proc")
def test_a_torchrun_training_killed_mid_way_resumes(tmp_path):
    out = tmp_path / "run"
    ckpt = out / "supernet.pt"
    # shiftnas and torchrun, mid-epoch: the ranks must end with them
    _kill_after_an_epoch(out, lambda pid: os.killpg(pid, signal.SIGKILL), "ranks outlived a killed torchrun")
    interrupted = read_checkpoint(ckpt)["training"]
    assert not interrupted["finished"] and 1 <= len(interrupted["history"]) < 6
    resumed = _train(out, "--epochs", "6", "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    history = read_checkpoint(ckpt)["training"]["history"]
    assert history[: len(interrupted["history"])] == interrupted["history"] and len(history) == 6
    straight = _train(tmp_path / "straight", "--epochs", "6", "--nproc", "2")
    assert straight.returncode == 0, straight.stderr
    assert _relative_distance(ckpt, tmp_path / "straight" / "supernet.pt") < 1e-6  # same ranks, same arithmetic


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Linux: a parent-death signal ties torchrun to shiftnas"
)
def test_killing_only_shiftnas_ends_its_torchrun_and_ranks(tmp_path):
    """``kill -9`` of the ``shiftnas`` process alone (not its group): torchrun and both ranks end with it."""
    out = tmp_path / "run"
    _kill_after_an_epoch(out, lambda pid: os.kill(pid, signal.SIGKILL), "torchrun or a rank outlived shiftnas")
    assert not read_checkpoint(out / "supernet.pt")["training"]["finished"]


def _with_sitecustomize(tmp_path: Path, code: str) -> dict[str, str]:
    """An environment whose Python processes run ``code`` first (a ``sitecustomize`` module on the path)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(code)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}


def test_a_failing_rank_ends_the_training_with_one_line_after_its_own_error(tmp_path):
    """Both ranks fail as they join their process group: their own errors, then torchrun's one line (not its
    traceback) and shiftnas's one-line error, exit status 2."""
    fail = (
        "import os\nif 'RANK' in os.environ:\n    import torch.distributed as d\n"
        "    def fail(*args, **kwargs):\n        raise RuntimeError('no process group here')\n"
        "    d.init_process_group = fail\n"
    )
    command = [sys.executable, "-m", "shiftnas", "train", "--out", str(tmp_path / "run"), *TRAIN, "--nproc", "2"]
    done = subprocess.run(command, env=_with_sitecustomize(tmp_path, fail), capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: supernet training in 2 processes (torchrun) failed with exit status 1")
    assert any(line.startswith("torchrun: rank ") and "failed first (exit code 1)" in line for line in lines)
    assert "no process group here" in done.stderr  # the rank's own error
    assert "ChildFailedError" not in done.stderr and "launcher/api.py" not in done.stderr  # not torchrun's traceback


def test_torchrun_training_on_a_machine_with_cuda_uses_gloo(tmp_path):
    """Training holds CPU tensors even where CUDA is available: a process group on NCCL could not reduce
    them. No GPU here, so every process of the training is told CUDA is available (a ``sitecustomize``)."""
    env = _with_sitecustomize(tmp_path, "import torch\ntorch.cuda.is_available = lambda: True\n")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "shiftnas", "train", "--out", str(out), *TRAIN, "--epochs", "1", "--nproc", "2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_checkpoint(out / "supernet.pt")["training"]["finished"]


def test_a_run_with_two_training_processes_trains_under_torchrun_then_searches(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "shiftnas", "run", "--out", str(out), *TRAIN, "--epochs", "1"]
    command += ["--set", "train.processes=2", "--set", "train.sync_bn=false"]
    command += TINY_SEARCH
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "training.json").read_text())["processes"] == 2
    assert json.loads((out / "summary.json").read_text())["front_size"] >= 1
    manifest = json.loads((out / "manifest.json").read_text())["command"]
    assert "run" in manifest and "train" not in manifest  # the ranks' manifest replaced by the run's
    # the weights `shiftnas train --nproc 2` trains with BatchNorm per process: the same arithmetic
    train = _train(tmp_path / "train", "--epochs", "1", "--nproc", "2", "--set", "train.sync_bn=false")
    assert train.returncode == 0, train.stderr
    assert _relative_distance(out / "supernet.pt", tmp_path / "train" / "supernet.pt") < 1e-6
    # and not those of one process (statistics over 32 images, not 64: measured ~5e-3 apart after 3 steps)
    one = _train(tmp_path / "one", "--epochs", "1")
    assert one.returncode == 0, one.stderr
    assert _relative_distance(out / "supernet.pt", tmp_path / "one" / "supernet.pt") > 1e-4
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "supernet already trained" in again.stderr


def test_landmarks_with_two_training_processes_is_a_one_line_error(tmp_path):
    space = get_space("compact-mbv3", resolutions=[16])
    data = load_dataset("digits", seed=0, image_size=16)
    rng = np.random.default_rng(0)
    archs = list({a.key(): a for a in (space.sample(rng) for _ in range(20))}.values())[:3]
    table = tmp_path / "gt.jsonl"
    build_groundtruth(space, data, archs, StandaloneRecipe(epochs=1, batch_size=256), [0], table)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "shiftnas", "run", "--out", str(out), *TRAIN, "--set", "train.processes=2"]
    command += ["--set", f"landmarks.table={table}", "--set", "landmarks.num=2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: landmark regularization does not run under torchrun")
    assert not out.exists()
    one = subprocess.run(
        [*command, "--set", "train.processes=1", "--epochs", "1", *TINY_SEARCH],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr  # the same config in one process trains with its landmarks


def test_only_per_process_batch_norm_changes_what_a_checkpoint_is_the_training_of():
    space = get_space("compact-mbv3", resolutions=[16])
    data = load_dataset("digits", seed=0, image_size=16)
    one = training_identity(space, data, TrainConfig(), 0)
    assert "processes" not in one["config"]  # checkpoints from before train.processes existed still resume
    assert training_identity(space, data, TrainConfig(processes=2), 0) == one  # synced: one process's weights
    per_process = training_identity(space, data, TrainConfig(processes=2, sync_bn=False), 0)
    assert per_process != one and per_process["config"]["processes"] == 2
    assert training_identity(space, data, TrainConfig(processes=1, sync_bn=False), 0) == one


def test_augmentation_and_init_are_part_of_what_a_checkpoint_is_the_training_of():
    space = get_space("compact-mbv3", resolutions=[16])
    data = load_dataset("digits", seed=0, image_size=16)
    plain = training_identity(space, data, TrainConfig(), 0)
    assert "augment_shift" not in plain["config"]  # checkpoints from before the setting existed still resume
    assert training_identity(space, data, TrainConfig(augment_shift=2), 0)["config"]["augment_shift"] == 2
    assert "init" not in plain["config"]
    assert training_identity(space, data, TrainConfig(init="he_fout"), 0)["config"]["init"] == "he_fout"
