"""Loss and predictions along lines and planes through solutions in weight space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils import Bunch

from . import _access
from ._evaluate import evaluate_weights, loss_and_accuracy


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _data(estimator: Any, X: Any, y: Any, X_train: Any) -> tuple[np.ndarray, ...]:
    _access.check_estimator(estimator)
    X = _access.check_X(estimator, X)
    y = _access.encode_y(estimator, y, len(X))
    refresh = X if X_train is None else _access.check_X(estimator, X_train, "X_train")
    return X, y, refresh


class AffinePoints:
    """Weight vectors ``origin + coords[i] @ basis``, built one at a time when indexed.

    Keeps memory at one vector per network under evaluation, however many points.
    """

    def __init__(self, origin: np.ndarray, basis: np.ndarray, coords: np.ndarray) -> None:
        self.origin = origin
        self.basis = basis
        self.coords = coords

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.origin + self.coords[i] @ self.basis


def evaluate_path(
    estimator: Any, thetas: Any, X: np.ndarray, y: np.ndarray, X_refresh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss, accuracy and top-1 labels of each weight vector (BatchNorm refreshed)."""
    logits = evaluate_weights(
        _access.template(estimator), thetas, X, X_refresh=X_refresh,
        batch_size=_access.batch_size(estimator), group_size=_access.group_size(estimator),
    )
    loss, accuracy = loss_and_accuracy(logits, y, _access.output_kind(estimator))
    return loss, accuracy, logits.argmax(axis=2)


def linear_path(
    estimator: Any,
    X: Any,
    y: Any,
    start: Any = 0,
    end: Any = 1,
    n_points: int = 25,
    *,
    X_train: Any = None,
) -> Bunch:
    """Loss, accuracy and predictions along the segment between two weight vectors.

    The networks :math:`\\theta(t) = (1 - t)\\,\\theta_{start} + t\\,\\theta_{end}` for
    ``t`` evenly spaced in [0, 1] are evaluated on ``(X, y)``. The BatchNorm
    statistics of every point, ends included, are recomputed on ``X_train`` (with
    :func:`ensemblekit.posteriors.refresh_batchnorm`), never taken from an end
    point. Points are evaluated in grouped passes.

    Parameters
    ----------
    estimator : fitted estimator
        Provides the architecture (``estimators_[0].module_``) and the weights.
    X : array-like of shape (n_samples, ...)
        Evaluation inputs.
    y : array-like of shape (n_samples,)
        Evaluation labels (from ``estimator.classes_``).
    start, end : int, (int, int) or array-like of shape (n_params,), default=0, 1
        A member index (the trained network ``estimators_[i]``), a
        ``(member, checkpoint)`` pair indexing ``checkpoints_``, or a flat vector of
        all weights and biases.
    n_points : int, default=25
        Number of points, at least 2.
    X_train : array-like of shape (n_rows, ...), default=None
        Training rows for the BatchNorm statistics; ``None`` uses ``X``.

    Returns
    -------
    path : sklearn.utils.Bunch
        ``t`` (n_points,); ``loss`` (n_points,), mean cross-entropy in nats;
        ``accuracy`` (n_points,); ``disagreement_start`` and ``disagreement_end``
        (n_points,), the fraction of rows whose top-1 label differs from that of the
        network at ``t = 0`` and ``t = 1``.

    Raises
    ------
    ValueError
        Unknown member or checkpoint index, weight vectors of the wrong length,
        ``n_points < 2``, or data of the wrong shape.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from ensemblekit import DeepEnsembleClassifier
    >>> from ensemblekit.landscape import linear_path
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=3, random_state=0).fit(X, y)
    >>> path = linear_path(clf, X, y, 0, 1, n_points=5)
    >>> path.t.tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    >>> float(path.disagreement_start[0]), float(path.disagreement_end[-1])
    (0.0, 0.0)
    """
    n_points = _check_count("n_points", n_points, 2)
    X, y, refresh = _data(estimator, X, y, X_train)
    a = _access.weight_vector(estimator, start, "start")
    b = _access.weight_vector(estimator, end, "end")
    t = np.linspace(0.0, 1.0, n_points)
    if np.array_equal(a, b):
        thetas: Any = np.broadcast_to(a, (n_points, len(a)))
    else:
        thetas = AffinePoints(a, (b - a)[None], t[:, None])
    loss, accuracy, labels = evaluate_path(estimator, thetas, X, y, refresh)
    return Bunch(
        t=t,
        loss=loss,
        accuracy=accuracy,
        disagreement_start=(labels != labels[0]).mean(axis=1),
        disagreement_end=(labels != labels[-1]).mean(axis=1),
    )


def plane(
    estimator: Any,
    X: Any,
    y: Any,
    members: Sequence[Any] = (0, 1, 2),
    resolution: int = 21,
    margin: float = 0.2,
    *,
    X_train: Any = None,
) -> Bunch:
    """Loss, accuracy and predictions on the plane through three weight vectors.

    With anchors :math:`\\theta_0, \\theta_1, \\theta_2` the plane is
    :math:`\\theta_0 + x\\,u + y\\,v`, where :math:`u` is the unit vector along
    :math:`\\theta_1 - \\theta_0` and :math:`v` the unit part of
    :math:`\\theta_2 - \\theta_0` orthogonal to :math:`u` (Gram-Schmidt), so ``x`` and
    ``y`` are Euclidean distances in weight space. The grid spans the anchors'
    bounding box widened by ``margin`` times its size on each side. Passing a
    zero vector as an anchor gives the plane through the origin and two
    solutions (the paper's radial landscape). Every grid point and anchor has its
    BatchNorm statistics recomputed on ``X_train``; points are evaluated in grouped
    passes.

    Parameters
    ----------
    estimator : fitted estimator
        Provides the architecture and the weights.
    X : array-like of shape (n_samples, ...)
        Evaluation inputs.
    y : array-like of shape (n_samples,)
        Evaluation labels.
    members : sequence of 3 anchors, default=(0, 1, 2)
        Each a member index, a ``(member, checkpoint)`` pair or a flat weight vector.
    resolution : int, default=21
        Grid points along each axis, at least 2.
    margin : float, default=0.2
        Extra room around the anchors, as a fraction of their extent (>= 0).
    X_train : array-like of shape (n_rows, ...), default=None
        Training rows for the BatchNorm statistics; ``None`` uses ``X``.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``xx``, ``yy`` (resolution, resolution): grid coordinates
        (``np.meshgrid`` layout: ``xx[i, j]`` varies with ``j``); ``loss`` and
        ``accuracy`` (resolution, resolution); ``disagreement``
        (3, resolution, resolution), the fraction of rows whose top-1 label differs
        from each anchor's; ``anchor_coords`` (3, 2); ``anchor_loss`` and
        ``anchor_accuracy`` (3,); ``origin`` (n_params,) and ``basis``
        (2, n_params), so that a point is ``origin + x * basis[0] + y * basis[1]``.

    Raises
    ------
    ValueError
        Not three anchors, anchors on one line, bad indices, ``resolution < 2`` or
        a negative margin.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from ensemblekit import DeepEnsembleClassifier
    >>> from ensemblekit.landscape import plane
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DeepEnsembleClassifier(n_estimators=3, max_epochs=3, random_state=0).fit(X, y)
    >>> result = plane(clf, X, y, resolution=4)
    >>> result.loss.shape, result.anchor_coords.shape
    ((4, 4), (3, 2))
    """
    resolution = _check_count("resolution", resolution, 2)
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.floating)) \
            or not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}.")
    if isinstance(members, (str, bytes)) or len(members) != 3:
        raise ValueError(f"members must hold exactly 3 anchors, got {members!r}.")
    X, y, refresh = _data(estimator, X, y, X_train)
    anchors = np.stack([
        _access.weight_vector(estimator, spec, f"members[{i}]") for i, spec in enumerate(members)
    ])
    origin = anchors[0]
    d1, d2 = anchors[1] - origin, anchors[2] - origin
    n1 = np.linalg.norm(d1)
    u = d1 / n1 if n1 > 0 else d1
    w = d2 - (d2 @ u) * u
    n2 = np.linalg.norm(w)
    scale = max(np.linalg.norm(d1), np.linalg.norm(d2), 1e-30)
    if n1 == 0 or n2 <= 1e-6 * scale:
        raise ValueError(
            "the three anchors lie on one line (or coincide), so they span no plane; "
            "choose other members or weight vectors."
        )
    v = w / n2
    basis = np.stack([u, v])
    coords = (anchors - origin) @ basis.T
    low, high = coords.min(axis=0), coords.max(axis=0)
    extent = high - low
    xs = np.linspace(low[0] - margin * extent[0], high[0] + margin * extent[0], resolution)
    ys = np.linspace(low[1] - margin * extent[1], high[1] + margin * extent[1], resolution)
    xx, yy = np.meshgrid(xs, ys)
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
    loss, accuracy, labels = evaluate_path(
        estimator, AffinePoints(origin, basis, grid), X, y, refresh
    )
    # The anchors themselves, not their reconstruction from coordinates.
    anchor_loss, anchor_accuracy, anchor_labels = evaluate_path(estimator, anchors, X, y,
                                                                refresh)
    disagreement = (labels[None] != anchor_labels[:, None]).mean(axis=2)
    shape = (resolution, resolution)
    return Bunch(
        xx=xx,
        yy=yy,
        loss=loss.reshape(shape),
        accuracy=accuracy.reshape(shape),
        disagreement=disagreement.reshape(3, *shape),
        anchor_coords=coords,
        anchor_loss=anchor_loss,
        anchor_accuracy=anchor_accuracy,
        origin=origin,
        basis=basis,
    )
