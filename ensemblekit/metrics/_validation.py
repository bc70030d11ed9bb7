"""Input checks shared by the metrics, each failing with a ValueError that names the problem."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import torch

#: Largest absolute deviation from 1 tolerated in the sum of a probability row.
PROBA_SUM_ATOL = 1e-3

_ENSEMBLE_HINT = (
    " To score an ensemble, average its members first with ensemble_proba(member_proba)."
)


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16, and float64 is what the metrics compute in anyway.
        if x.is_floating_point():
            x = x.to(torch.float64)
        return x.numpy()
    return np.asarray(x)


def _check_numeric(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def _check_distribution(arr: np.ndarray, name: str) -> None:
    if arr.min() < 0:
        raise ValueError(
            f"{name} contains negative values (minimum {arr.min():.6g}); "
            "probabilities must be non-negative."
        )
    sums = arr.sum(axis=-1)
    worst = np.unravel_index(np.argmax(np.abs(sums - 1.0)), sums.shape)
    if abs(sums[worst] - 1.0) > PROBA_SUM_ATOL:
        raise ValueError(
            f"{name} must hold probabilities that sum to 1 over the last axis "
            f"(within {PROBA_SUM_ATOL}); the row at index {tuple(int(i) for i in worst)} "
            f"sums to {sums[worst]:.6g}. Apply a softmax to logits first."
        )


def check_proba(proba: Any, *, name: str = "proba") -> np.ndarray:
    """Validate class probabilities of shape ``(n_samples, n_classes)``; return float64."""
    arr = to_numpy(proba)
    if arr.ndim != 2:
        hint = _ENSEMBLE_HINT if arr.ndim == 3 else ""
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_classes), "
            f"got an array of shape {arr.shape}.{hint}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    arr = _check_numeric(arr, name)
    _check_distribution(arr, name)
    return arr


def check_member_proba(member_proba: Any, *, name: str = "member_proba") -> np.ndarray:
    """Validate member probabilities of shape ``(n_members, n_samples, n_classes)``."""
    arr = to_numpy(member_proba)
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be a 3-D array of shape (n_members, n_samples, n_classes), "
            f"got an array of shape {arr.shape}."
        )
    if 0 in arr.shape:
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    arr = _check_numeric(arr, name)
    _check_distribution(arr, name)
    return arr


def check_label_vector(labels: Any, *, name: str, ndim: int = 1) -> np.ndarray:
    """Validate predicted labels (any dtype) of the given number of dimensions."""
    arr = to_numpy(labels)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of labels, got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def encode_labels(
    y: Any, classes: Any, *, name: str = "y_true", classes_name: str = "labels"
) -> np.ndarray:
    """Map each label of ``y`` to its position in ``classes`` (which need not be sorted)."""
    y = to_numpy(y)
    classes = to_numpy(classes)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {y.shape}.")
    if classes.ndim != 1 or classes.size == 0:
        raise ValueError(
            f"{classes_name} must be a non-empty 1-D array of class labels, "
            f"got shape {classes.shape}."
        )
    order = np.argsort(classes, kind="stable")
    sorted_classes = classes[order]
    if np.any(sorted_classes[1:] == sorted_classes[:-1]):
        raise ValueError(f"{classes_name} contains duplicate labels.")
    try:
        pos = np.minimum(np.searchsorted(sorted_classes, y), classes.size - 1)
        with warnings.catch_warnings():
            # numpy < 1.25 compares mixed types to a scalar False with a FutureWarning.
            warnings.simplefilter("ignore", FutureWarning)
            known = np.asarray(sorted_classes[pos] == y)
        if known.shape != y.shape:
            raise TypeError
    except TypeError:
        # Labels of incomparable types (e.g. strings against integers) cannot match.
        pos = np.zeros(y.shape, dtype=np.intp)
        known = np.zeros(y.shape, dtype=bool)
    if not np.all(known):
        unknown = np.unique(y[~known])
        shown = ", ".join(repr(u) for u in unknown[:10].tolist())
        more = "" if unknown.size <= 10 else f" (and {unknown.size - 10} more)"
        raise ValueError(
            f"{name} contains labels that are not in {classes_name}: {shown}{more}. "
            f"Known labels: {classes.tolist()}."
        )
    return order[pos]


def check_y_true(
    y_true: Any, n_samples: int, n_classes: int, *, labels: Any = None, name: str = "y_true"
) -> np.ndarray:
    """Return ``y_true`` as integer column indices into an ``(n_samples, n_classes)`` array.

    Without ``labels``, ``y_true`` must already hold indices ``0 .. n_classes - 1``. With
    ``labels`` (one label per column, in column order), each label is mapped to its column.
    """
    if labels is not None:
        n_labels = to_numpy(labels).shape
        if n_labels != (n_classes,):
            raise ValueError(
                f"labels must list one label per column of the probabilities "
                f"({n_classes}), got shape {n_labels}."
            )
        y = encode_labels(y_true, labels, name=name)
    else:
        y = to_numpy(y_true)
        if y.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array of class indices, got shape {y.shape}.")
        if np.issubdtype(y.dtype, np.floating):
            if not np.all(np.isfinite(y)):
                raise ValueError(f"{name} contains NaN or infinite values.")
            if np.all(y == np.round(y)):
                y = y.astype(np.intp)
        if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{name} must hold integer class indices in [0, {n_classes}), got values "
                f"of dtype {y.dtype}. Pass labels=... to map other labels to columns."
            )
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            bad = y[(y < 0) | (y >= n_classes)]
            raise ValueError(
                f"{name} holds class indices outside [0, {n_classes}) "
                f"(e.g. {int(bad[0])}); it must index the {n_classes} probability columns."
            )
        y = y.astype(np.intp, copy=False)
    if y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} samples but the probabilities have {n_samples}.")
    return y


def check_int(value: Any, *, name: str, min_value: int = 1) -> int:
    """Return ``value`` as an int if it is an integer (not a bool) of at least ``min_value``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < min_value:
        raise ValueError(f"{name} must be an integer >= {min_value}, got {value!r}.")
    return int(value)


def check_eps(eps: Any) -> float:
    """Return ``eps`` as a float if it is a finite number >= 0."""
    if (
        isinstance(eps, bool)
        or not isinstance(eps, numbers.Real)
        or not np.isfinite(eps)
        or eps < 0
    ):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}.")
    return float(eps)
