"""Read and write CIFAR-10-C in its published file layout."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ._corruptions import CORRUPTIONS, _check_corruption, _check_images, _check_severity, corrupt
from ._home import get_data_home

__all__ = ["load_cifar10c", "make_cifar10c"]

#: The 19 corruption files of the published CIFAR-10-C, in its order.
PUBLISHED_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "saturate",
)

_ALL_SEVERITIES = (1, 2, 3, 4, 5)
_SEVERITIES_FILE = "severities.npy"
_CHUNK = 1000  # images corrupted at once; fixed so that a seed gives the same files


def _root(root: str | os.PathLike[str] | None) -> Path:
    return get_data_home() / "CIFAR-10-C" if root is None else Path(root).expanduser()


def _stored_severities(root: Path) -> tuple[int, ...]:
    path = root / _SEVERITIES_FILE
    if path.is_file():
        return tuple(int(s) for s in np.load(path))
    return _ALL_SEVERITIES


def load_cifar10c(
    root: str | os.PathLike[str] | None, corruption: str, severity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Load one corruption at one severity of CIFAR-10-C.

    Reads the published layout: a folder with ``<corruption>.npy`` of shape
    ``(5 * N, 32, 32, 3)`` uint8 (channels last; severity 1's N images first, then severity
    2's, ..., each block in CIFAR-10 test order; N = 10,000 for the published data) and
    ``labels.npy`` of shape ``(5 * N,)``. Folders written by :func:`make_cifar10c` with
    fewer severities also hold ``severities.npy`` naming the blocks, in order.

    Parameters
    ----------
    root : str, os.PathLike or None
        The folder (``CIFAR-10-C/`` of the published ``CIFAR-10-C.tar``); None means
        ``get_data_home() / "CIFAR-10-C"``.
    corruption : str
        One of the 19 published corruption names (``frost`` included).
    severity : int
        1 to 5.

    Returns
    -------
    images : ndarray of uint8, shape (N, 3, 32, 32)
        Channels first, as :func:`load_cifar10` returns images.
    labels : ndarray of int64, shape (N,)
        The class of each image.

    Raises
    ------
    ValueError
        For an unknown corruption name, a severity outside 1..5 or inconsistent files.
    FileNotFoundError
        If the folder or the corruption's file is missing.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> images = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    >>> with tempfile.TemporaryDirectory() as root:
    ...     _ = make_cifar10c(images, [0, 1, 2, 3], root, corruptions=["contrast"])
    ...     x, y = load_cifar10c(root, "contrast", severity=5)
    >>> x.shape, x.dtype, y
    ((4, 3, 32, 32), dtype('uint8'), array([0, 1, 2, 3]))
    """
    if corruption not in PUBLISHED_CORRUPTIONS:
        raise ValueError(
            f"Unknown corruption {corruption!r}; valid names are "
            f"{', '.join(PUBLISHED_CORRUPTIONS)}."
        )
    severity = _check_severity(severity)
    folder = _root(root)
    guidance = (
        "Download CIFAR-10-C.tar (Zenodo record 2535967) and unpack it, or write "
        "CIFAR-10-C-like files with ensemblekit.datasets.make_cifar10c."
    )
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-10-C folder {folder} does not exist. {guidance}")
    path = folder / f"{corruption}.npy"
    labels_path = folder / "labels.npy"
    for needed in (path, labels_path):
        if not needed.is_file():
            present = sorted(p.stem for p in folder.glob("*.npy"))
            raise FileNotFoundError(
                f"{needed} not found (the folder holds: {', '.join(present) or 'nothing'}). "
                f"{guidance}"
            )
    severities = _stored_severities(folder)
    if severity not in severities:
        raise ValueError(
            f"{folder} holds severities {list(severities)} only, not {severity}; write "
            "them with make_cifar10c."
        )
    data = np.load(path, mmap_mode="r")
    labels = np.load(labels_path, mmap_mode="r")
    if data.ndim != 4 or data.shape[1:] != (32, 32, 3) or data.dtype != np.uint8:
        raise ValueError(
            f"{path} has shape {data.shape} and dtype {data.dtype}, expected (M, 32, 32, 3) uint8."
        )
    if len(data) != len(labels) or len(data) % len(severities):
        raise ValueError(
            f"{path} holds {len(data)} images and {labels_path} {len(labels)} labels; "
            f"expected equal counts, a multiple of {len(severities)} severities."
        )
    n = len(data) // len(severities)
    block = severities.index(severity)
    images = np.ascontiguousarray(data[block * n : (block + 1) * n].transpose(0, 3, 1, 2))
    return images, np.asarray(labels[block * n : (block + 1) * n], dtype=np.int64)


def _seed_entropy(random_state: int | np.random.Generator | None) -> int | None:
    if random_state is None:
        return None
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}.")
        return int(random_state)
    raise ValueError(
        f"random_state must be None, an int or a numpy Generator, got {random_state!r}."
    )


def make_cifar10c(
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    root: str | os.PathLike[str],
    corruptions: Iterable[str] | None = None,
    severities: Sequence[int] = _ALL_SEVERITIES,
    random_state: int | np.random.Generator | None = None,
) -> Path:
    """Write corrupted copies of ``images`` in the published CIFAR-10-C layout.

    For each corruption, writes ``<root>/<corruption>.npy``: the images corrupted at each
    severity, stacked severity after severity, channels last, shape
    ``(len(severities) * N, 32, 32, 3)`` uint8; and ``<root>/labels.npy``, the labels
    repeated once per severity (uint8 when they fit, as published, else int64). With
    severities other than 1-5, ``severities.npy`` records them. :func:`load_cifar10c` reads
    the folder back.

    Parameters
    ----------
    images : ndarray of uint8, shape (N, 3, 32, 32)
        Clean images, e.g. ``load_cifar10().X_test``.
    labels : array-like of int, shape (N,)
        Their labels.
    root : str or os.PathLike
        Output folder, created if needed. Existing files of the same corruptions are
        replaced; the folder's labels and severities must match those already there.
    corruptions : iterable of str, default=None
        Names from :data:`CORRUPTIONS`; None writes all of them.
    severities : sequence of int, default=(1, 2, 3, 4, 5)
        Distinct severities, stored in this order.
    random_state : int, numpy.random.Generator or None, default=None
        Seed. Each (corruption, severity) pair draws from its own stream derived from it,
        so a file does not depend on which other corruptions are written.

    Returns
    -------
    root : pathlib.Path
        The folder written.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     root = make_cifar10c(images, [3, 5], tmp, ["fog"], random_state=0)
    ...     print(np.load(root / "fog.npy").shape, np.load(root / "labels.npy"))
    (10, 32, 32, 3) [3 5 3 5 3 5 3 5 3 5]
    """
    arr, single = _check_images(images)
    if single:
        raise ValueError("images must be a batch of shape (N, 3, 32, 32).")
    labels = np.asarray(labels)
    if labels.shape != (len(arr),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be {len(arr)} integers, one per image, got shape {labels.shape} "
            f"and dtype {labels.dtype}."
        )
    if isinstance(corruptions, str):
        raise ValueError("corruptions must be a list of names, not a single string.")
    names = list(CORRUPTIONS if corruptions is None else corruptions)
    for name in names:
        _check_corruption(name)
    severities = tuple(_check_severity(s) for s in severities)
    if not severities or len(set(severities)) != len(severities):
        raise ValueError(f"severities must be distinct values from 1 to 5, got {severities}.")
    entropy = _seed_entropy(random_state)
    root_seed = np.random.SeedSequence(entropy)

    folder = Path(root).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    small = labels.min(initial=0) >= 0 and labels.max(initial=0) < 256
    stacked_labels = np.tile(labels.astype(np.uint8 if small else np.int64), len(severities))
    _check_folder_layout(folder, stacked_labels, severities)

    for name in names:
        out = np.empty((len(severities) * len(arr), 32, 32, 3), dtype=np.uint8)
        for block, severity in enumerate(severities):
            key = (PUBLISHED_CORRUPTIONS.index(name), severity)
            rng = np.random.default_rng(np.random.SeedSequence(root_seed.entropy, spawn_key=key))
            for start in range(0, len(arr), _CHUNK):
                chunk = corrupt(arr[start : start + _CHUNK], name, severity, random_state=rng)
                begin = block * len(arr) + start
                out[begin : begin + len(chunk)] = chunk.transpose(0, 2, 3, 1)
        _save(folder / f"{name}.npy", out)
    _save(folder / "labels.npy", stacked_labels)
    if severities == _ALL_SEVERITIES:
        (folder / _SEVERITIES_FILE).unlink(missing_ok=True)
    else:
        _save(folder / _SEVERITIES_FILE, np.asarray(severities, dtype=np.int64))
    return folder


def _check_folder_layout(folder: Path, labels: np.ndarray, severities: tuple[int, ...]) -> None:
    """Refuse to mix layouts: every file in a folder shares labels.npy and the severities."""
    existing = folder / "labels.npy"
    if not existing.is_file():
        return
    old_labels = np.load(existing)
    old_severities = _stored_severities(folder)
    if old_severities != severities or not np.array_equal(old_labels, labels):
        raise ValueError(
            f"{folder} already holds CIFAR-10-C files for other labels or severities "
            f"({list(old_severities)}); write to an empty folder instead."
        )


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)
