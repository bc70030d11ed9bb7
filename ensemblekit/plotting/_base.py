"""Shared helpers of the Displays: lazy pyplot, axes handling, estimator access."""

from __future__ import annotations

from typing import Any

import numpy as np


def pyplot() -> Any:
    """``matplotlib.pyplot``, imported on first use."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - the package import checks first
        raise ImportError(
            "Plotting needs matplotlib: install it with `pip install ensemblekit[plot]`."
        ) from exc
    return plt


def axes(ax: Any = None, n: int = 1, figsize: tuple[float, float] | None = None) -> Any:
    """``ax`` when given (one Axes, or a sequence of ``n``), else ``n`` new axes in a row."""
    if ax is None:
        plt = pyplot()
        _, created = plt.subplots(1, n, figsize=figsize, squeeze=False)
        return created[0, 0] if n == 1 else created[0]
    if n == 1:
        return ax
    ax = np.asarray(ax, dtype=object).ravel()
    if len(ax) != n:
        raise ValueError(f"ax must hold {n} matplotlib Axes, got {len(ax)}.")
    return ax


def member_proba(estimator: Any, X: Any, name: str = "estimator") -> np.ndarray:
    """``estimator.predict_member_proba(X)``, or a ValueError naming what is missing."""
    if not callable(getattr(estimator, "predict_member_proba", None)):
        raise ValueError(
            f"{name} must be a fitted ensemblekit estimator with predict_member_proba, got "
            f"{type(estimator).__name__}."
        )
    return np.asarray(estimator.predict_member_proba(X), dtype=np.float64)


def as_mapping(value: Any, default_name: str) -> dict[str, Any]:
    """A dict of named inputs: ``value`` itself when it is one, else ``{default_name: value}``."""
    if isinstance(value, dict):
        if not value:
            raise ValueError("expected at least one named input, got an empty dict.")
        return dict(value)
    return {default_name: value}


def encode_labels(y_true: Any, classes: Any) -> np.ndarray:
    """Labels as column indices of ``classes`` (ValueError for unknown labels)."""
    y = np.asarray(y_true)
    classes = np.asarray(classes)
    known = np.isin(y, classes)
    if not known.all():
        raise ValueError(
            f"y contains labels not among the classes {classes.tolist()}: "
            f"{np.unique(y[~known])[:5].tolist()}."
        )
    order = np.argsort(classes)
    return order[np.searchsorted(classes[order], y)]
