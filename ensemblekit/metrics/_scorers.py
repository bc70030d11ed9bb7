"""Scorers ``(estimator, X, y) -> float`` built on an estimator's member probabilities."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning

from ._calibration import (
    accuracy,
    brier_score,
    ensemble_proba,
    expected_calibration_error,
    negative_log_likelihood,
)
from ._diversity import mean_pairwise_disagreement
from ._information import js_diversity
from ._regression import REGRESSION_SCORERS
from ._validation import check_member_proba, encode_labels, to_numpy

ScoreFunc = Callable[[np.ndarray, "np.ndarray | None"], float]


class _MemberProbaScorer:
    """Score an estimator from ``predict_member_proba(X)`` and ``classes_``.

    Parameters
    ----------
    name : str
        Name under which :func:`get_scorer` finds it.
    score_func : callable
        ``score_func(member_proba, y_index)`` with validated ``(M, N, C)`` probabilities and
        ``y`` mapped to column indices of ``classes_`` (``None`` when ``y`` is not given).
    needs_y : bool
        Whether the score depends on the true labels.
    """

    def __init__(self, name: str, score_func: ScoreFunc, *, needs_y: bool) -> None:
        self.name = name
        self.score_func = score_func
        self.needs_y = needs_y

    def __repr__(self) -> str:
        return f"get_scorer({self.name!r})"

    def __call__(self, estimator: Any, X: Any, y: Any = None) -> float:
        predict = getattr(estimator, "predict_member_proba", None)
        if not callable(predict):
            raise TypeError(
                f"The {self.name!r} scorer needs an estimator with a predict_member_proba "
                f"method, got {type(estimator).__name__}."
            )
        owner = f"{type(estimator).__name__}.predict_member_proba(X)"
        member_proba = check_member_proba(predict(X), name=owner)
        classes = to_numpy(estimator.classes_)
        if member_proba.shape[2] != classes.shape[0]:
            raise ValueError(
                f"{owner} has {member_proba.shape[2]} columns but the estimator has "
                f"{classes.shape[0]} classes_."
            )
        if y is None:
            if self.needs_y:
                raise ValueError(f"The {self.name!r} scorer needs the true labels y.")
            return float(self.score_func(member_proba, None))
        y_index = encode_labels(y, classes, name="y", classes_name="the estimator's classes_")
        if y_index.shape[0] != member_proba.shape[1]:
            raise ValueError(
                f"y has {y_index.shape[0]} samples but {owner} has {member_proba.shape[1]}."
            )
        return float(self.score_func(member_proba, y_index))


def _accuracy(member_proba: np.ndarray, y: np.ndarray | None) -> float:
    return accuracy(y, ensemble_proba(member_proba))


def _neg_log_loss(member_proba: np.ndarray, y: np.ndarray | None) -> float:
    return -negative_log_likelihood(y, ensemble_proba(member_proba))


def _neg_brier_score(member_proba: np.ndarray, y: np.ndarray | None) -> float:
    return -brier_score(y, ensemble_proba(member_proba))


def _neg_expected_calibration_error(member_proba: np.ndarray, y: np.ndarray | None) -> float:
    return -expected_calibration_error(y, ensemble_proba(member_proba))


def _disagreement(member_proba: np.ndarray, y: np.ndarray | None) -> float:
    # A single network has nothing to disagree with; 0 keeps n_estimators=1 usable in a search.
    if member_proba.shape[0] < 2:
        return 0.0
    return mean_pairwise_disagreement(member_proba)


def _normalized_disagreement(member_proba: np.ndarray, y: np.ndarray | None) -> float:
    if member_proba.shape[0] < 2:
        return 0.0
    # A ratio of means rather than a mean of per-pair ratios: a member that is right on
    # every test point (easy folds) leaves the score defined.
    error_rate = float(np.mean(member_proba.argmax(axis=2) != y))
    if error_rate == 0.0:
        warnings.warn(
            "normalized_disagreement is undefined when every member is right on every "
            "sample; returning nan.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return float("nan")
    return mean_pairwise_disagreement(member_proba) / error_rate


def _js_diversity(member_proba: np.ndarray, y: np.ndarray | None) -> float:
    return js_diversity(member_proba)


_SCORERS: dict[str, _MemberProbaScorer] = {
    scorer.name: scorer
    for scorer in (
        _MemberProbaScorer("accuracy", _accuracy, needs_y=True),
        _MemberProbaScorer("neg_log_loss", _neg_log_loss, needs_y=True),
        _MemberProbaScorer("neg_brier_score", _neg_brier_score, needs_y=True),
        _MemberProbaScorer(
            "neg_expected_calibration_error", _neg_expected_calibration_error, needs_y=True
        ),
        _MemberProbaScorer("disagreement", _disagreement, needs_y=False),
        _MemberProbaScorer("normalized_disagreement", _normalized_disagreement, needs_y=True),
        _MemberProbaScorer("js_diversity", _js_diversity, needs_y=False),
    )
}
# Scorers of regressors, from their members' means and standard deviations.
_SCORERS.update(REGRESSION_SCORERS)  # type: ignore[arg-type]


def get_scorer_names() -> list[str]:
    """Names of the scorers available from :func:`get_scorer`.

    Returns
    -------
    list of str
        Sorted scorer names.

    Examples
    --------
    >>> from ensemblekit.metrics import get_scorer_names
    >>> get_scorer_names()  # doctest: +NORMALIZE_WHITESPACE
    ['accuracy', 'disagreement', 'interval_coverage_90', 'js_diversity',
     'neg_brier_score', 'neg_crps', 'neg_expected_calibration_error', 'neg_gaussian_nll',
     'neg_interval_calibration_error', 'neg_interval_width_90', 'neg_log_loss',
     'normalized_disagreement']
    """
    return sorted(_SCORERS)


def get_scorer(name: str) -> Callable[..., float]:
    """Scorer ``scorer(estimator, X, y) -> float`` for an ensemble, by name.

    Each scorer calls ``estimator.predict_member_proba(X)``, of shape ``(n_members,
    n_samples, n_classes)``, and maps ``y`` to columns through ``estimator.classes_``; a label
    of ``y`` that is not in ``classes_`` raises a ValueError. Scorers of predictions score the
    ensemble prediction, the mean of the member probabilities. Pass them to
    :class:`~sklearn.model_selection.GridSearchCV`, :func:`~sklearn.model_selection.cross_validate`
    and friends, alone or in a ``scoring`` dict.

    Scikit-learn *maximises* every score. Losses are therefore negated, with the ``neg_``
    prefix of scikit-learn. Diversity scores are returned as they are, since more diversity
    is not a loss; a search that refits on a diversity score picks the *most* diverse model,
    which is rarely what you want, so use them for reporting next to a loss.

    ======================================  ====================================================
    name                                    value
    ======================================  ====================================================
    ``"accuracy"``                          :func:`accuracy` of the ensemble prediction
    ``"neg_log_loss"``                      minus :func:`negative_log_likelihood` (mean, nats)
    ``"neg_brier_score"``                   minus :func:`brier_score` (multi-class sum, in
                                            [0, 2]; twice scikit-learn's binary Brier score)
    ``"neg_expected_calibration_error"``    minus :func:`expected_calibration_error` (15
                                            equal-width bins)
    ``"disagreement"``                      :func:`mean_pairwise_disagreement` of the members
    ``"normalized_disagreement"``           :func:`mean_pairwise_disagreement` divided by the
                                            mean error rate of the members (``nan`` with an
                                            ``UndefinedMetricWarning`` if every member is
                                            right on every sample)
    ``"js_diversity"``                      :func:`js_diversity` of the members
    ``"neg_gaussian_nll"``                  regressors: minus :func:`gaussian_nll` of the
                                            mixture of the members' Gaussians
    ``"neg_crps"``                          regressors: minus :func:`crps` of that mixture
    ``"neg_interval_calibration_error"``    regressors: minus
                                            :func:`interval_calibration_error`
    ``"interval_coverage_90"``              regressors: :func:`interval_coverage` at 0.9
    ``"neg_interval_width_90"``             regressors: minus :func:`interval_width` at 0.9
    ======================================  ====================================================

    The regression scorers call ``estimator.predict_member(X)`` (means and standard
    deviations, see :mod:`ensemblekit.metrics`), inside a fitted search or a Pipeline too.

    With a single member, ``"disagreement"`` and ``"normalized_disagreement"`` return 0 (a
    network does not disagree with itself), as ``"js_diversity"`` does by its definition;
    ``n_estimators=1`` can thus sit in a parameter grid. ``"disagreement"`` and
    ``"js_diversity"`` also work with ``y=None``.

    Parameters
    ----------
    name : str
        One of :func:`get_scorer_names`.

    Returns
    -------
    callable
        The scorer.

    Raises
    ------
    ValueError
        If ``name`` is not a known scorer; the message lists the valid names.

    Examples
    --------
    >>> from ensemblekit.metrics import get_scorer
    >>> get_scorer("js_diversity")
    get_scorer('js_diversity')

    In a search, next to scikit-learn's own scorer names (training is skipped here):

    >>> from sklearn.model_selection import GridSearchCV
    >>> from ensemblekit import DeepEnsembleClassifier
    >>> search = GridSearchCV(
    ...     DeepEnsembleClassifier(max_epochs=20),
    ...     {"n_estimators": [1, 2, 4]},
    ...     scoring={"nll": get_scorer("neg_log_loss"),
    ...              "disagreement": get_scorer("disagreement")},
    ...     refit="nll",
    ... )
    >>> search.fit(X, y)  # doctest: +SKIP
    >>> search.cv_results_["mean_test_disagreement"]  # doctest: +SKIP
    """
    if not isinstance(name, str) or name not in _SCORERS:
        raise ValueError(f"Unknown scorer {name!r}; valid names are {get_scorer_names()}.")
    return _SCORERS[name]
