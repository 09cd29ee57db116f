"""Shared fixtures: a tiny real supernet trained on the bundled digits data (once per session), and a tiny
Fashion-MNIST written in its real file format."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from shiftnas.config import EvalConfig, TrainConfig
from shiftnas.data import load_dataset
from shiftnas.engine.training.supernet import train_supernet
from shiftnas.search_spaces import get_space


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    # Two intra-op threads on a 2-core machine that is busy with something else are far slower
    # than one (helper measurement: up to 70x); tests use one.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _one_thread_again():
    # a command run in-process sets its configured thread count (e.g. threads: 2); the next test starts at one,
    # so no result depends on which tests ran before it in the same process
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits", seed=0, image_size=20)


@pytest.fixture(scope="session")
def compact_space():
    return get_space("compact-mbv3", resolutions=[16, 20])


@pytest.fixture(scope="session")
def tiny_train_config():
    return TrainConfig(epochs=3, batch_size=32, lr=0.1, warmup_steps=10, n_random=1)


@pytest.fixture(scope="session")
def trained_supernet(compact_space, digits, tiny_train_config, tmp_path_factory):
    """A compact supernet trained for three short epochs on digits (real data, real training)."""
    torch.manual_seed(0)
    net = compact_space.build_supernet(digits.num_classes)
    ckpt = tmp_path_factory.mktemp("supernet") / "supernet.pt"
    history = train_supernet(compact_space, net, digits, tiny_train_config, ckpt, seed=0)
    net.eval()
    return net, ckpt, history


@pytest.fixture
def eval_config():
    return EvalConfig(calib_size=256, batch_size=256)


# --- Fashion-MNIST in its real on-disk format (the four IDX files) -------------------------------------


def _idx(array: np.ndarray) -> bytes:
    """``array`` (uint8, 1-D labels or N×H×W images) in the IDX format: magic, dimensions, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fashion(folder: Path, per_class: int = 20, test_per_class: int = 3, gz: bool = False) -> dict:
    """A tiny Fashion-MNIST (10 classes) as the four official IDX files, optionally gzipped."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", 10 * per_class), ("t10k", 10 * test_per_class)):
        arrays[prefix] = (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.permutation(np.arange(n) % 10))
        for kind, array in zip(("images-idx3-ubyte", "labels-idx1-ubyte"), arrays[prefix]):
            data = _idx(array)
            name = f"{prefix}-{kind}"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return arrays


@pytest.fixture
def write_fashion():
    """``write_fashion(folder, per_class=20, test_per_class=3, gz=False)`` writes a tiny real-format set."""
    return _write_fashion


@pytest.fixture
def no_debian_copy(tmp_path, monkeypatch) -> Path:
    """Point the Debian location at an empty folder, as on a machine without the package."""
    from shiftnas.data import fashion

    empty = tmp_path / "no-debian"
    monkeypatch.setattr(fashion, "DEBIAN_DIR", empty)
    monkeypatch.setattr(fashion, "DEFAULT_ROOT", str(tmp_path / "cache"))
    return empty
