"""Scorers ``(estimator, X, y) -> float`` built on an estimator's member probabilities.

:func:`get_scorer` is a strict superset of :func:`sklearn.metrics.get_scorer`: every name
scikit-learn knows returns scikit-learn's own scorer, and the ensemble-only names below return
scorers of the member probabilities. Scikit-learn has no public way to register new names, so
``scoring="disagreement"`` cannot work as a plain string inside scikit-learn; pass the scorer
objects instead (alone or in a ``scoring`` dict).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import get_scorer as _sklearn_get_scorer
from sklearn.metrics import get_scorer_names as _sklearn_get_scorer_names
from sklearn.pipeline import Pipeline

from ._calibration import (
    brier_score,
    ensemble_proba,
    expected_calibration_error,
)
from ._diversity import mean_pairwise_disagreement
from ._information import js_diversity, mutual_information
from ._ood import (
    expected_entropy,
    fpr_at_95_tpr,
    max_probability,
    ood_aupr,
    ood_auroc,
    predictive_entropy,
)
from ._regression import REGRESSION_SCORERS
from ._validation import check_member_proba, encode_labels, to_numpy

ScoreFunc = Callable[[np.ndarray, "np.ndarray | None"], float]

_SUPPORTED = (
    "an estimator with a predict_member_proba method (an ensemble), a Pipeline whose last "
    "step is one, or a fitted search (GridSearchCV, RandomizedSearchCV, ...) whose "
    "best_estimator_ is one"
)


def _member_proba_source(estimator: Any, Xs: tuple, scorer_name: str) -> tuple[Any, tuple]:
    """Find the ensemble behind ``estimator`` and the inputs ``Xs`` as it sees them.

    A Pipeline passes each input through the ``transform`` of every step but the last, as its
    own ``predict`` does, and hands over to its last step; a fitted search hands over to its
    ``best_estimator_``. Both nest in any order.
    """
    chain = []
    current = estimator
    while True:
        chain.append(type(current).__name__)
        if callable(getattr(current, "predict_member_proba", None)):
            return current, Xs
        if isinstance(current, Pipeline):
            for _, step in current.steps[:-1]:
                if step is None or isinstance(step, str):  # "passthrough"
                    continue
                Xs = tuple(step.transform(X) for X in Xs)
            current = current.steps[-1][1]
            if current is None or isinstance(current, str):
                chain.append(repr(current))
                break
            continue
        if hasattr(current, "best_estimator_"):
            current = current.best_estimator_
            continue
        if hasattr(current, "cv_results_"):
            raise TypeError(
                f"The {scorer_name!r} scorer got a {type(current).__name__} without a "
                "best_estimator_ (fitted with refit=False?); refit it, or score its "
                "candidates' estimators directly."
            )
        break
    got = " -> ".join(chain)
    raise TypeError(f"The {scorer_name!r} scorer needs {_SUPPORTED}; got {got}.")


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
        ensemble, (X,) = _member_proba_source(estimator, (X,), self.name)
        owner = f"{type(ensemble).__name__}.predict_member_proba(X)"
        member_proba = check_member_proba(ensemble.predict_member_proba(X), name=owner)
        classes = to_numpy(ensemble.classes_)
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


def _neg_multiclass_brier_score(member_proba: np.ndarray, y: np.ndarray | None) -> float:
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
        _MemberProbaScorer("neg_multiclass_brier_score", _neg_multiclass_brier_score, needs_y=True),
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


def get_scorer_names(*, ensemble_only: bool = False) -> list[str]:
    """List the names :func:`get_scorer` accepts: scikit-learn's and the ensemble-only ones.

    Parameters
    ----------
    ensemble_only : bool, default=False
        List only the names this library adds to :func:`sklearn.metrics.get_scorer_names`.

    Returns
    -------
    list of str
        Sorted scorer names.

    Examples
    --------
    >>> from ensemblekit.metrics import get_scorer_names
    >>> get_scorer_names(ensemble_only=True)  # doctest: +NORMALIZE_WHITESPACE
    ['disagreement', 'interval_coverage_90', 'js_diversity', 'neg_crps',
     'neg_expected_calibration_error', 'neg_gaussian_nll', 'neg_interval_calibration_error',
     'neg_interval_width_90', 'neg_multiclass_brier_score', 'normalized_disagreement']
    >>> "neg_log_loss" in get_scorer_names()
    True
    """
    if ensemble_only:
        return sorted(_SCORERS)
    return sorted(set(_sklearn_get_scorer_names()) | set(_SCORERS))


def get_scorer(scoring: Any) -> Any:
    """Scorer ``scorer(estimator, X, y) -> float`` by name, for ensembles and everything else.

    A strict superset of :func:`sklearn.metrics.get_scorer`: a name scikit-learn knows (e.g.
    ``"accuracy"``, ``"neg_log_loss"``) returns scikit-learn's scorer, a callable or ``None``
    is returned as it is, and anything else fails as in scikit-learn. The ensemble-only names
    below (:func:`get_scorer_names` with ``ensemble_only=True``) return scorers of the member
    probabilities. Pass them to :class:`~sklearn.model_selection.GridSearchCV`,
    :func:`~sklearn.model_selection.cross_validate` and friends, alone or in a ``scoring``
    dict. Scikit-learn offers no public way to register new scorer names, so
    ``scoring="disagreement"`` as a plain string does not work there; use
    ``scoring={"disagreement": get_scorer("disagreement")}``.

    An ensemble-only scorer finds the ensemble (an estimator with ``predict_member_proba``)
    the way scikit-learn finds a predictor: in a :class:`~sklearn.pipeline.Pipeline`, ``X``
    goes through the ``transform`` of every step but the last and the last step is scored; in
    a fitted search (anything with a ``best_estimator_``) the ``best_estimator_`` is scored;
    both nest. It then calls ``predict_member_proba(X)``, of shape ``(n_members, n_samples,
    n_classes)``, and maps ``y`` to columns through the ensemble's ``classes_``; a label of
    ``y`` that is not in ``classes_`` raises a ValueError. Scores of predictions score the
    ensemble prediction, the mean of the member probabilities.

    Scikit-learn *maximises* every score. Losses are therefore negated, with the ``neg_``
    prefix of scikit-learn. Diversity scores are returned as they are, since more diversity
    is not a loss; a search that refits on a diversity score picks the *most* diverse model,
    which is rarely what you want, so use them for reporting next to a loss.

    ======================================  ====================================================
    ensemble-only name                      value
    ======================================  ====================================================
    ``"neg_multiclass_brier_score"``        minus :func:`brier_score` (multi-class sum, in
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
    scoring : str, callable or None
        One of :func:`get_scorer_names`, a scorer (returned as it is), or ``None``.

    Returns
    -------
    callable or None
        The scorer; a new copy for a scikit-learn name, as scikit-learn returns.

    Raises
    ------
    ValueError
        If ``scoring`` is a string that neither scikit-learn nor this library knows; the
        message lists the ensemble-only names. Other invalid types raise scikit-learn's
        ``InvalidParameterError`` (a ValueError).
    TypeError
        When an ensemble-only scorer is called on an estimator that is not an ensemble, a
        Pipeline ending in one or a fitted search whose ``best_estimator_`` is one.

    Examples
    --------
    >>> from ensemblekit.metrics import get_scorer
    >>> get_scorer("js_diversity")
    get_scorer('js_diversity')
    >>> get_scorer("neg_log_loss")
    make_scorer(log_loss, greater_is_better=False, response_method='predict_proba')

    In a search, next to scikit-learn's own scorer names (training is skipped here):

    >>> from sklearn.model_selection import GridSearchCV
    >>> from ensemblekit import DeepEnsembleClassifier
    >>> search = GridSearchCV(
    ...     DeepEnsembleClassifier(max_epochs=20),
    ...     {"n_estimators": [1, 2, 4]},
    ...     scoring={"nll": "neg_log_loss", "disagreement": get_scorer("disagreement")},
    ...     refit="nll",
    ... )
    >>> search.fit(X, y)  # doctest: +SKIP
    >>> search.cv_results_["mean_test_disagreement"]  # doctest: +SKIP
    """
    if isinstance(scoring, str):
        if scoring in _SCORERS:
            return _SCORERS[scoring]
        if scoring not in _sklearn_get_scorer_names():
            raise ValueError(
                f"{scoring!r} is not a valid scoring value. Use "
                "ensemblekit.metrics.get_scorer_names() to get valid options; the names "
                f"added to scikit-learn's are {get_scorer_names(ensemble_only=True)}."
            )
    return _sklearn_get_scorer(scoring)


def _neg_fpr_at_95_tpr(scores_in: Any, scores_out: Any, *, higher_is_ood: bool) -> float:
    return -fpr_at_95_tpr(scores_in, scores_out, higher_is_ood=higher_is_ood)


# name -> (per-example score of member probabilities, whether higher means more likely OOD)
_OOD_SCORES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], bool]] = {
    "mutual_information": (mutual_information, True),
    "predictive_entropy": (predictive_entropy, True),
    "expected_entropy": (expected_entropy, True),
    "max_probability": (max_probability, False),
}
_OOD_METRICS: dict[str, Callable[..., float]] = {
    "auroc": ood_auroc,
    "aupr": ood_aupr,
    "neg_fpr_at_95_tpr": _neg_fpr_at_95_tpr,
}


class _OODScorer:
    """Score how well an uncertainty score separates ``X`` from a fixed OOD set."""

    def __init__(self, X_ood: Any, score: str, metric: str) -> None:
        self.X_ood = X_ood
        self.score = score
        self.metric = metric

    def __repr__(self) -> str:
        shape = getattr(self.X_ood, "shape", None)
        what = f"X_ood of shape {tuple(shape)}" if shape is not None else "X_ood"
        return f"make_ood_scorer({what}, score={self.score!r}, metric={self.metric!r})"

    def __call__(self, estimator: Any, X: Any, y: Any = None) -> float:
        name = f"{self.metric} of {self.score}"
        ensemble, (X_in, X_out) = _member_proba_source(estimator, (X, self.X_ood), name)
        score_func, higher_is_ood = _OOD_SCORES[self.score]
        owner = f"{type(ensemble).__name__}.predict_member_proba"
        s_in = score_func(check_member_proba(ensemble.predict_member_proba(X_in), name=owner))
        s_out = score_func(
            check_member_proba(ensemble.predict_member_proba(X_out), name=owner + "(X_ood)")
        )
        return float(_OOD_METRICS[self.metric](s_in, s_out, higher_is_ood=higher_is_ood))


def make_ood_scorer(
    X_ood: Any, *, score: str = "mutual_information", metric: str = "auroc"
) -> Callable[..., float]:
    """Scorer of out-of-distribution detection against a fixed set of OOD inputs.

    The scorer ``scorer(estimator, X, y=None)`` treats ``X`` (e.g. the test fold of a
    cross-validation) as in-distribution and ``X_ood`` as out-of-distribution, computes the
    per-example ``score`` of the ensemble on both from ``predict_member_proba`` and returns
    ``metric`` of the two groups; ``y`` is ignored. It finds the ensemble in a Pipeline
    (both inputs go through the same transforms) or a fitted search like the scorers of
    :func:`get_scorer`.

    Parameters
    ----------
    X_ood : array-like
        Out-of-distribution inputs, in the format the estimator takes (before any Pipeline
        step).
    score : {"mutual_information", "predictive_entropy", "expected_entropy", \
"max_probability"}, default="mutual_information"
        The per-example score: :func:`mutual_information`, :func:`predictive_entropy`,
        :func:`expected_entropy`, or :func:`max_probability` (a confidence: lower means more
        likely OOD, which the scorer takes into account).
    metric : {"auroc", "aupr", "neg_fpr_at_95_tpr"}, default="auroc"
        :func:`ood_auroc`, :func:`ood_aupr` (OOD inputs positive), or minus
        :func:`fpr_at_95_tpr` (OOD inputs positive), negated so that higher is better.

    Returns
    -------
    callable
        The scorer; it pickles with ``X_ood``.

    Raises
    ------
    ValueError
        If ``score`` or ``metric`` is unknown (the message lists the valid ones).

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.metrics import make_ood_scorer
    >>> make_ood_scorer(np.zeros((20, 64)), metric="aupr")
    make_ood_scorer(X_ood of shape (20, 64), score='mutual_information', metric='aupr')
    >>> from sklearn.model_selection import cross_validate
    >>> scores = cross_validate(clf, X_in, y_in,  # doctest: +SKIP
    ...                         scoring={"ood_auroc": make_ood_scorer(X_ood)})
    """
    if score not in _OOD_SCORES:
        raise ValueError(f"score must be one of {sorted(_OOD_SCORES)}, got {score!r}.")
    if metric not in _OOD_METRICS:
        raise ValueError(f"metric must be one of {sorted(_OOD_METRICS)}, got {metric!r}.")
    return _OODScorer(X_ood, score, metric)
