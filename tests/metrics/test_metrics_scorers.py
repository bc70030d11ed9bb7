"""Tests of the scorers on a real ensemble, alone and inside scikit-learn's model selection."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.preprocessing import StandardScaler

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.metrics import (
    accuracy,
    brier_score,
    ensemble_proba,
    expected_calibration_error,
    get_scorer,
    get_scorer_names,
    js_diversity,
    mean_pairwise_disagreement,
    negative_log_likelihood,
    normalized_disagreement,
)

SCORER_NAMES = [
    "accuracy",
    "disagreement",
    "js_diversity",
    "neg_brier_score",
    "neg_expected_calibration_error",
    "neg_log_loss",
    "normalized_disagreement",
]
TINY = {"max_epochs": 3, "lr": 1e-2, "module__hidden_layer_sizes": (16,), "random_state": 0}


@pytest.fixture(scope="module")
def iris_named():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    # String labels, so the scorers have to map them through classes_.
    return X, np.array(["setosa", "versicolor", "virginica"])[y]


@pytest.fixture(scope="module")
def fitted(iris_named):
    X, y = iris_named
    model = DeepEnsembleClassifier(n_estimators=3, **TINY).fit(X, y)
    # Members of unequal accuracy that partly disagree, so that every scorer is exercised
    # away from its degenerate cases.
    member_proba = model.predict_member_proba(X)
    member_acc = [accuracy_score(y, model.classes_[p.argmax(1)]) for p in member_proba]
    assert len(set(member_acc)) > 1 and max(member_acc) < 1
    assert 0 < mean_pairwise_disagreement(member_proba) < 1
    return model


def _expected(name, member_proba, y_idx):
    mean = member_proba.mean(axis=0)
    if name == "accuracy":
        return accuracy(y_idx, mean)
    if name == "neg_log_loss":
        return -negative_log_likelihood(y_idx, mean)
    if name == "neg_brier_score":
        return -brier_score(y_idx, mean)
    if name == "neg_expected_calibration_error":
        return -expected_calibration_error(y_idx, mean, n_bins=15)
    if name == "disagreement":
        return mean_pairwise_disagreement(member_proba)
    if name == "js_diversity":
        return js_diversity(member_proba)
    assert name == "normalized_disagreement"
    # Sum over ordered pairs of disagreements over the sum of the compared members' error
    # rates, i.e. the ratio of the two means; cross-checked per pair with the function.
    m = member_proba.shape[0]
    pairs = [(i, j) for i in range(m) for j in range(m) if i != j]
    errors = [1 - accuracy(y_idx, member_proba[i]) for i, _ in pairs]
    ratios = [normalized_disagreement(member_proba[i], member_proba[j], y_idx) for i, j in pairs]
    return np.dot(ratios, errors) / np.sum(errors)


# Tested with the regressors in test_metrics_regression.py.
REGRESSION_SCORER_NAMES = [
    "interval_coverage_90",
    "neg_crps",
    "neg_gaussian_nll",
    "neg_interval_calibration_error",
    "neg_interval_width_90",
]


def test_scorer_names():
    assert get_scorer_names() == sorted(SCORER_NAMES + REGRESSION_SCORER_NAMES)


@pytest.mark.parametrize("name", SCORER_NAMES)
def test_scorer_equals_metric_on_member_proba(fitted, iris_named, name):
    X, y = iris_named
    column = {label: i for i, label in enumerate(fitted.classes_)}
    y_idx = np.array([column[label] for label in y])
    member_proba = fitted.predict_member_proba(X)
    assert member_proba.shape == (3, len(X), 3)
    score = get_scorer(name)(fitted, X, y)
    assert isinstance(score, float)
    assert score == pytest.approx(_expected(name, member_proba, y_idx))
    if name.startswith("neg_"):
        assert score <= 0.0
    else:
        assert score >= 0.0


def test_prediction_scorers_agree_with_sklearn(fitted, iris_named):
    X, y = iris_named
    assert get_scorer("accuracy")(fitted, X, y) == pytest.approx(
        accuracy_score(y, fitted.predict(X))
    )
    proba = fitted.predict_proba(X)
    np.testing.assert_allclose(proba, ensemble_proba(fitted.predict_member_proba(X)), atol=1e-6)
    expected = -log_loss(y, proba.astype(np.float64), labels=fitted.classes_)
    assert get_scorer("neg_log_loss")(fitted, X, y) == pytest.approx(expected, rel=1e-5)


def test_diversity_scorers_without_y(fitted, iris_named):
    X, y = iris_named
    for name in ("disagreement", "js_diversity"):
        assert get_scorer(name)(fitted, X) == get_scorer(name)(fitted, X, y)
    with pytest.raises(ValueError, match="needs the true labels"):
        get_scorer("neg_brier_score")(fitted, X)


def test_single_member_has_zero_diversity(iris_named):
    X, y = iris_named
    single = DeepEnsembleClassifier(n_estimators=1, **TINY).fit(X, y)
    for name in ("disagreement", "normalized_disagreement", "js_diversity"):
        assert get_scorer(name)(single, X, y) == 0.0


def test_unknown_labels_raise(fitted, iris_named):
    X, y = iris_named
    y_bad = y.copy()
    y_bad[0] = "rose"
    with pytest.raises(ValueError, match=r"not in the estimator's classes_: 'rose'"):
        get_scorer("accuracy")(fitted, X, y_bad)
    with pytest.raises(ValueError, match="not in the estimator's classes_"):
        get_scorer("neg_log_loss")(fitted, X, np.zeros(len(X), dtype=int))


def test_estimator_without_member_proba(iris_named):
    X, y = iris_named
    model = DummyClassifier().fit(X, y)
    with pytest.raises(TypeError, match="predict_member_proba"):
        get_scorer("accuracy")(model, X, y)


@pytest.mark.parametrize("name", ["neg_ece", "brier", "", None])
def test_unknown_scorer_name_lists_valid_names(name):
    with pytest.raises(ValueError, match=r"valid names are .*'neg_log_loss'"):
        get_scorer(name)


def test_scorers_pickle(fitted, iris_named):
    # Parallel searches send scorers to worker processes.
    X, y = iris_named
    for name in SCORER_NAMES:
        restored = pickle.loads(pickle.dumps(get_scorer(name)))
        assert restored(fitted, X, y) == get_scorer(name)(fitted, X, y)


def test_grid_search_with_every_scorer(iris_named):
    X, y = iris_named
    scoring = {name: get_scorer(name) for name in SCORER_NAMES}
    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
    search = GridSearchCV(
        DeepEnsembleClassifier(**TINY),
        {"n_estimators": [1, 2]},
        scoring=scoring,
        refit="neg_log_loss",
        cv=cv,
        error_score="raise",
    ).fit(X, y)
    results = search.cv_results_
    for name in SCORER_NAMES:
        assert np.all(np.isfinite(results[f"mean_test_{name}"])), name
    params = [p["n_estimators"] for p in results["params"]]
    one = params.index(1)
    assert results["mean_test_disagreement"][one] == 0.0
    assert results["mean_test_js_diversity"][one] == 0.0
    # refit picks the candidate with the highest (least negative) mean neg_log_loss.
    best = int(np.argmax(results["mean_test_neg_log_loss"]))
    assert search.best_params_ == results["params"][best]
    assert search.best_estimator_.predict_member_proba(X).shape[0] == params[best]


def test_cross_validate_with_scorers(iris_named):
    X, y = iris_named
    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=1)
    scores = cross_validate(
        DeepEnsembleClassifier(n_estimators=2, **TINY),
        X,
        y,
        scoring={"acc": get_scorer("accuracy"), "div": get_scorer("disagreement")},
        cv=cv,
        error_score="raise",
    )
    assert scores["test_acc"].shape == scores["test_div"].shape == (2,)
    assert np.all((scores["test_acc"] >= 0) & (scores["test_acc"] <= 1))
    assert np.all((scores["test_div"] >= 0) & (scores["test_div"] <= 1))
