"""CIFAR-10/100 loaders on folders in the official "python version" layout."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ensemblekit.datasets import _cifar, load_cifar10, load_cifar100

NAMES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def dump(path: Path, obj: dict) -> None:
    # The official files are Python 2 pickles: keys come back as bytes with
    # encoding="bytes", as they do for a dict with bytes keys written here.
    with open(path, "wb") as f:
        pickle.dump({k.encode(): v for k, v in obj.items()}, f, protocol=2)


def rows(start: int, n: int) -> np.ndarray:
    """n images whose 3072 values encode (image, position) so the layout can be read back."""
    base = np.arange(3072) % 251
    return np.stack([(base + start + i) % 256 for i in range(n)]).astype(np.uint8)


def write_cifar10(home: Path, per_batch: int = 2, n_test: int = 3) -> Path:
    folder = home / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        start = (b - 1) * per_batch
        dump(
            folder / f"data_batch_{b}",
            {
                "batch_label": b"training batch",
                "labels": [(start + i) % 10 for i in range(per_batch)],
                "data": rows(start, per_batch),
                "filenames": [b"x.png"] * per_batch,
            },
        )
    dump(
        folder / "test_batch",
        {"batch_label": b"testing", "labels": [9, 8, 7][:n_test], "data": rows(100, n_test)},
    )
    dump(
        folder / "batches.meta",
        {"label_names": [s.encode() for s in NAMES10], "num_vis": 3072},
    )
    return folder


def write_cifar100(home: Path) -> Path:
    folder = home / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n, start in (("train", 4, 0), ("test", 2, 50)):
        dump(
            folder / split,
            {
                "data": rows(start, n),
                "fine_labels": [99 - i for i in range(n)],
                "coarse_labels": [19 - i for i in range(n)],
            },
        )
    dump(
        folder / "meta",
        {
            "fine_label_names": [f"fine{i}".encode() for i in range(100)],
            "coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )
    return folder


def test_cifar10_layout_and_types(tmp_path):
    write_cifar10(tmp_path)
    data = load_cifar10(tmp_path)
    assert data.X_train.shape == (10, 3, 32, 32) and data.X_train.dtype == np.uint8
    assert data.X_test.shape == (3, 3, 32, 32)
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    np.testing.assert_array_equal(data.y_train, np.arange(10) % 10)
    np.testing.assert_array_equal(data.y_test, [9, 8, 7])
    assert list(data.classes) == NAMES10
    # Row layout: 1024 red values, then green, then blue, each plane row-major.
    raw = rows(0, 10)
    np.testing.assert_array_equal(data.X_train[:, 0, 0, :], raw[:, :32])
    np.testing.assert_array_equal(data.X_train[:, 0, 1, :], raw[:, 32:64])
    np.testing.assert_array_equal(data.X_train[:, 1, 0, :], raw[:, 1024:1056])
    np.testing.assert_array_equal(data.X_train[:, 2, 31, :], raw[:, -32:])
    # Batches are concatenated in order 1..5.
    np.testing.assert_array_equal(data.X_train.reshape(10, -1), raw)


def test_environment_variable_is_used(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    monkeypatch.setenv("ENSEMBLEKIT_DATA", str(tmp_path))
    assert load_cifar10().X_train.shape == (10, 3, 32, 32)


def test_missing_folder_explains_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "download=True" in message and "ENSEMBLEKIT_DATA" in message
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_cifar100(tmp_path)


def test_incomplete_folder(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10(tmp_path)


def test_corrupt_batch_shape(tmp_path):
    folder = write_cifar10(tmp_path)
    dump(folder / "test_batch", {"labels": [1], "data": np.zeros((1, 100), np.uint8)})
    with pytest.raises(ValueError, match="3072"):
        load_cifar10(tmp_path)


def test_cifar100_fine_and_coarse(tmp_path):
    write_cifar100(tmp_path)
    fine = load_cifar100(tmp_path)
    assert fine.X_train.shape == (4, 3, 32, 32) and fine.X_test.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(fine.y_train, [99, 98, 97, 96])
    assert len(fine.classes) == 100 and fine.classes[99] == "fine99"
    coarse = load_cifar100(tmp_path, label_mode="coarse")
    np.testing.assert_array_equal(coarse.y_test, [19, 18])
    assert len(coarse.classes) == 20
    np.testing.assert_array_equal(coarse.X_train, fine.X_train)


def test_cifar100_bad_label_mode(tmp_path):
    with pytest.raises(ValueError, match="label_mode"):
        load_cifar100(tmp_path, label_mode="superfine")


def make_archive(tmp_path: Path, writer) -> tuple[Path, str]:
    src = tmp_path / "src"
    writer(src)
    archive = tmp_path / "archive.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for child in src.iterdir():
            tar.add(child, arcname=child.name)
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_checks_md5_and_unpacks(tmp_path, monkeypatch):
    archive, md5 = make_archive(tmp_path, write_cifar10)
    fake = _cifar._Archive(archive.as_uri(), md5, "cifar-10-batches-py")
    monkeypatch.setattr(_cifar, "_CIFAR10", fake)
    home = tmp_path / "home"
    data = load_cifar10(home, download=True)
    assert data.X_train.shape == (10, 3, 32, 32)
    assert (home / "archive.tar.gz").is_file()


def test_download_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    archive, _ = make_archive(tmp_path, write_cifar100)
    fake = _cifar._Archive(archive.as_uri(), "0" * 32, "cifar-100-python")
    monkeypatch.setattr(_cifar, "_CIFAR100", fake)
    home = tmp_path / "home"
    with pytest.raises(OSError, match="md5"):
        load_cifar100(home, download=True)
    assert not (home / "cifar-100-python").exists()
    assert not list(home.glob("*.tar.gz"))  # the bad file is removed


def test_official_checksums_are_the_published_ones():
    assert _cifar._CIFAR10.md5 == "c58f30108f718f92721af3b95e74349a"
    assert _cifar._CIFAR100.md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert _cifar._CIFAR10.url.endswith("/cifar-10-python.tar.gz")


SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.skipif(
    not (SHARED / "make_cifar10.py").is_file(), reason="offline CIFAR-10 copy not available"
)
def test_full_offline_copy(tmp_path):
    subprocess.run(
        [sys.executable, str(SHARED / "make_cifar10.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    data = load_cifar10(tmp_path)
    assert data.X_train.shape == (50000, 3, 32, 32) and data.X_test.shape == (10000, 3, 32, 32)
    np.testing.assert_array_equal(data.y_train[:10], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3])
    np.testing.assert_array_equal(data.y_test[:10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1])
    assert list(data.classes) == NAMES10
    np.testing.assert_array_equal(np.bincount(data.y_train), [5000] * 10)
    means = data.X_train.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(means, [125.27, 122.93, 113.86], atol=0.01)
    # The decoded mini subset (channels last) holds the same pixels.
    mini = np.load(SHARED / "cifar10" / "cifar10-mini.npz")
    idx = mini["test_idx"]
    np.testing.assert_array_equal(data.X_test[idx], mini["x_test"].transpose(0, 3, 1, 2))
