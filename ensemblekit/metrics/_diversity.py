"""Prediction disagreement between networks and the diversity-accuracy plane."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning

from ._validation import (
    check_int,
    check_label_vector,
    check_member_proba,
    check_proba,
    check_y_true,
    to_numpy,
)


def _top1_pair(p_a: Any, p_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = to_numpy(p_a), to_numpy(p_b)
    if a.ndim != b.ndim or a.ndim not in (1, 2):
        raise ValueError(
            "p_a and p_b must both be probability arrays of shape (n_samples, n_classes) "
            f"or both be label vectors of shape (n_samples,), got shapes {a.shape} and "
            f"{b.shape}. To compare probabilities with labels, take the argmax first."
        )
    if a.ndim == 2:
        a, b = check_proba(a, name="p_a"), check_proba(b, name="p_b")
        if a.shape != b.shape:
            raise ValueError(f"p_a and p_b must have the same shape, got {a.shape} and {b.shape}.")
        return a.argmax(axis=1), b.argmax(axis=1)
    a, b = check_label_vector(a, name="p_a"), check_label_vector(b, name="p_b")
    kinds = {_label_kind(a), _label_kind(b)}
    if kinds == {"number", "text"}:
        raise ValueError(
            f"p_a and p_b hold labels of different kinds ({a.dtype} and {b.dtype}); numbers "
            "never equal strings, so every point would count as a disagreement."
        )
    if a.shape != b.shape:
        raise ValueError(
            f"p_a and p_b must have the same number of samples, got {a.shape[0]} and {b.shape[0]}."
        )
    return a, b


def _label_kind(labels: np.ndarray) -> str:
    if labels.dtype.kind in "biuf":
        return "number"
    return "text" if labels.dtype.kind in "US" else "other"


def _member_top1(member_predictions: Any) -> np.ndarray:
    arr = to_numpy(member_predictions)
    if arr.ndim == 3:
        return check_member_proba(arr, name="member_proba").argmax(axis=2)
    if arr.ndim == 2:
        return check_label_vector(arr, name="member_proba", ndim=2)
    raise ValueError(
        "member_proba must be member probabilities of shape (n_members, n_samples, n_classes) "
        f"or member labels of shape (n_members, n_samples), got shape {arr.shape}."
    )


def disagreement(p_a: Any, p_b: Any) -> float:
    r"""Fraction of points on which two classifiers predict different top-1 labels.

    .. math:: d(a, b) = \frac{1}{N} \sum_{n=1}^{N}
              \mathbb{1}\left[\arg\max_c p_a(c \mid x_n) \neq \arg\max_c p_b(c \mid x_n)\right]

    This is the prediction disagreement of Fort, Hu & Lakshminarayanan (2019). It is *not*
    the "disagreement" of some ensemble libraries that counts points where exactly one of the
    two classifiers is right; the true labels play no part here.

    Parameters
    ----------
    p_a, p_b : array-like of shape (n_samples, n_classes) or (n_samples,)
        Either two arrays of class probabilities, whose top-1 labels are taken with
        ``argmax`` (ties go to the lowest column index), or two vectors of predicted labels of
        any dtype, compared with ``==``. Both must be of the same kind.

    Returns
    -------
    float
        Disagreement in [0, 1].

    See Also
    --------
    pairwise_disagreement : All pairs of members at once.
    normalized_disagreement : Disagreement divided by the error rate.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.metrics import disagreement
    >>> p_a = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])  # top-1 labels 0, 1, 0
    >>> p_b = np.array([[0.7, 0.3], [0.6, 0.4], [0.1, 0.9]])  # top-1 labels 0, 0, 1
    >>> disagreement(p_a, p_b)
    0.666...
    >>> disagreement(["cat", "dog"], ["cat", "cat"])
    0.5
    """
    a, b = _top1_pair(p_a, p_b)
    return float(np.mean(a != b))


def pairwise_disagreement(member_proba: Any) -> np.ndarray:
    """Disagreement between every pair of members.

    Entry ``(i, j)`` is :func:`disagreement` between members ``i`` and ``j``. The matrix is
    symmetric with a zero diagonal.

    Parameters
    ----------
    member_proba : array-like of shape (n_members, n_samples, n_classes) or \
(n_members, n_samples)
        Member probabilities (top-1 labels taken with ``argmax``) or member predicted labels.

    Returns
    -------
    ndarray of shape (n_members, n_members)
        Pairwise disagreement, each entry in [0, 1].

    Examples
    --------
    >>> from ensemblekit.metrics import pairwise_disagreement
    >>> labels = [[0, 1, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]]
    >>> pairwise_disagreement(labels)
    array([[0.  , 0.25, 0.75],
           [0.25, 0.  , 0.5 ],
           [0.75, 0.5 , 0.  ]])
    """
    top = _member_top1(member_proba)
    n_members = top.shape[0]
    out = np.zeros((n_members, n_members))
    # One row at a time keeps memory at O(n_members * n_samples).
    for i in range(n_members):
        out[i] = np.mean(top[i] != top, axis=1)
    return out


def mean_pairwise_disagreement(member_proba: Any) -> float:
    """Mean disagreement over all pairs of distinct members.

    The mean of the off-diagonal entries of :func:`pairwise_disagreement`, i.e. over the
    ``n_members * (n_members - 1) / 2`` unordered pairs.

    Parameters
    ----------
    member_proba : array-like of shape (n_members, n_samples, n_classes) or \
(n_members, n_samples)
        Member probabilities or member predicted labels; at least two members.

    Returns
    -------
    float
        Mean pairwise disagreement in [0, 1].

    Raises
    ------
    ValueError
        If there is only one member: disagreement needs a pair.

    Examples
    --------
    >>> from ensemblekit.metrics import mean_pairwise_disagreement
    >>> mean_pairwise_disagreement([[0, 1, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]])
    0.5
    """
    matrix = pairwise_disagreement(member_proba)
    n_members = matrix.shape[0]
    if n_members < 2:
        raise ValueError(
            "mean_pairwise_disagreement needs at least two members, got member_proba with 1 member."
        )
    return float(matrix.sum() / (n_members * (n_members - 1)))


def normalized_disagreement(
    proba: Any, reference_proba: Any, y_true: Any, *, labels: Any = None
) -> float:
    r"""Disagreement with a reference network, divided by the error rate of the compared one.

    .. math:: \frac{d(f, f_{\mathrm{ref}})}{1 - \mathrm{acc}(f)}

    where :math:`d` is :func:`disagreement` and :math:`\mathrm{acc}(f)` is the accuracy of
    ``proba`` -- the network being compared, *not* the reference. This is the y-axis of the
    diversity-accuracy plane of Fort, Hu & Lakshminarayanan (2019), whose x-axis is
    :math:`\mathrm{acc}(f)`. Dividing by the error rate puts networks of different accuracy on
    one scale: the reference itself scores 0, and :func:`diversity_accuracy_limits` gives what
    a randomly perturbed copy of the reference and an independent network of the same
    accuracy score.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Class probabilities of the network being compared (whose accuracy normalises).
    reference_proba : array-like of shape (n_samples, n_classes)
        Class probabilities of the reference (baseline) network.
    y_true : array-like of shape (n_samples,)
        True labels: integer column indices ``0 .. n_classes - 1``, or labels listed in
        ``labels``.
    labels : array-like of shape (n_classes,), default=None
        The label of each probability column, in column order. If given, ``y_true`` is mapped
        through it.

    Returns
    -------
    float
        Normalised disagreement, at least 0. If ``proba`` is right on every point the ratio is
        undefined: ``nan`` is returned with an ``UndefinedMetricWarning``.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.metrics import normalized_disagreement
    >>> y = np.array([0, 0, 1, 1])
    >>> reference = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])  # 0, 0, 1, 0
    >>> sampled = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])    # 0, 1, 1, 0
    >>> # disagreement 1/4, accuracy of `sampled` 2/4: (1/4) / (1 - 2/4) = 0.5
    >>> normalized_disagreement(sampled, reference, y)
    0.5
    """
    p = check_proba(proba, name="proba")
    r = check_proba(reference_proba, name="reference_proba")
    if p.shape != r.shape:
        raise ValueError(
            f"proba and reference_proba must have the same shape, got {p.shape} and {r.shape}."
        )
    y = check_y_true(y_true, p.shape[0], p.shape[1], labels=labels)
    top = p.argmax(axis=1)
    error_rate = float(np.mean(top != y))
    if error_rate == 0.0:
        warnings.warn(
            "normalized_disagreement is undefined when proba is right on every sample "
            "(its error rate is 0); returning nan.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return float("nan")
    return float(np.mean(top != r.argmax(axis=1)) / error_rate)


def diversity_accuracy_limits(
    accuracy: Any, reference_accuracy: float, n_classes: int, *, normalize: bool = True
) -> tuple[Any, Any]:
    r"""Lower and upper reference curves of the diversity-accuracy plane.

    For a reference network of accuracy :math:`a_r` on a :math:`C`-class problem, and a
    compared network of accuracy :math:`a`, Fort, Hu & Lakshminarayanan (2019) draw two
    curves of the disagreement :math:`d` between them:

    - lower limit, the reference with a random fraction :math:`d` of its predictions moved
      to another label chosen uniformly ("perturbed reference"):

      .. math:: d_{\mathrm{low}} = \frac{a_r - a}{a_r - (1 - a_r) / (C - 1)}

    - upper limit, an independent network of accuracy :math:`a` whose errors are uniform
      over the :math:`C - 1` wrong classes ("random average case"):

      .. math:: d_{\mathrm{up}} = a_r (1 - a) + a (1 - a_r)
                + (1 - a_r)(1 - a) \frac{C - 2}{C - 1}

    With ``normalize=True`` both are divided by :math:`1 - a`, matching
    :func:`normalized_disagreement`. Normalised, both curves equal 1 at :math:`a = 1/C`, the
    lower curve is 0 at :math:`a = a_r`, and the upper curve reaches
    :math:`2 a_r + (1 - a_r)(C - 2)/(C - 1)` there.

    Parameters
    ----------
    accuracy : float or array-like
        Accuracies :math:`a` in [0, 1] at which to evaluate the curves.
    reference_accuracy : float
        Accuracy :math:`a_r` of the reference network, in (1/C, 1]; a reference no better
        than chance makes the lower curve degenerate.
    n_classes : int
        Number of classes :math:`C`, at least 2.
    normalize : bool, default=True
        Divide by the error rate :math:`1 - a`.

    Returns
    -------
    lower, upper : float or ndarray
        The two curves, of the shape of ``accuracy`` (floats for a scalar). The perturbed
        reference can only reach accuracies between :math:`(1 - a_r)/(C - 1)` (all of its
        predictions changed) and :math:`a_r` (none changed); ``lower`` is ``nan`` outside that
        range. Normalised values at :math:`a = 1` are ``nan`` (division by zero).

    Examples
    --------
    The reference values for a 10-class problem with a reference accuracy of 0.71:

    >>> from ensemblekit.metrics import diversity_accuracy_limits
    >>> lower, upper = diversity_accuracy_limits([0.1, 0.5, 0.71], 0.71, 10)
    >>> lower.round(3)
    array([1.  , 0.62, 0.  ])
    >>> upper.round(3)
    array([1.   , 1.258, 1.678])
    """
    n_classes = check_int(n_classes, name="n_classes", min_value=2)
    if (
        isinstance(reference_accuracy, bool)
        or not isinstance(reference_accuracy, numbers.Real)
        or not 1.0 / n_classes < reference_accuracy <= 1.0
    ):
        raise ValueError(
            f"reference_accuracy must be a number in (1/n_classes, 1] = ({1 / n_classes:.4g}, 1], "
            f"got {reference_accuracy!r}."
        )
    a_ref = float(reference_accuracy)
    acc_arr = to_numpy(accuracy)
    if acc_arr.dtype == bool or not np.issubdtype(acc_arr.dtype, np.number):
        raise ValueError(f"accuracy must hold numbers, got dtype {acc_arr.dtype}.")
    a = acc_arr.astype(np.float64)
    if not np.all(np.isfinite(a)) or np.any((a < 0) | (a > 1)):
        raise ValueError("accuracy must lie in [0, 1] and contain no NaN.")

    chance_after_flip = (1.0 - a_ref) / (n_classes - 1)
    lower = (a_ref - a) / (a_ref - chance_after_flip)
    # The tolerance keeps endpoints computed in another order of rounding inside the range.
    reachable = (a >= chance_after_flip - 1e-12) & (a <= a_ref + 1e-12)
    lower = np.where(reachable, np.clip(lower, 0.0, 1.0), np.nan)
    upper = (
        a_ref * (1.0 - a)
        + a * (1.0 - a_ref)
        + (1.0 - a_ref) * (1.0 - a) * (n_classes - 2) / (n_classes - 1)
    )
    if normalize:
        error = 1.0 - a
        safe = np.where(error > 0, error, 1.0)
        lower = np.where(error > 0, lower / safe, np.nan)
        upper = np.where(error > 0, upper / safe, np.nan)
    if lower.ndim == 0:
        return float(lower), float(upper)
    return lower, upper
