"""CIFAR-10 and CIFAR-100 from the official "python version" archives."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.utils import Bunch

from ._home import ENV_VAR, get_data_home

__all__ = ["load_cifar10", "load_cifar100"]


@dataclass(frozen=True)
class _Archive:
    url: str
    md5: str
    folder: str


_CIFAR10 = _Archive(
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    folder="cifar-10-batches-py",
)
_CIFAR100 = _Archive(
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    folder="cifar-100-python",
)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_archive(archive: _Archive, data_home: Path) -> None:
    """Download ``archive`` into ``data_home``, check its md5 and unpack it there.

    A previously downloaded archive with the right checksum is reused. An archive with a
    wrong checksum is deleted and an ``OSError`` raised before anything is unpacked.
    """
    data_home.mkdir(parents=True, exist_ok=True)
    path = data_home / archive.url.rsplit("/", 1)[-1]
    if not path.exists() or _md5(path) != archive.md5:
        fd, tmp = tempfile.mkstemp(dir=data_home, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(archive.url) as response:
                shutil.copyfileobj(response, out)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    checksum = _md5(path)
    if checksum != archive.md5:
        path.unlink()
        raise OSError(
            f"The file downloaded from {archive.url} has md5 {checksum}, expected "
            f"{archive.md5}; it was deleted. Try again, or download it by hand into "
            f"{data_home} and unpack it there."
        )
    with tarfile.open(path, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(data_home, filter="data")
        else:  # Python < 3.10.12 / 3.11.4: check member paths ourselves.
            root = data_home.resolve()
            for member in tar.getmembers():
                target = (data_home / member.name).resolve()
                if root not in target.parents and target != root:
                    raise OSError(f"Refusing to extract {member.name!r} outside {data_home}.")
            tar.extractall(data_home)


def _locate(archive: _Archive, data_home: Any, download: bool, name: str) -> Path:
    home = get_data_home(data_home)
    folder = home / archive.folder
    if not folder.is_dir():
        if download:
            _fetch_archive(archive, home)
        else:
            raise FileNotFoundError(
                f"{name} not found: no folder {folder}. Call the loader with download=True "
                f"to fetch it from {archive.url} (md5 {archive.md5}), or unpack that archive "
                f"into a folder and pass it as data_home or set the {ENV_VAR} environment "
                "variable to it."
            )
    return folder


def _unpickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"Missing file {path}; the folder {path.parent} is incomplete. Delete it and load "
            "again with download=True, or unpack the official archive there again."
        )
    # The official files are Python 2 pickles; "bytes" keeps their byte-string keys and
    # arrays intact, which are decoded below.
    with open(path, "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    return {k.decode("ascii") if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _images(batch: dict[str, Any], path: Path) -> np.ndarray:
    data = np.asarray(batch["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path} holds data of shape {data.shape}, expected (N, 3072).")
    # Each row is the red plane, then green, then blue, each 32x32 in row-major order.
    return data.reshape(-1, 3, 32, 32)


def _labels(batch: dict[str, Any], key: str, n: int, path: Path) -> np.ndarray:
    labels = np.asarray(batch[key], dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"{path} has {labels.shape[0]} {key} for {n} images.")
    return labels


def _names(meta: dict[str, Any], key: str) -> np.ndarray:
    return np.array([s.decode() if isinstance(s, bytes) else str(s) for s in meta[key]])


def load_cifar10(data_home: str | os.PathLike[str] | None = None, download: bool = False) -> Bunch:
    """Load CIFAR-10 from the official "python version" layout.

    Reads ``<data_home>/cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``,
    ``test_batch``, ``batches.meta``), as unpacked from ``cifar-10-python.tar.gz``.

    Parameters
    ----------
    data_home : str or os.PathLike, default=None
        Folder holding ``cifar-10-batches-py/``; see :func:`get_data_home`.
    download : bool, default=False
        If the folder is missing, fetch the official archive
        (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, 163 MiB), check its md5
        and unpack it into ``data_home``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``X_train`` (uint8, ``(50000, 3, 32, 32)``), ``y_train`` (int64, ``(50000,)``),
        ``X_test`` (uint8, ``(10000, 3, 32, 32)``), ``y_test`` (int64) and ``classes``
        (the 10 class names; label ``k`` is ``classes[k]``). Images are RGB, channels first,
        in the official order.

    Raises
    ------
    FileNotFoundError
        If the folder is missing and ``download`` is False; the message says where it
        looked and how to get the data.

    Notes
    -----
    The files are pickles: only load copies from a source you trust.

    Examples
    --------
    >>> data = load_cifar10()  # doctest: +SKIP
    >>> data.X_train.shape, data.classes[data.y_train[0]]  # doctest: +SKIP
    ((50000, 3, 32, 32), 'frog')

    A missing folder says what to do:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as empty:
    ...     try:
    ...         load_cifar10(empty)
    ...     except FileNotFoundError as err:
    ...         print("download=True" in str(err))
    True
    """
    folder = _locate(_CIFAR10, data_home, download, "CIFAR-10")
    splits = {}
    for split, files in [
        ("train", [f"data_batch_{i}" for i in range(1, 6)]),
        ("test", ["test_batch"]),
    ]:
        xs, ys = [], []
        for name in files:
            path = folder / name
            batch = _unpickle(path)
            x = _images(batch, path)
            xs.append(x)
            ys.append(_labels(batch, "labels", len(x), path))
        splits[split] = (np.concatenate(xs), np.concatenate(ys))
    meta = _unpickle(folder / "batches.meta")
    return Bunch(
        X_train=splits["train"][0],
        y_train=splits["train"][1],
        X_test=splits["test"][0],
        y_test=splits["test"][1],
        classes=_names(meta, "label_names"),
    )


def load_cifar100(
    data_home: str | os.PathLike[str] | None = None,
    download: bool = False,
    label_mode: Literal["fine", "coarse"] = "fine",
) -> Bunch:
    """Load CIFAR-100 from the official "python version" layout.

    Reads ``<data_home>/cifar-100-python/`` (``train``, ``test``, ``meta``), as unpacked from
    ``cifar-100-python.tar.gz``.

    Parameters
    ----------
    data_home : str or os.PathLike, default=None
        Folder holding ``cifar-100-python/``; see :func:`get_data_home`.
    download : bool, default=False
        If the folder is missing, fetch the official archive
        (https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz, 161 MiB), check its md5
        and unpack it into ``data_home``.
    label_mode : {"fine", "coarse"}, default="fine"
        The 100 fine classes or the 20 coarse superclasses.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``X_train`` (uint8, ``(50000, 3, 32, 32)``), ``y_train`` (int64), ``X_test`` (uint8,
        ``(10000, 3, 32, 32)``), ``y_test`` (int64) and ``classes`` (100 or 20 names).

    Raises
    ------
    ValueError
        If ``label_mode`` is not "fine" or "coarse".
    FileNotFoundError
        If the folder is missing and ``download`` is False.

    Examples
    --------
    >>> load_cifar100(label_mode="medium")
    Traceback (most recent call last):
    ...
    ValueError: label_mode must be 'fine' or 'coarse', got 'medium'.
    """
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}.")
    folder = _locate(_CIFAR100, data_home, download, "CIFAR-100")
    out: dict[str, Any] = {}
    for split in ("train", "test"):
        path = folder / split
        batch = _unpickle(path)
        x = _images(batch, path)
        out[f"X_{split}"] = x
        out[f"y_{split}"] = _labels(batch, f"{label_mode}_labels", len(x), path)
    out["classes"] = _names(_unpickle(folder / "meta"), f"{label_mode}_label_names")
    return Bunch(**out)
