"""Shared fixtures: a tiny real supernet trained on the bundled digits data (once per session)."""

from __future__ import annotations

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
