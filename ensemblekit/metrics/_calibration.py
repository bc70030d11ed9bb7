"""Accuracy, proper scoring rules and calibration error of predicted class probabilities."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ._validation import check_int, check_member_proba, check_proba, check_y_true

#: Lower clip of the probability of the true class in :func:`negative_log_likelihood`.
NLL_MIN_PROBA = float(np.finfo(np.float64).eps)

_ECE_STRATEGIES = ("uniform", "quantile")


def _prepare(y_true: Any, proba: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = check_proba(proba)
    y = check_y_true(y_true, p.shape[0], p.shape[1], labels=labels)
    return y, p


def ensemble_proba(member_proba: Any) -> np.ndarray:
    r"""Predictive distribution of an ensemble: the mean of its members' probabilities.

    .. math:: \bar p(c \mid x_n) = \frac{1}{M} \sum_{m=1}^{M} p_m(c \mid x_n)

    The metrics of predictions (:func:`accuracy`, :func:`negative_log_likelihood`,
    :func:`brier_score`, :func:`expected_calibration_error`) take one ``(n_samples,
    n_classes)`` array and refuse member arrays; reduce members with this function first.

    Parameters
    ----------
    member_proba : array-like of shape (n_members, n_samples, n_classes)
        Class probabilities of each member.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Mean probabilities.

    Examples
    --------
    >>> from ensemblekit.metrics import ensemble_proba
    >>> ensemble_proba([[[1.0, 0.0]], [[0.5, 0.5]]])
    array([[0.75, 0.25]])
    """
    return check_member_proba(member_proba).mean(axis=0)


def accuracy(y_true: Any, proba: Any, *, labels: Any = None) -> float:
    r"""Fraction of points whose top-1 predicted class is the true class.

    .. math:: \mathrm{acc} = \frac{1}{N}\sum_{n} \mathbb{1}[\arg\max_c p_{nc} = y_n]

    Ties go to the lowest column index.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels: integer column indices ``0 .. n_classes - 1``, or labels listed in
        ``labels``.
    proba : array-like of shape (n_samples, n_classes)
        Predicted class probabilities.
    labels : array-like of shape (n_classes,), default=None
        The label of each probability column, in column order. If given, ``y_true`` is mapped
        through it.

    Returns
    -------
    float
        Accuracy in [0, 1].

    Examples
    --------
    >>> from ensemblekit.metrics import accuracy
    >>> accuracy([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    0.666...
    >>> accuracy(["no", "yes"], [[0.8, 0.2], [0.3, 0.7]], labels=["no", "yes"])
    1.0
    """
    y, p = _prepare(y_true, proba, labels)
    return float(np.mean(p.argmax(axis=1) == y))


def negative_log_likelihood(y_true: Any, proba: Any, *, labels: Any = None) -> float:
    r"""Mean negative log-likelihood of the true labels (cross-entropy), in nats.

    .. math:: \mathrm{NLL} = -\frac{1}{N}\sum_{n=1}^{N} \log \max(p_{n, y_n}, \epsilon)

    with :math:`\epsilon` the float64 machine epsilon (about 2.2e-16), so one point costs at
    most about 36.04 nats instead of infinity. It is a mean over points, never a sum; for
    float64 input it equals :func:`sklearn.metrics.log_loss`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels: integer column indices ``0 .. n_classes - 1``, or labels listed in
        ``labels``.
    proba : array-like of shape (n_samples, n_classes)
        Predicted class probabilities.
    labels : array-like of shape (n_classes,), default=None
        The label of each probability column, in column order. If given, ``y_true`` is mapped
        through it.

    Returns
    -------
    float
        Mean NLL, at least 0.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.metrics import negative_log_likelihood
    >>> value = negative_log_likelihood([0, 1], [[0.5, 0.5], [0.2, 0.8]])
    >>> bool(np.isclose(value, -(np.log(0.5) + np.log(0.8)) / 2))
    True
    """
    y, p = _prepare(y_true, proba, labels)
    p_true = p[np.arange(p.shape[0]), y]
    return float(-np.mean(np.log(np.maximum(p_true, NLL_MIN_PROBA))))


def brier_score(y_true: Any, proba: Any, *, labels: Any = None) -> float:
    r"""Multi-class Brier score: squared error summed over classes, averaged over points.

    .. math:: \mathrm{BS} = \frac{1}{N}\sum_{n=1}^{N}\sum_{c=1}^{C}
              \left(p_{nc} - \mathbb{1}[c = y_n]\right)^2

    The range is [0, 2]; 0 for confident correct predictions, 2 for confident wrong ones.
    This is the convention of Fort, Hu & Lakshminarayanan (2019) and Ovadia et al. (2019).
    For two classes it is *twice* the binary Brier score
    :func:`sklearn.metrics.brier_score_loss`, which scores only the positive class.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels: integer column indices ``0 .. n_classes - 1``, or labels listed in
        ``labels``.
    proba : array-like of shape (n_samples, n_classes)
        Predicted class probabilities.
    labels : array-like of shape (n_classes,), default=None
        The label of each probability column, in column order. If given, ``y_true`` is mapped
        through it.

    Returns
    -------
    float
        Brier score in [0, 2].

    Examples
    --------
    >>> from ensemblekit.metrics import brier_score
    >>> # (0.8 - 1)^2 + 0.2^2 = 0.08 and 0.3^2 + (0.7 - 1)^2 = 0.18; their mean is 0.13
    >>> brier_score([0, 1], [[0.8, 0.2], [0.3, 0.7]])
    0.13
    """
    y, p = _prepare(y_true, proba, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def expected_calibration_error(
    y_true: Any,
    proba: Any,
    *,
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    labels: Any = None,
) -> float:
    r"""Top-label expected calibration error (ECE).

    Each point has a confidence :math:`s_n = \max_c p_{nc}` and is correct when its top-1
    class (ties to the lowest index) is the true one. Points are grouped into bins
    :math:`B_1, \dots, B_K` by confidence and

    .. math:: \mathrm{ECE} = \sum_{k=1}^{K} \frac{|B_k|}{N}
              \left| \mathrm{acc}(B_k) - \mathrm{conf}(B_k) \right|
              = \frac{1}{N} \sum_{k=1}^{K} \Big| \sum_{n \in B_k}
              (\mathbb{1}[\text{correct}_n] - s_n) \Big|

    where :math:`\mathrm{acc}(B_k)` and :math:`\mathrm{conf}(B_k)` are the fraction correct
    and the mean confidence in bin :math:`k`. Binning, exactly:

    - edges :math:`e_0 < \dots < e_K`: for ``strategy="uniform"``, ``np.linspace(0, 1, n_bins
      + 1)`` (equal width); for ``strategy="quantile"``, the ``k / n_bins`` quantiles of the
      confidences (``np.quantile`` with linear interpolation; equal mass);
    - bins are closed on the right: bin :math:`k` holds :math:`e_{k-1} < s \le e_k`, the first
      bin also holds everything :math:`\le e_1` and the last everything :math:`> e_{K-1}`, so
      every point lands in exactly one bin;
    - empty bins contribute nothing (quantile edges that coincide because of tied
      confidences give empty bins);
    - each bin is weighted by its share of the points, :math:`|B_k| / N`.

    These are the bins of :func:`sklearn.calibration.calibration_curve`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels: integer column indices ``0 .. n_classes - 1``, or labels listed in
        ``labels``.
    proba : array-like of shape (n_samples, n_classes)
        Predicted class probabilities.
    n_bins : int, default=15
        Number of bins :math:`K`.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    labels : array-like of shape (n_classes,), default=None
        The label of each probability column, in column order. If given, ``y_true`` is mapped
        through it.

    Returns
    -------
    float
        ECE in [0, 1].

    Examples
    --------
    >>> from ensemblekit.metrics import expected_calibration_error
    >>> proba = [[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]
    >>> # one bin: accuracy 3/4, mean confidence (0.9 + 0.9 + 0.6 + 0.7) / 4 = 0.775
    >>> expected_calibration_error([0, 0, 1, 0], proba, n_bins=1)
    0.025...
    >>> # two bins, (0, 0.5] is empty and (0.5, 1] holds all points: the same value
    >>> expected_calibration_error([0, 0, 1, 0], proba, n_bins=2)
    0.025...
    """
    n_bins = check_int(n_bins, name="n_bins", min_value=1)
    if not isinstance(strategy, str) or strategy not in _ECE_STRATEGIES:
        raise ValueError(f"strategy must be one of {list(_ECE_STRATEGIES)}, got {strategy!r}.")
    y, p = _prepare(y_true, proba, labels)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        edges = np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1))
    bin_ids = np.searchsorted(edges[1:-1], confidence, side="left")
    gap = np.bincount(bin_ids, weights=correct - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / p.shape[0])
