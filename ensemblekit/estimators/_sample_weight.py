"""Row weights of a fit: ``sample_weight`` times ``class_weight``."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from sklearn.utils.class_weight import compute_class_weight


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray:
    """``sample_weight`` as a float64 array of ``n_samples`` finite non-negative weights.

    A scalar gives every row that weight, as in scikit-learn.

    Raises
    ------
    ValueError
        For a wrong shape, a non-numeric, non-finite or negative weight.

    Examples
    --------
    >>> check_sample_weight([1, 2], 2).tolist()
    [1.0, 2.0]
    >>> check_sample_weight(3, 2).tolist()
    [3.0, 3.0]
    """
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        sample_weight = np.full(n_samples, sample_weight)
    try:
        w = np.array(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"sample_weight must be an array of {n_samples} non-negative numbers, got "
            f"{type(sample_weight).__name__}."
        ) from exc
    if w.ndim != 1 or len(w) != n_samples:
        raise ValueError(
            f"sample_weight.shape == {w.shape}, expected ({n_samples},): one weight per row "
            "of X."
        )
    if not np.isfinite(w).all():
        raise ValueError("sample_weight must be finite, got NaN or infinite weights.")
    if (w < 0).any():
        raise ValueError(
            f"sample_weight must be non-negative, got {int((w < 0).sum())} negative weights "
            f"(smallest {w.min()})."
        )
    return w


def class_weight_vector(class_weight: Any, classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One weight per class of ``classes``, by scikit-learn's ``compute_class_weight``.

    Parameters
    ----------
    class_weight : None, "balanced" or dict
        ``"balanced"``: ``n_samples / (n_classes * count(class))``; a dict maps
        original labels (strings too) to weights, missing classes get 1.
    classes : ndarray of shape (n_classes,)
        The estimator's ``classes_``.
    y : ndarray of shape (n_samples,)
        Encoded labels (indices into ``classes``).

    Returns
    -------
    weights : ndarray of shape (n_classes,), float64

    Raises
    ------
    ValueError
        For another value, a dict with a key that is not one of ``classes`` (the
        message names the keys and the classes) or holding negative or non-finite
        weights.

    Examples
    --------
    >>> class_weight_vector("balanced", np.array(["a", "b"]), np.array([0, 0, 0, 1]))
    array([0.66666667, 2.        ])
    >>> class_weight_vector({"b": 3.0}, np.array(["a", "b"]), np.array([0, 1])).tolist()
    [1.0, 3.0]
    """
    if class_weight is None:
        return np.ones(len(classes))
    if not (isinstance(class_weight, dict) or (isinstance(class_weight, str)
                                               and class_weight == "balanced")):
        raise ValueError(
            f"class_weight must be None, 'balanced' or a dict mapping class labels to "
            f"weights, got {class_weight!r}."
        )
    if isinstance(class_weight, dict):
        _check_class_weight_keys(class_weight, classes)
    labels = classes[y]
    weights = np.asarray(compute_class_weight(class_weight, classes=classes, y=labels),
                         dtype=np.float64)
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"class_weight must hold finite non-negative weights, got "
                         f"{class_weight!r}.")
    return weights


def _check_class_weight_keys(class_weight: dict, classes: np.ndarray) -> None:
    """Raise a ValueError naming the keys of ``class_weight`` that are not classes.

    Keys match classes as dict lookups do (scikit-learn's rule), so ``1.0`` and
    ``np.int64(1)`` name the class ``1``.
    """
    known = set(classes.tolist())
    unknown = [key for key in class_weight if key not in known]
    if not unknown:
        return
    listed = [repr(c) for c in classes.tolist()]
    if len(listed) > 20:
        listed = [*listed[:10], "...", *listed[-5:]]
    shown = f"[{', '.join(listed)}]"
    plain = [key.item() if isinstance(key, np.generic) else key for key in unknown]
    many = len(plain) > 1
    raise ValueError(
        f"class_weight has {'keys' if many else 'a key'} {', '.join(map(repr, plain))} "
        f"that {'are not classes' if many else 'is not a class'}; its keys must be labels "
        f"as they appear in y, and the classes are {shown}."
    )


def training_weights(
    sample_weight: Any, class_weight: Any, y: np.ndarray, classes: np.ndarray,
    piece: bool = False,
) -> np.ndarray | None:
    """The weight of each training row, or ``None`` when all rows weigh the same.

    The product of ``sample_weight`` (1 when ``None``) and the ``class_weight`` of
    each row's class. Equal weights train exactly as no weights (the loss is a
    weighted mean), so they are returned as ``None`` and the unweighted path runs.

    ``piece=True`` (a ``partial_fit`` call) only changes the error message.

    Raises
    ------
    ValueError
        When the weights are invalid (see :func:`check_sample_weight`) or all 0
        (as scikit-learn's estimators, also in ``partial_fit``: "Sample weights
        must contain at least one non-zero number").

    Examples
    --------
    >>> training_weights([2.0, 2.0], None, np.array([0, 1]), np.array([0, 1])) is None
    True
    >>> training_weights(None, {1: 3}, np.array([0, 1]), np.array([0, 1])).tolist()
    [1.0, 3.0]
    """
    w = None if sample_weight is None else check_sample_weight(sample_weight, len(y))
    if class_weight is not None:
        per_class = class_weight_vector(class_weight, np.asarray(classes), y)
        w = per_class[y] if w is None else w * per_class[y]
    if w is None:
        return None
    if not (w > 0).any():
        where = "of this partial_fit call " if piece else ""
        source = "" if class_weight is None else " (sample_weight times class_weight)"
        raise ValueError(f"Every sample weight {where}is zero{source}: there is nothing to "
                         "train on. Sample weights must contain at least one non-zero "
                         "number.")
    if (w == w[0]).all():
        return None
    return w
