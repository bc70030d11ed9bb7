"""Tests of the scorers on a real ensemble, alone and inside scikit-learn's model selection."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.metrics import get_scorer as sklearn_get_scorer
from sklearn.metrics import get_scorer_names as sklearn_get_scorer_names
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    StratifiedKFold,
    cross_validate,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.metrics import (
    accuracy,
    brier_score,
    expected_calibration_error,
    get_scorer,
    get_scorer_names,
    js_diversity,
    mean_pairwise_disagreement,
    normalized_disagreement,
)

SCORER_NAMES = [
    "disagreement",
    "js_diversity",
    "neg_expected_calibration_error",
    "neg_multiclass_brier_score",
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
    if name == "neg_multiclass_brier_score":
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
    assert get_scorer_names(ensemble_only=True) == sorted(SCORER_NAMES + REGRESSION_SCORER_NAMES)
    assert get_scorer_names() == sorted(get_scorer_names())


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


def test_sklearn_names_return_sklearn_scorers(fitted, iris_named):
    X, y = iris_named
    for name in sklearn_get_scorer_names():
        ours, theirs = get_scorer(name), sklearn_get_scorer(name)
        assert type(ours) is type(theirs), name
        assert repr(ours) == repr(theirs), name
    assert set(sklearn_get_scorer_names()) < set(get_scorer_names())
    assert set(get_scorer_names()) - set(sklearn_get_scorer_names()) == set(
        SCORER_NAMES + REGRESSION_SCORER_NAMES)
    # ... and they score like scikit-learn's metrics of predict / predict_proba.
    assert get_scorer("accuracy")(fitted, X, y) == pytest.approx(
        accuracy_score(y, fitted.predict(X))
    )
    proba = fitted.predict_proba(X).astype(np.float64)
    expected = -log_loss(y, proba, labels=fitted.classes_)
    assert get_scorer("neg_log_loss")(fitted, X, y) == pytest.approx(expected, rel=1e-5)


def test_callable_and_none_pass_through_as_in_sklearn():
    scorer = get_scorer("disagreement")
    assert get_scorer(scorer) is scorer is sklearn_get_scorer(scorer)
    assert get_scorer(None) is None


def test_diversity_scorers_without_y(fitted, iris_named):
    X, y = iris_named
    for name in ("disagreement", "js_diversity"):
        assert get_scorer(name)(fitted, X) == get_scorer(name)(fitted, X, y)
    with pytest.raises(ValueError, match="needs the true labels"):
        get_scorer("neg_multiclass_brier_score")(fitted, X)


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
        get_scorer("normalized_disagreement")(fitted, X, y_bad)
    with pytest.raises(ValueError, match="not in the estimator's classes_"):
        get_scorer("neg_multiclass_brier_score")(fitted, X, np.zeros(len(X), dtype=int))


@pytest.mark.parametrize("name", SCORER_NAMES)
def test_estimator_without_member_proba(iris_named, name):
    X, y = iris_named
    model = DummyClassifier().fit(X, y)
    with pytest.raises(TypeError, match=r"predict_member_proba.*got DummyClassifier"):
        get_scorer(name)(model, X, y)
    pipe = make_pipeline(StandardScaler(), DummyClassifier()).fit(X, y)
    with pytest.raises(TypeError, match="got Pipeline -> DummyClassifier"):
        get_scorer(name)(pipe, X, y)
    search = GridSearchCV(DummyClassifier(), {"strategy": ["prior"]}, cv=2).fit(X, y)
    with pytest.raises(TypeError, match="got GridSearchCV -> DummyClassifier"):
        get_scorer(name)(search, X, y)
    no_refit = GridSearchCV(DummyClassifier(), {"strategy": ["prior"]}, cv=2, refit=False)
    with pytest.raises(TypeError, match="refit=False"):
        get_scorer(name)(no_refit.fit(X, y), X, y)


@pytest.mark.parametrize("name", ["neg_ece", "brier", "neg_brier"])
def test_unknown_scorer_name_lists_valid_names(name):
    with pytest.raises(ValueError, match=r"not a valid scoring value.*'disagreement'"):
        get_scorer(name)
    # The same kind of error as scikit-learn's own function.
    with pytest.raises(ValueError, match="not a valid scoring value"):
        sklearn_get_scorer(name)


@pytest.mark.parametrize("bad", [1, 2.5, ["accuracy"]])
def test_invalid_scoring_type_fails_as_in_sklearn(bad):
    with pytest.raises(ValueError) as ours:
        get_scorer(bad)
    with pytest.raises(ValueError) as theirs:
        sklearn_get_scorer(bad)
    assert type(ours.value) is type(theirs.value)


def test_scorers_pickle(fitted, iris_named):
    # Parallel searches send scorers to worker processes.
    X, y = iris_named
    for name in SCORER_NAMES:
        restored = pickle.loads(pickle.dumps(get_scorer(name)))
        assert restored(fitted, X, y) == get_scorer(name)(fitted, X, y)


def test_grid_search_with_every_scorer(iris_named):
    X, y = iris_named
    scoring = {name: get_scorer(name) for name in [*SCORER_NAMES, "neg_log_loss"]}
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
        scoring={"acc": "accuracy", "div": get_scorer("disagreement")},
        cv=cv,
        error_score="raise",
    )
    assert scores["test_acc"].shape == scores["test_div"].shape == (2,)
    assert np.all((scores["test_acc"] >= 0) & (scores["test_acc"] <= 1))
    assert np.all((scores["test_div"] >= 0) & (scores["test_div"] <= 1))


# --- Scorers follow the ensemble into Pipelines and fitted searches -------------------------


@pytest.fixture(scope="module")
def iris_raw():
    X, y = load_iris(return_X_y=True)
    # Far from standardised, so that a scorer skipping the scaler would see other inputs.
    return X * 10.0 + 3.0, y


def _standardise(X, X_fit):
    # StandardScaler by hand: population standard deviation.
    return (X - X_fit.mean(axis=0)) / X_fit.std(axis=0)


def _by_hand(member_proba, y):
    """The ensemble-only scores, from numpy alone (y holds column indices)."""
    labels = member_proba.argmax(axis=2)
    m = len(member_proba)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    disagreement = np.mean([np.mean(labels[i] != labels[j]) for i, j in pairs])
    mean = member_proba.mean(axis=0)

    def entropy(p):
        return -np.sum(p * np.log(np.clip(p, 1e-300, None)), axis=-1)

    onehot = np.eye(member_proba.shape[2])[y]
    return {
        "disagreement": disagreement,
        "normalized_disagreement": disagreement / np.mean(labels != y),
        "js_diversity": np.mean(entropy(mean)) - np.mean(entropy(member_proba)),
        "neg_multiclass_brier_score": -np.mean(np.sum((mean - onehot) ** 2, axis=1)),
    }


def test_cross_validate_pipeline_scores_the_transformed_data(iris_raw):
    X, y = iris_raw
    pipe = make_pipeline(StandardScaler(), DeepEnsembleClassifier(n_estimators=3, **TINY))
    names = [
        "disagreement",
        "normalized_disagreement",
        "js_diversity",
        "neg_multiclass_brier_score",
    ]
    scores = cross_validate(
        pipe,
        X,
        y,
        scoring={name: get_scorer(name) for name in names},
        cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
        return_estimator=True,
        return_indices=True,
    )
    for fold, fitted_pipe in enumerate(scores["estimator"]):
        train = scores["indices"]["train"][fold]
        test = scores["indices"]["test"][fold]
        ensemble = fitted_pipe[-1]
        member_proba = ensemble.predict_member_proba(_standardise(X[test], X[train]))
        expected = _by_hand(member_proba.astype(np.float64), y[test])
        for name in names:
            got = scores[f"test_{name}"][fold]
            assert np.isfinite(got), name
            assert got == pytest.approx(expected[name], abs=1e-6), name
    # Not a coincidence of the scaler: the raw inputs give other members' outputs.
    raw = scores["estimator"][0][-1].predict_member_proba(X[scores["indices"]["test"][0]])
    assert not np.allclose(
        raw,
        ensemble.predict_member_proba(
            _standardise(X[scores["indices"]["test"][0]], X[scores["indices"]["train"][0]])
        ),
    )


@pytest.mark.parametrize("search_cls", [GridSearchCV, RandomizedSearchCV])
def test_fitted_search_over_pipeline_scores_best_estimator(iris_raw, search_cls):
    X, y = iris_raw
    X_fit, y_fit, X_test, y_test = X[::2], y[::2], X[1::2], y[1::2]
    pipe = make_pipeline(StandardScaler(), DeepEnsembleClassifier(**TINY))
    grid = {"deepensembleclassifier__n_estimators": [2, 3]}
    kwargs = {"n_iter": 2, "random_state": 0} if search_cls is RandomizedSearchCV else {}
    search = search_cls(
        pipe,
        grid,
        scoring={"nll": "neg_log_loss", "div": get_scorer("disagreement")},
        refit="nll",
        cv=2,
        error_score="raise",
        **kwargs,
    ).fit(X_fit, y_fit)
    assert np.all(np.isfinite(search.cv_results_["mean_test_div"]))
    ensemble = search.best_estimator_[-1]
    member_proba = ensemble.predict_member_proba(_standardise(X_test, X_fit))
    expected = _by_hand(member_proba.astype(np.float64), y_test)
    for name in ("disagreement", "js_diversity", "neg_multiclass_brier_score"):
        got = get_scorer(name)(search, X_test, y_test)
        assert got == pytest.approx(expected[name], abs=1e-6), name


def test_nested_pipeline_and_search(iris_raw):
    # A Pipeline whose last step is a search over a Pipeline: every transform applies.
    X, y = iris_raw
    X_fit, y_fit, X_test, y_test = X[::2], y[::2], X[1::2], y[1::2]
    inner = make_pipeline(FunctionTransformer(np.tanh), DeepEnsembleClassifier(**TINY))
    search = GridSearchCV(inner, {"deepensembleclassifier__n_estimators": [2]}, cv=2)
    outer = make_pipeline(StandardScaler(), "passthrough", search).fit(X_fit, y_fit)
    ensemble = outer[-1].best_estimator_[-1]
    Xt = np.tanh(_standardise(X_test, X_fit))
    expected = _by_hand(ensemble.predict_member_proba(Xt).astype(np.float64), y_test)
    for name in ("disagreement", "js_diversity", "neg_multiclass_brier_score"):
        assert get_scorer(name)(outer, X_test, y_test) == pytest.approx(expected[name], abs=1e-6)
