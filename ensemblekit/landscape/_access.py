"""Reading fitted estimators by duck typing: networks, weight vectors, checkpoints, data.

An estimator qualifies when it has ``estimators_`` (skorch nets with a ``module_``);
trajectories need ``checkpoints_`` and ``checkpoint_epochs_`` as well. The estimator
classes are never imported here.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn.utils import parameters_to_vector

#: Weight vectors evaluated in one grouped pass unless the estimator says otherwise.
DEFAULT_GROUP_SIZE = 16
DEFAULT_BATCH_SIZE = 1024


def check_estimator(estimator: Any) -> None:
    """Raise unless ``estimator`` is a fitted ensemblekit-like estimator."""
    if callable(getattr(estimator, "fit", None)):
        check_is_fitted(estimator)
    nets = getattr(estimator, "estimators_", None)
    if not nets or not all(hasattr(net, "module_") for net in nets):
        raise ValueError(
            f"{type(estimator).__name__} has no trained networks in estimators_; the "
            "landscape functions need an ensemblekit estimator."
        )


def template(estimator: Any) -> nn.Module:
    """The first trained network: the architecture every weight vector is loaded into."""
    return estimator.estimators_[0].module_


def n_parameters(estimator: Any) -> int:
    return int(sum(p.numel() for p in template(estimator).parameters()))


def output_kind(estimator: Any) -> str:
    """What the networks return: ``"logits"`` (default), ``"proba"`` or ``"log_proba"``."""
    return str(getattr(estimator, "output_kind_", "logits"))


def batch_size(estimator: Any) -> int:
    return int(getattr(estimator, "predict_batch_size", None) or DEFAULT_BATCH_SIZE)


def group_size(estimator: Any) -> int:
    return int(getattr(estimator, "max_members_per_pass", None) or DEFAULT_GROUP_SIZE)


def check_checkpoints(estimator: Any) -> tuple[Any, np.ndarray]:
    """``(checkpoints_, checkpoint_epochs_)``, or a ValueError saying how to record them."""
    check_estimator(estimator)
    checkpoints = getattr(estimator, "checkpoints_", None)
    epochs = getattr(estimator, "checkpoint_epochs_", None)
    if checkpoints is None or epochs is None:
        raise ValueError(
            f"This {type(estimator).__name__} was fitted without checkpoints; refit it with "
            "checkpoint_epochs='all' (or an int k, or a list of epochs) to record the "
            "training trajectories."
        )
    return checkpoints, np.asarray(epochs)


def _index(value: Any, size: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an integer, got {value!r}.")
    if not -size <= int(value) < size:
        raise ValueError(f"{what} {int(value)} is out of range: there are {size}.")
    return int(value) % size


def weight_vector(estimator: Any, spec: Any, name: str) -> np.ndarray:
    """Resolve a weight specification to a flat float64 vector.

    ``spec`` is a member index (the trained network ``estimators_[i]``), a pair
    ``(member, checkpoint)`` indexing ``checkpoints_``, or a flat vector of
    ``n_params`` values.
    """
    n_params = n_parameters(estimator)
    if isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        member = _index(spec, len(estimator.estimators_), f"{name}: member index")
        module = estimator.estimators_[member].module_
        return parameters_to_vector(module.parameters()).detach().double().cpu().numpy()
    if isinstance(spec, tuple) and len(spec) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in spec
    ):
        checkpoints, _ = check_checkpoints(estimator)
        member = _index(spec[0], checkpoints.shape[0], f"{name}: member index")
        k = _index(spec[1], checkpoints.shape[1], f"{name}: checkpoint index")
        return np.asarray(checkpoints[member, k], dtype=np.float64)
    if isinstance(spec, (str, bool)) or spec is None:
        vector = None
    else:
        try:
            vector = np.asarray(spec.detach().cpu() if isinstance(spec, torch.Tensor) else spec,
                                dtype=np.float64)
        except (TypeError, ValueError):
            vector = None
    if vector is None or vector.ndim != 1:
        raise ValueError(
            f"{name} must be a member index, a (member, checkpoint) pair or a flat weight "
            f"vector of {n_params} values, got {spec!r}."
        )
    if vector.shape[0] != n_params:
        raise ValueError(
            f"{name} has {vector.shape[0]} values, but the networks have {n_params} "
            "parameters."
        )
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return vector


def check_X(estimator: Any, X: Any, name: str = "X") -> np.ndarray:
    """``X`` as a C-contiguous float32 array shaped like the training inputs."""
    try:
        X = np.array(X, dtype=np.float32, order="C")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {type(X).__name__}.") from exc
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"{name} must have shape (n_samples, ...) with n_samples >= 1, got "
                         f"{X.shape}.")
    expected = getattr(estimator, "input_shape_", None)
    if expected is not None and tuple(X.shape[1:]) != tuple(expected):
        raise ValueError(
            f"{name} has samples of shape {tuple(X.shape[1:])}, but "
            f"{type(estimator).__name__} was fitted on samples of shape {tuple(expected)}."
        )
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return X


def encode_y(estimator: Any, y: Any, n_rows: int, name: str = "y") -> np.ndarray:
    """Labels as column indices of ``classes_``."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n_rows:
        raise ValueError(f"{name} must have shape ({n_rows},) to match X, got {y.shape}.")
    classes = np.asarray(estimator.classes_)
    known = np.isin(y, classes)
    if not known.all():
        raise ValueError(
            f"{name} contains labels the estimator was not fitted on: "
            f"{np.unique(y[~known])[:5].tolist()}; known labels: {classes.tolist()}."
        )
    return np.searchsorted(classes, y).astype(np.int64)
