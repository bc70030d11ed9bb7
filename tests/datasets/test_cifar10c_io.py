"""CIFAR-10-C files: the published layout, round trips and errors."""

from __future__ import annotations

import numpy as np
import pytest

from ensemblekit.datasets import corrupt, load_cifar10c, make_cifar10c


@pytest.fixture(scope="module")
def clean():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8), np.array([3, 1, 4, 1, 5, 9])


def write_published_like(root, n=4, name="frost"):
    """A folder laid out like the published one: block s holds the value s everywhere."""
    data = np.repeat(np.arange(1, 6, dtype=np.uint8), n)[:, None, None, None]
    np.save(root / f"{name}.npy", np.broadcast_to(data, (5 * n, 32, 32, 3)).copy())
    np.save(root / "labels.npy", np.tile(np.arange(n, dtype=np.uint8), 5))


def test_reads_the_published_layout(tmp_path):
    write_published_like(tmp_path)
    for severity in range(1, 6):
        x, y = load_cifar10c(tmp_path, "frost", severity)
        assert x.shape == (4, 3, 32, 32) and x.dtype == np.uint8
        assert (x == severity).all()
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, np.arange(4))


def test_channels_are_moved_first(tmp_path):
    hwc = np.zeros((5, 32, 32, 3), dtype=np.uint8)
    hwc[..., 1] = 7  # green
    hwc[:, 0, 1, :] = 9  # row 0, column 1
    np.save(tmp_path / "fog.npy", hwc)
    np.save(tmp_path / "labels.npy", np.zeros(5, dtype=np.uint8))
    x, _ = load_cifar10c(tmp_path, "fog", 2)
    assert (x[0, 1, 1:] == 7).all() and (x[0, 0, 1:] == 0).all()
    assert (x[0, :, 0, 1] == 9).all()


def test_round_trip_and_layout(tmp_path, clean):
    images, labels = clean
    root = make_cifar10c(images, labels, tmp_path, ["contrast", "gaussian_noise"], random_state=0)
    assert root == tmp_path
    raw = np.load(tmp_path / "contrast.npy")
    assert raw.shape == (30, 32, 32, 3) and raw.dtype == np.uint8
    stored = np.load(tmp_path / "labels.npy")
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, np.tile(labels, 5))
    assert not (tmp_path / "severities.npy").exists()
    for severity in range(1, 6):
        x, y = load_cifar10c(tmp_path, "contrast", severity)
        np.testing.assert_array_equal(x, corrupt(images, "contrast", severity))
        np.testing.assert_array_equal(y, labels)
        noisy, _ = load_cifar10c(tmp_path, "gaussian_noise", severity)
        assert noisy.shape == images.shape


def test_seeded_files_are_reproducible_and_independent(tmp_path, clean):
    images, labels = clean
    a = make_cifar10c(images, labels, tmp_path / "a", ["gaussian_noise"], random_state=5)
    b = make_cifar10c(images, labels, tmp_path / "b", ["fog", "gaussian_noise"], random_state=5)
    c = make_cifar10c(images, labels, tmp_path / "c", ["gaussian_noise"], random_state=6)
    first = np.load(a / "gaussian_noise.npy")
    np.testing.assert_array_equal(first, np.load(b / "gaussian_noise.npy"))
    assert not np.array_equal(first, np.load(c / "gaussian_noise.npy"))


def test_subset_of_severities(tmp_path, clean):
    images, labels = clean
    make_cifar10c(images, labels, tmp_path, ["brightness"], severities=(5, 2))
    np.testing.assert_array_equal(np.load(tmp_path / "severities.npy"), [5, 2])
    x, _ = load_cifar10c(tmp_path, "brightness", 2)
    np.testing.assert_array_equal(x, corrupt(images, "brightness", 2))
    with pytest.raises(ValueError, match="severities"):
        load_cifar10c(tmp_path, "brightness", 1)


def test_refuses_to_mix_layouts(tmp_path, clean):
    images, labels = clean
    make_cifar10c(images, labels, tmp_path, ["contrast"])
    with pytest.raises(ValueError, match="empty folder"):
        make_cifar10c(images, labels[::-1], tmp_path, ["brightness"])
    with pytest.raises(ValueError, match="empty folder"):
        make_cifar10c(images, labels, tmp_path, ["brightness"], severities=(1,))


def test_large_labels_are_int64(tmp_path, clean):
    images, _ = clean
    make_cifar10c(images, np.arange(300, 306), tmp_path, ["contrast"], severities=(1,))
    assert np.load(tmp_path / "labels.npy").dtype == np.int64
    _, y = load_cifar10c(tmp_path, "contrast", 1)
    np.testing.assert_array_equal(y, np.arange(300, 306))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_cifar10c"):
        load_cifar10c(tmp_path / "missing", "fog", 1)
    write_published_like(tmp_path, name="fog")
    with pytest.raises(FileNotFoundError, match=r"snow\.npy") as info:
        load_cifar10c(tmp_path, "snow", 1)
    assert "fog" in str(info.value)
    with pytest.raises(ValueError, match="frost"):
        load_cifar10c(tmp_path, "frosted", 1)
    with pytest.raises(ValueError, match="severity"):
        load_cifar10c(tmp_path, "fog", 6)
    np.save(tmp_path / "labels.npy", np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels"):
        load_cifar10c(tmp_path, "fog", 1)


def test_default_root_is_under_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ENSEMBLEKIT_DATA", str(tmp_path))
    (tmp_path / "CIFAR-10-C").mkdir()
    write_published_like(tmp_path / "CIFAR-10-C")
    x, _ = load_cifar10c(None, "frost", 4)
    assert (x == 4).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": [1, 2]}, "labels"),
        ({"labels": np.zeros(6)}, "labels"),
        ({"corruptions": "fog"}, "list"),
        ({"corruptions": ["frost"]}, "not implemented"),
        ({"severities": (1, 1)}, "distinct"),
        ({"severities": (0,)}, "severity"),
        ({"random_state": -1}, "non-negative"),
        ({"random_state": 1.5}, "random_state"),
        ({"images": np.zeros((3, 32, 32), np.uint8)}, "batch"),
    ],
)
def test_make_errors(kwargs, match, tmp_path, clean):
    images, labels = clean
    args = {"images": images, "labels": labels, "root": tmp_path, "corruptions": ["fog"]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_cifar10c(**args)
