"""Metrics of an ensemble as a function of its size."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from ._calibration import accuracy, brier_score, expected_calibration_error, negative_log_likelihood
from ._validation import check_int, check_member_proba

_METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "brier_score": brier_score,
    "expected_calibration_error": expected_calibration_error,
    "negative_log_likelihood": negative_log_likelihood,
}


class EnsembleSizeCurve(NamedTuple):
    """Result of :func:`ensemble_size_curve`.

    Parameters
    ----------
    sizes : ndarray of shape (n_sizes,)
        Ensemble sizes k.
    mean : ndarray of shape (n_sizes,)
        Mean of the metric over the subsets of each size.
    std : ndarray of shape (n_sizes,)
        Population standard deviation (``ddof=0``) of the metric over those subsets.
    n_subsets : ndarray of shape (n_sizes,)
        Number of subsets evaluated for each size.
    """

    sizes: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_subsets: np.ndarray


def _subsets(
    n_members: int, size: int, max_subsets: int, rng: np.random.Generator
) -> list[tuple[int, ...]]:
    if math.comb(n_members, size) <= max_subsets:
        return list(itertools.combinations(range(n_members), size))
    # Distinct subsets, each drawn uniformly at random; there are more than max_subsets of
    # them, so the rejection loop ends quickly.
    chosen: dict[tuple[int, ...], None] = {}
    while len(chosen) < max_subsets:
        subset = tuple(sorted(int(i) for i in rng.choice(n_members, size=size, replace=False)))
        chosen.setdefault(subset, None)
    return list(chosen)


def ensemble_size_curve(
    member_proba: Any,
    y_true: Any,
    metric: str | Callable[[Any, np.ndarray], float],
    *,
    sizes: Iterable[int] | None = None,
    max_subsets: int = 100,
    random_state: int | np.random.Generator | None = None,
    labels: Any = None,
) -> EnsembleSizeCurve:
    r"""A metric of the ensemble as a function of the number of members.

    For each size :math:`k`, the metric is evaluated on the ensemble prediction
    :math:`\frac{1}{k}\sum_{m \in S} p_m` of subsets :math:`S` of :math:`k` members and
    averaged over the subsets. When there are at most ``max_subsets`` subsets of size
    :math:`k` all of them are used, as in the code released with Fort, Hu &
    Lakshminarayanan (2019); otherwise ``max_subsets`` distinct subsets are drawn uniformly
    at random.

    Parameters
    ----------
    member_proba : array-like of shape (n_members, n_samples, n_classes)
        Class probabilities of each member.
    y_true : array-like of shape (n_samples,)
        True labels: integer column indices ``0 .. n_classes - 1``, or labels listed in
        ``labels``.
    metric : str or callable
        A metric of this module by name, ``"accuracy"``, ``"brier_score"``,
        ``"expected_calibration_error"`` or ``"negative_log_likelihood"`` (called with
        ``labels=labels``), or a callable
        ``metric(y_true, proba) -> float`` that receives ``y_true`` exactly as given and the
        ``(n_samples, n_classes)`` ensemble probabilities.
    sizes : iterable of int, default=None
        Ensemble sizes, each in ``[1, n_members]``. Defaults to ``1, 2, ..., n_members``.
    max_subsets : int, default=100
        Most subsets evaluated per size.
    random_state : int, numpy.random.Generator or None, default=None
        Seed or generator for ``np.random.default_rng``, used only when subsets are drawn.
    labels : array-like of shape (n_classes,), default=None
        The label of each probability column, passed to a metric given by name.

    Returns
    -------
    EnsembleSizeCurve
        Named tuple ``(sizes, mean, std, n_subsets)`` of arrays with one entry per size.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.metrics import ensemble_size_curve
    >>> members = np.array([[[0.9, 0.1], [0.6, 0.4]],
    ...                     [[0.6, 0.4], [0.1, 0.9]],
    ...                     [[0.3, 0.7], [0.2, 0.8]]])
    >>> curve = ensemble_size_curve(members, [0, 1], "accuracy")
    >>> curve.sizes
    array([1, 2, 3])
    >>> # members are right on 1, 2 and 1 of the 2 points, pairs on 2, 2 and 1, all three on 2
    >>> curve.mean
    array([0.666..., 0.833..., 1. ])
    >>> curve.n_subsets
    array([3, 3, 1])
    """
    proba = check_member_proba(member_proba)
    n_members = proba.shape[0]
    if isinstance(metric, str):
        if metric not in _METRICS:
            raise ValueError(
                f"metric must be one of {sorted(_METRICS)} or a callable, got {metric!r}."
            )
        named = _METRICS[metric]

        def score(p: np.ndarray) -> float:
            return named(y_true, p, labels=labels)

    elif callable(metric):

        def score(p: np.ndarray) -> float:
            return float(metric(y_true, p))

    else:
        raise ValueError(f"metric must be a metric name or a callable, got {metric!r}.")

    if sizes is None:
        size_arr = np.arange(1, n_members + 1)
    else:
        size_list = [check_int(k, name="each size", min_value=1) for k in sizes]
        if not size_list or max(size_list) > n_members:
            raise ValueError(
                f"sizes must be a non-empty list of integers in [1, {n_members}] "
                f"(the number of members), got {size_list}."
            )
        size_arr = np.asarray(size_list, dtype=int)
    max_subsets = check_int(max_subsets, name="max_subsets", min_value=1)
    rng = np.random.default_rng(random_state)

    means, stds, counts = [], [], []
    for size in size_arr:
        values = np.array(
            [
                score(proba[list(s)].mean(axis=0))
                for s in _subsets(n_members, int(size), max_subsets, rng)
            ]
        )
        means.append(values.mean())
        stds.append(values.std())
        counts.append(values.size)
    return EnsembleSizeCurve(size_arr, np.array(means), np.array(stds), np.array(counts))
