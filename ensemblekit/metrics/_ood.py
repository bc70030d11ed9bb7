"""Out-of-distribution detection: per-example uncertainty scores and how well they separate.

The scores take class probabilities (or member probabilities) and return one number per
example; the detection metrics compare the scores of in-distribution inputs with those of
out-of-distribution (OOD) inputs and compute, without scikit-learn, the quantities that
:func:`sklearn.metrics.roc_auc_score`, :func:`sklearn.metrics.average_precision_score` and
:func:`sklearn.metrics.roc_curve` define, with tied scores treated as scikit-learn treats
them (a threshold at each distinct score, an example flagged when its score is at least the
threshold, so tied examples are flagged together).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.stats import rankdata

from ._information import _entropy
from ._validation import check_eps, check_member_proba, check_proba, to_numpy

_POSITIVES = ("ood", "in")


def _check_proba_or_members(proba: Any, name: str) -> np.ndarray:
    """Return ``(n_samples, n_classes)`` probabilities; member arrays are averaged first."""
    arr = to_numpy(proba)
    if arr.ndim == 3:
        return check_member_proba(arr, name=name).mean(axis=0)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be an array of shape (n_samples, n_classes) or (n_members, "
            f"n_samples, n_classes), got an array of shape {arr.shape}."
        )
    return check_proba(arr, name=name)


def predictive_entropy(proba: Any, *, eps: float = 0.0) -> np.ndarray:
    r"""Entropy of the predictive distribution of each example, in nats.

    .. math:: H_n = -\sum_{c} \bar p_{nc} \log \bar p_{nc}, \qquad
              \bar p_{nc} = \frac{1}{M}\sum_{m=1}^{M} p_{m,nc}

    The total predictive uncertainty of an ensemble (Lakshminarayanan, Pritzel & Blundell
    2017, OOD experiments); it splits into :func:`expected_entropy` (aleatoric) plus
    :func:`mutual_information` (epistemic). Higher means more uncertain, hence more likely
    out of distribution.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes) or (n_members, n_samples, n_classes)
        Class probabilities, or member probabilities that are averaged first.
    eps : float, default=0.0
        Added inside the logarithm, as in :func:`mutual_information`; with 0 the convention
        :math:`0 \log 0 = 0` applies.

    Returns
    -------
    ndarray of shape (n_samples,)
        Entropies in [0, log(n_classes)].

    Raises
    ------
    ValueError
        If ``proba`` is not a valid probability array of either shape.

    Examples
    --------
    >>> from ensemblekit.metrics import predictive_entropy
    >>> predictive_entropy([[1.0, 0.0], [0.5, 0.5]])
    array([0.   , 0.693...])
    """
    return _entropy(_check_proba_or_members(proba, "proba"), check_eps(eps))


def expected_entropy(member_proba: Any, *, eps: float = 0.0) -> np.ndarray:
    r"""Mean entropy of the members' predictions of each example, in nats.

    .. math:: E_n = \frac{1}{M}\sum_{m=1}^{M} \Big(-\sum_{c} p_{m,nc} \log p_{m,nc}\Big)

    The aleatoric part of :func:`predictive_entropy` (Depeweg et al. 2018, "Decomposition of
    uncertainty in Bayesian deep learning"): ``predictive_entropy - expected_entropy`` is
    :func:`mutual_information`.

    Parameters
    ----------
    member_proba : array-like of shape (n_members, n_samples, n_classes)
        Class probabilities of each member (or posterior sample).
    eps : float, default=0.0
        Added inside the logarithm; see :func:`mutual_information`.

    Returns
    -------
    ndarray of shape (n_samples,)
        Mean entropies in [0, log(n_classes)].

    Raises
    ------
    ValueError
        If ``member_proba`` is not a valid ``(n_members, n_samples, n_classes)`` array.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.metrics import expected_entropy
    >>> members = np.array([[[1.0, 0.0], [0.5, 0.5]],
    ...                     [[0.0, 1.0], [0.5, 0.5]]])
    >>> expected_entropy(members)  # confident members that disagree: no aleatoric part
    array([0.   , 0.693...])
    """
    return _entropy(check_member_proba(member_proba), check_eps(eps)).mean(axis=0)


def max_probability(proba: Any) -> np.ndarray:
    r"""Largest predicted class probability of each example (the maximum softmax probability).

    .. math:: \mathrm{MSP}_n = \max_c \bar p_{nc}

    The baseline OOD score of Hendrycks & Gimpel (2017). Unlike the entropies, *higher* means
    more confident, hence more likely in distribution: pass ``higher_is_ood=False`` to the
    detection metrics (or negate it).

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes) or (n_members, n_samples, n_classes)
        Class probabilities, or member probabilities that are averaged first.

    Returns
    -------
    ndarray of shape (n_samples,)
        Probabilities in [1 / n_classes, 1].

    Raises
    ------
    ValueError
        If ``proba`` is not a valid probability array of either shape.

    Examples
    --------
    >>> from ensemblekit.metrics import max_probability
    >>> max_probability([[[0.9, 0.1]], [[0.5, 0.5]]])  # members averaged first
    array([0.7])
    """
    return _check_proba_or_members(proba, "proba").max(axis=1)


def _check_scores(scores: Any, name: str) -> np.ndarray:
    arr = to_numpy(scores)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of scores, got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; each group needs at least one example.")
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def _oriented(
    scores_in: Any, scores_out: Any, higher_is_ood: bool, positive: str
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the positive and the negative group, oriented so that higher is positive."""
    if not isinstance(higher_is_ood, (bool, np.bool_)):
        raise ValueError(f"higher_is_ood must be True or False, got {higher_is_ood!r}.")
    if positive not in _POSITIVES:
        raise ValueError(f"positive must be one of {list(_POSITIVES)}, got {positive!r}.")
    s_in = _check_scores(scores_in, "scores_in")
    s_out = _check_scores(scores_out, "scores_out")
    if not higher_is_ood:
        s_in, s_out = -s_in, -s_out
    if positive == "ood":
        return s_out, s_in
    return -s_in, -s_out


def _cumulative_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, from the highest threshold down."""
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="stable")
    scores, is_pos = scores[order], is_pos[order]
    # The last index of each run of equal scores: tied examples cross a threshold together.
    ends = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1]
    tps = np.cumsum(is_pos)[ends]
    return tps, (ends + 1) - tps


def ood_auroc(scores_in: Any, scores_out: Any, *, higher_is_ood: bool = True) -> float:
    r"""Area under the ROC curve of telling out-of-distribution inputs from in-distribution ones.

    .. math:: \mathrm{AUROC} = \frac{1}{N_\mathrm{in} N_\mathrm{out}} \sum_{i,j}
              \Big(\mathbb{1}[s^\mathrm{out}_j > s^\mathrm{in}_i]
              + \tfrac12 \mathbb{1}[s^\mathrm{out}_j = s^\mathrm{in}_i]\Big)

    The probability that a random OOD input scores above a random in-distribution one, ties
    counting one half (the Mann-Whitney statistic, computed from average ranks). It equals
    :func:`sklearn.metrics.roc_auc_score` with OOD inputs as the positive class, and does not
    change when the roles of the two groups are swapped together with the score's sign. 0.5 is
    chance, 1 a perfect separation.

    Parameters
    ----------
    scores_in : array-like of shape (n_in,)
        Scores of in-distribution inputs, e.g. :func:`mutual_information` of test data.
    scores_out : array-like of shape (n_out,)
        Scores of out-of-distribution inputs.
    higher_is_ood : bool, default=True
        Whether a higher score means "more likely OOD" (entropies, mutual information). Set
        False for confidences such as :func:`max_probability`.

    Returns
    -------
    float
        AUROC in [0, 1].

    Raises
    ------
    ValueError
        If a group is empty or holds non-finite or non-numeric scores.

    Examples
    --------
    >>> from ensemblekit.metrics import ood_auroc
    >>> ood_auroc([0.1, 0.4, 0.35], [0.8, 0.4])  # 5 of 6 pairs ordered, one tie
    0.916...
    """
    pos, neg = _oriented(scores_in, scores_out, higher_is_ood, "ood")
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks of ties
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def ood_aupr(
    scores_in: Any,
    scores_out: Any,
    *,
    positive: Literal["ood", "in"] = "ood",
    higher_is_ood: bool = True,
) -> float:
    r"""Area under the precision-recall curve of OOD detection, as average precision.

    .. math:: \mathrm{AP} = \sum_k (R_k - R_{k-1})\, P_k

    over the thresholds :math:`k` at each distinct score, from the highest down (:math:`R_0 =
    0`), with precision :math:`P_k` and recall :math:`R_k` of the positive group. This is
    :func:`sklearn.metrics.average_precision_score`, without interpolation. Unlike the AUROC
    it depends on which group is positive and on their sizes: ``positive="ood"`` gives
    "AUPR-Out" and ``positive="in"`` (in-distribution inputs positive, the scores negated)
    "AUPR-In" (Hendrycks & Gimpel 2017). A detector without skill has the positive group's
    share of all inputs.

    Parameters
    ----------
    scores_in : array-like of shape (n_in,)
        Scores of in-distribution inputs.
    scores_out : array-like of shape (n_out,)
        Scores of out-of-distribution inputs.
    positive : {"ood", "in"}, default="ood"
        Which group is the positive class.
    higher_is_ood : bool, default=True
        Whether a higher score means "more likely OOD"; False for confidences.

    Returns
    -------
    float
        Average precision in (0, 1].

    Raises
    ------
    ValueError
        If a group is empty or holds invalid scores, or ``positive`` is unknown.

    Examples
    --------
    >>> from ensemblekit.metrics import ood_aupr
    >>> ood_aupr([0.1, 0.5], [0.9, 0.3])  # recall 1/2 at precision 1, then 2/2 at 2/3
    0.833...
    """
    pos, neg = _oriented(scores_in, scores_out, higher_is_ood, positive)
    tps, fps = _cumulative_counts(pos, neg)
    precision = tps / (tps + fps)
    recall = tps / pos.size
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def fpr_at_95_tpr(
    scores_in: Any,
    scores_out: Any,
    *,
    positive: Literal["ood", "in"] = "ood",
    higher_is_ood: bool = True,
) -> float:
    r"""False-positive rate at the first threshold whose true-positive rate reaches 95%.

    Thresholds are the distinct scores, from the highest down, an input being flagged positive
    when its score is at least the threshold (the points of :func:`sklearn.metrics.roc_curve`
    with ``drop_intermediate=False``). The result is the smallest false-positive rate among
    the thresholds with :math:`\mathrm{TPR} \ge 0.95`, without interpolation. Two conventions
    are in use, both offered:

    - ``positive="ood"`` (default): the fraction of in-distribution inputs flagged as OOD when
      95% of OOD inputs are flagged (Hendrycks, Mazeika & Dietterich 2019, "FPR95");
    - ``positive="in"``: the fraction of OOD inputs accepted as in-distribution when 95% of
      in-distribution inputs are accepted (Liang, Li & Srikant 2018, ODIN).

    Lower is better; a detector without skill has about 0.95.

    Parameters
    ----------
    scores_in : array-like of shape (n_in,)
        Scores of in-distribution inputs.
    scores_out : array-like of shape (n_out,)
        Scores of out-of-distribution inputs.
    positive : {"ood", "in"}, default="ood"
        Which group the true-positive rate counts.
    higher_is_ood : bool, default=True
        Whether a higher score means "more likely OOD"; False for confidences.

    Returns
    -------
    float
        False-positive rate in [0, 1].

    Raises
    ------
    ValueError
        If a group is empty or holds invalid scores, or ``positive`` is unknown.

    Examples
    --------
    >>> from ensemblekit.metrics import fpr_at_95_tpr
    >>> fpr_at_95_tpr([0.1, 0.2, 0.6, 0.9], [0.5, 0.7, 0.8])  # all OOD flagged at 0.5
    0.5
    """
    pos, neg = _oriented(scores_in, scores_out, higher_is_ood, positive)
    tps, fps = _cumulative_counts(pos, neg)
    # TPR >= 95% in integers (20 tp >= 19 P), so that e.g. 19 of 20 is not lost to rounding.
    first = int(np.argmax(20 * tps >= 19 * pos.size))
    return float(fps[first] / neg.size)
