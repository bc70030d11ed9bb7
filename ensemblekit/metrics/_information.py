"""Entropy-based diversity of member predictions: mutual information, JS diversity and KL."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import entr, rel_entr

from ._validation import check_eps, check_member_proba


def _entropy(proba: np.ndarray, eps: float) -> np.ndarray:
    """Entropy in nats along the last axis, with ``eps`` added inside the logarithm."""
    if eps == 0.0:
        # entr follows the convention 0 * log(0) = 0.
        return entr(proba).sum(axis=-1)
    return -(proba * np.log(proba + eps)).sum(axis=-1)


def mutual_information(member_proba: Any, *, eps: float = 0.0) -> np.ndarray:
    r"""Per-example mutual information between the label and the member, in nats.

    .. math:: I_n = H\Big(\frac{1}{M}\sum_{m=1}^{M} p_m(\cdot \mid x_n)\Big)
              - \frac{1}{M}\sum_{m=1}^{M} H\big(p_m(\cdot \mid x_n)\big),
              \qquad H(p) = -\sum_{c} p_c \log p_c

    the entropy of the ensemble's mean prediction minus the mean entropy of the members.
    With the members read as samples from a posterior over networks this is the Bayesian
    mutual information :math:`I(y; \theta \mid x_n)` (the "BALD" score): the part of the
    predictive uncertainty that comes from disagreement between members. It is also the
    generalised Jensen-Shannon divergence of the members with equal weights, so
    :func:`js_diversity` is exactly its mean over examples. It is 0 when all members agree,
    and at most :math:`\log C`.

    Parameters
    ----------
    member_proba : array-like of shape (n_members, n_samples, n_classes)
        Class probabilities of each member (or posterior sample).
    eps : float, default=0.0
        Added to the probabilities inside every logarithm, :math:`-\sum_c p_c \log(p_c +
        \epsilon)`. With the default 0 the convention :math:`0 \log 0 = 0` applies and the
        result is the exact mutual information. ``eps=1e-5`` reproduces the code released with
        Fort, Hu & Lakshminarayanan (2019); it changes each entropy by at most
        ``n_classes * eps``.

    Returns
    -------
    ndarray of shape (n_samples,)
        Mutual information of each example, at least 0.

    See Also
    --------
    js_diversity : The mean over examples.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.metrics import mutual_information
    >>> members = np.array([[[1.0, 0.0], [0.5, 0.5]],
    ...                     [[0.0, 1.0], [0.5, 0.5]]])
    >>> mutual_information(members)  # log(2) where the members disagree, 0 where they agree
    array([0.693..., 0.  ])
    """
    proba = check_member_proba(member_proba)
    eps = check_eps(eps)
    info = _entropy(proba.mean(axis=0), eps) - _entropy(proba, eps).mean(axis=0)
    # Mutual information is >= 0 (entropy is concave, also with eps > 0); clipping only
    # removes rounding noise, e.g. -1e-17 for identical members.
    return np.maximum(info, 0.0)


def js_diversity(member_proba: Any, *, eps: float = 0.0) -> float:
    r"""Jensen-Shannon diversity of an ensemble, in nats, averaged over examples.

    .. math:: \mathrm{JS} = \frac{1}{N}\sum_{n=1}^{N}\Big[
              H\Big(\frac{1}{M}\sum_{m} p_m(\cdot \mid x_n)\Big)
              - \frac{1}{M}\sum_{m} H\big(p_m(\cdot \mid x_n)\big)\Big]

    This is the function-space diversity score of Fort, Hu & Lakshminarayanan (2019), and
    equals ``mutual_information(member_proba, eps=eps).mean()``: the two names are one
    quantity, per example (:func:`mutual_information`) or averaged (this function). Some texts
    write it as :math:`\sum_m \mathrm{KL}(p_m \,\|\, \bar p)`, which is ``n_members`` times
    this value. A single member has diversity 0.

    Parameters
    ----------
    member_proba : array-like of shape (n_members, n_samples, n_classes)
        Class probabilities of each member.
    eps : float, default=0.0
        Added inside every logarithm; see :func:`mutual_information`. Use ``eps=1e-5`` to
        reproduce the paper's released code.

    Returns
    -------
    float
        Diversity in [0, log(n_classes)].

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.metrics import js_diversity
    >>> members = np.array([[[1.0, 0.0], [0.5, 0.5]],
    ...                     [[0.0, 1.0], [0.5, 0.5]]])
    >>> js_diversity(members)  # (log(2) + 0) / 2
    0.346...
    """
    return float(mutual_information(member_proba, eps=eps).mean())


def pairwise_kl(member_proba: Any, *, eps: float = 0.0) -> np.ndarray:
    r"""Mean Kullback-Leibler divergence between every ordered pair of members, in nats.

    .. math:: K_{ij} = \frac{1}{N}\sum_{n=1}^{N}\sum_{c} p_{i,nc} \log\frac{p_{i,nc}}{p_{j,nc}}

    i.e. entry ``(i, j)`` is the mean over examples of :math:`\mathrm{KL}(p_i \,\|\, p_j)`.
    The matrix has a zero diagonal and is not symmetric.

    Parameters
    ----------
    member_proba : array-like of shape (n_members, n_samples, n_classes)
        Class probabilities of each member.
    eps : float, default=0.0
        Smoothing. With the default 0 terms with :math:`p_{i,nc} = 0` count 0, and an entry is
        ``inf`` when :math:`p_j` puts zero mass where :math:`p_i` does not. With ``eps > 0``
        every distribution is first replaced by :math:`(p + \epsilon)/(1 + C\epsilon)`, still a
        distribution, so entries stay finite and non-negative.

    Returns
    -------
    ndarray of shape (n_members, n_members)
        Mean divergences, each at least 0.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.metrics import pairwise_kl
    >>> members = np.array([[[0.5, 0.5]], [[0.9, 0.1]]])
    >>> pairwise_kl(members).round(4)  # 0.5 log(0.5/0.9) + 0.5 log(0.5/0.1) above the diagonal
    array([[0.    , 0.5108],
           [0.3681, 0.    ]])
    """
    proba = check_member_proba(member_proba)
    eps = check_eps(eps)
    if eps > 0.0:
        proba = (proba + eps) / (1.0 + proba.shape[2] * eps)
    n_members = proba.shape[0]
    out = np.empty((n_members, n_members))
    for i in range(n_members):
        out[i] = rel_entr(proba[i], proba).sum(axis=2).mean(axis=1)
    # KL is >= 0 (Gibbs' inequality); clipping only removes rounding noise of nearly equal
    # distributions, whose terms of both signs cancel to about -1e-17.
    return np.maximum(out, 0.0)
