"""sample_weight and class_weight: weighted losses, bootstrap draws, metadata routing."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sklearn
import torch
from sklearn.datasets import load_iris, make_classification
from sklearn.metrics import accuracy_score, recall_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from ensemblekit import (
    DeepEnsembleClassifier,
    DropoutClassifier,
    SubspaceSamplingClassifier,
    SWAGClassifier,
)
from ensemblekit.engine import epoch_indices

_TINY = dict(max_epochs=3, lr=1e-2, batch_size=32, random_state=0, device="cpu",
             module__hidden_layer_sizes=(8,))


def _iris():
    X, y = load_iris(return_X_y=True)
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


def _make(kind: str, **params):
    params = {**_TINY, **params}
    if kind == "sequential":
        return DeepEnsembleClassifier(n_estimators=2, engine="sequential", **params)
    if kind == "vectorized":
        return DeepEnsembleClassifier(n_estimators=2, engine="vectorized", **params)
    if kind == "swag":
        return SWAGClassifier(n_samples=2, swa_start=1, method="diagonal", **params)
    if kind == "dropout":
        return DropoutClassifier(n_samples=2, **params)
    return SubspaceSamplingClassifier(n_samples=2, method="random", **params)


KINDS = ["sequential", "vectorized", "swag", "dropout", "subspace"]


@pytest.mark.parametrize("kind", KINDS)
def test_uniform_weights_equal_no_weights(kind):
    X, y = _iris()
    ref = _make(kind).fit(X, y).predict_member_proba(X)
    for c in (1.0, 0.37, 11.0):
        got = _make(kind).fit(X, y, sample_weight=np.full(len(y), c)).predict_member_proba(X)
        np.testing.assert_array_equal(got, ref)
    weighted = _make(kind).fit(X, y, sample_weight=np.linspace(0.1, 3, len(y)))
    assert not np.allclose(weighted.predict_member_proba(X), ref)


@pytest.mark.parametrize("kind", ["sequential", "vectorized", "swag"])
def test_zero_weights_equal_dropping_rows(kind):
    X, y = _iris()
    rng = np.random.default_rng(1)
    w = rng.uniform(0.2, 2.0, len(y))
    w[rng.random(len(y)) < 0.3] = 0.0
    keep = w > 0
    full = dict(batch_size=len(y))
    a = _make(kind, **full).fit(X, y, sample_weight=w).predict_member_proba(X)
    b = _make(kind, **full).fit(X[keep], y[keep], sample_weight=w[keep]).predict_member_proba(X)
    np.testing.assert_array_equal(a, b)
    # Rows of weight 0 carry no information: changing them changes nothing.
    X2 = X.copy()
    X2[~keep] = rng.normal(size=X2[~keep].shape) * 50
    c = _make(kind, **full).fit(X2, y, sample_weight=w).predict_member_proba(X)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_integer_weights_equal_repeated_rows_full_batch(engine):
    # An independent reference: with one full batch per epoch, the weighted mean loss
    # with integer weights is the plain mean loss over the data with rows repeated.
    X, y = _iris()
    counts = np.random.default_rng(2).integers(1, 4, len(y))
    Xr, yr = np.repeat(X, counts, axis=0), np.repeat(y, counts)
    params = dict(batch_size=int(counts.sum()), optimizer=torch.optim.SGD, lr=0.5,
                  max_epochs=4)
    a = _make(engine, **params).fit(X, y, sample_weight=counts)
    b = _make(engine, **params).fit(Xr, yr)
    np.testing.assert_allclose(a.predict_member_proba(X), b.predict_member_proba(X),
                               atol=2e-5)


def test_weighted_engines_agree():
    X, y = _iris()
    w = np.random.default_rng(3).uniform(0.0, 4.0, len(y))
    seq = _make("sequential").fit(X, y, sample_weight=w)
    vec = _make("vectorized").fit(X, y, sample_weight=w)
    assert vec.engine_ == "vectorized"
    np.testing.assert_allclose(seq.predict_member_proba(X), vec.predict_member_proba(X),
                               atol=2e-5)


def test_weighted_bootstrap_engines_agree_and_differ_from_unweighted():
    X, y = _iris()
    w = np.random.default_rng(4).uniform(0.0, 4.0, len(y))
    seq = _make("sequential", bootstrap=True).fit(X, y, sample_weight=w)
    vec = _make("vectorized", bootstrap=True).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(seq.predict_member_proba(X), vec.predict_member_proba(X),
                               atol=2e-5)
    plain = _make("vectorized", bootstrap=True).fit(X, y)
    assert not np.allclose(plain.predict_member_proba(X), vec.predict_member_proba(X))


def test_weighted_bootstrap_draws_in_proportion_to_weights():
    # As BaggingClassifier: rows drawn with probability w_i / sum(w), never a zero row.
    w = torch.tensor([0.0, 1.0, 2.0, 5.0])
    counts = torch.zeros(4)
    for seed in range(400):
        idx = epoch_indices(seed, 0, 4, bootstrap=True, weights=w)
        counts += torch.bincount(idx, minlength=4)
    freq = (counts / counts.sum()).numpy()
    assert freq[0] == 0
    # 1600 draws: the standard error of each frequency is below 0.013.
    np.testing.assert_allclose(freq, (w / w.sum()).numpy(), atol=0.04)


def test_class_weight_balanced_equals_explicit_weights_and_raises_minority_recall():
    X, y = make_classification(n_samples=400, n_features=6, n_informative=3,
                               weights=[0.95, 0.05], flip_y=0, class_sep=0.6,
                               random_state=0)
    X = X.astype(np.float32)
    labels = np.where(y == 1, "rare", "common")
    params = dict(max_epochs=15, batch_size=64, lr=1e-2)
    plain = _make("vectorized", **params).fit(X, labels)
    balanced = _make("vectorized", class_weight="balanced", **params).fit(X, labels)
    explicit = _make("vectorized", **params).fit(
        X, labels, sample_weight=compute_sample_weight("balanced", labels))
    np.testing.assert_array_equal(balanced.predict_proba(X), explicit.predict_proba(X))
    r_plain = recall_score(labels, plain.predict(X), pos_label="rare")
    r_bal = recall_score(labels, balanced.predict(X), pos_label="rare")
    assert r_bal > r_plain + 0.2


def test_class_weight_dict_keyed_by_labels_multiplies_sample_weight():
    X, y = _iris()
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    sw = np.random.default_rng(5).uniform(0.5, 2.0, len(y))
    cw = {"versicolor": 3.0, "virginica": 0.5}
    a = _make("vectorized", class_weight=cw).fit(X, labels, sample_weight=sw)
    factor = np.array([1.0, 3.0, 0.5])[y]
    b = _make("vectorized").fit(X, labels, sample_weight=sw * factor)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.parametrize("weight, match", [
    (np.ones(5), r"shape"),
    (-np.ones(150), "non-negative"),
    (np.full(150, np.nan), "finite"),
    (np.zeros(150), "zero"),
])
def test_invalid_sample_weight(weight, match):
    X, y = _iris()
    with pytest.raises(ValueError, match=match):
        _make("vectorized").fit(X, y, sample_weight=weight)


@pytest.mark.parametrize("class_weight, match", [
    ("balance", "class_weight must be"),
    ({"a": 1.0}, "not a class"),
    ({0: -1.0}, "non-negative"),
])
def test_invalid_class_weight(class_weight, match):
    X, y = _iris()
    with pytest.raises(ValueError, match=match):
        _make("vectorized", class_weight=class_weight).fit(X, y)


_IRIS_NAMES = np.array(["setosa", "versicolor", "virginica"])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("string_labels, class_weight, message", [
    (False, {0: 2.0, 3: 1.0}, "a key 3 that is not a class"),
    (False, {"setosa": 2.0}, "a key 'setosa' that is not a class"),
    (False, {5: 1.0, 0: 2.0, -1: 1.0}, "keys 5, -1 that are not classes"),
    (True, {"versicolor": 2.0, "rose": 1.0, "tulip": 3.0},
     "keys 'rose', 'tulip' that are not classes"),
    (True, {1: 2.0}, "a key 1 that is not a class"),
])
def test_class_weight_unknown_key_names_keys_and_classes(kind, string_labels, class_weight,
                                                         message):
    X, y = _iris()
    labels = _IRIS_NAMES[y] if string_labels else y
    classes = "['setosa', 'versicolor', 'virginica']" if string_labels else "[0, 1, 2]"
    with pytest.raises(ValueError, match=re.escape(message) + ".*the classes are "
                       + re.escape(classes)):
        _make(kind, class_weight=class_weight).fit(X, labels)


@pytest.mark.parametrize("key", [np.int64(2), 2.0, np.float32(2.0)])
def test_class_weight_keys_match_classes_as_dict_lookups_do(key):
    # scikit-learn looks classes up in the dict, so 2.0 and np.int64(2) name the class 2.
    X, y = _iris()
    a = _make("vectorized", class_weight={key: 3.0}).fit(X, y)
    b = _make("vectorized").fit(X, y, sample_weight=np.where(y == 2, 3.0, 1.0))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


# scikit-learn 1.6 and 1.7 route a search's or cross_validate's default scoring
# (scoring=None, i.e. Pipeline.score) by the Pipeline's own score request instead of by its
# steps' requests, and raise UnsetMetadataPassedError unless the Pipeline itself requests
# sample_weight for score (https://github.com/scikit-learn/scikit-learn/issues/30937, fixed
# in 1.8).
# Requesting it on the Pipeline is what users of those releases must write; it is harmless
# from 1.8 on, which routes by the steps alone.
_ROUTES_PIPELINE_SCORE_BY_STEPS = tuple(
    int(part) for part in sklearn.__version__.split(".")[:2]) >= (1, 8)


@pytest.mark.parametrize("pipeline_score_request", [
    True,
    pytest.param(False, marks=pytest.mark.skipif(
        not _ROUTES_PIPELINE_SCORE_BY_STEPS,
        reason="scikit-learn < 1.8 needs Pipeline.set_score_request (scikit-learn#30937)")),
])
def test_metadata_routing_pipeline_gridsearch_cross_validate(pipeline_score_request):
    X, y = _iris()
    w = np.random.default_rng(6).uniform(0.1, 3.0, len(y))
    with sklearn.config_context(enable_metadata_routing=True):
        clf = _make("vectorized").set_fit_request(sample_weight=True)
        clf.set_score_request(sample_weight=True)
        pipe = make_pipeline(StandardScaler().set_fit_request(sample_weight=False), clf)
        if pipeline_score_request:
            pipe.set_score_request(sample_weight=True)
        search = GridSearchCV(pipe, {"deepensembleclassifier__lr": [1e-2, 2e-2]}, cv=2)
        search.fit(X, y, sample_weight=w)
        best_lr = search.best_params_["deepensembleclassifier__lr"]
        direct = make_pipeline(StandardScaler().set_fit_request(sample_weight=False),
                               _make("vectorized", lr=best_lr).set_fit_request(
                                   sample_weight=True))
        direct.fit(X, y, sample_weight=w)
        np.testing.assert_array_equal(search.predict_proba(X), direct.predict_proba(X))
        unweighted = make_pipeline(StandardScaler(), _make("vectorized", lr=best_lr)).fit(X, y)
        assert not np.allclose(search.predict_proba(X), unweighted.predict_proba(X))
        scores = cross_validate(pipe, X, y, cv=2, params={"sample_weight": w})
    # The weights reach both fit and score: each fold's score is the weighted accuracy of a
    # pipeline fitted on the weighted training rows (cv=2 is an unshuffled StratifiedKFold).
    expected, unweighted_score = [], []
    for train, test in StratifiedKFold(2).split(X, y):
        fold = make_pipeline(StandardScaler(), _make("vectorized"))
        fold.fit(X[train], y[train], deepensembleclassifier__sample_weight=w[train])
        expected.append(accuracy_score(y[test], fold.predict(X[test]), sample_weight=w[test]))
        unweighted_score.append(accuracy_score(y[test], fold.predict(X[test])))
    np.testing.assert_allclose(scores["test_score"], expected, rtol=1e-12)
    assert not np.allclose(expected, unweighted_score)
