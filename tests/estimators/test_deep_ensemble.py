"""Contract, input-validation and determinism tests of DeepEnsembleClassifier."""

from __future__ import annotations

import io
import pickle
import re

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.models import MLP

TINY = dict(max_epochs=4, lr=1e-2, batch_size=32, module__hidden_layer_sizes=(8,))


@pytest.fixture(scope="module")
def fitted(iris):
    X, y = iris
    return DeepEnsembleClassifier(n_estimators=3, random_state=0, **TINY).fit(X, y)


# ---------------------------------------------------------------- member axis
def test_member_axis_and_reduction(fitted, iris):
    X, _ = iris
    member = fitted.predict_member_proba(X)
    assert member.shape == (3, len(X), 3)
    np.testing.assert_allclose(member.sum(axis=2), 1.0, atol=1e-12)
    np.testing.assert_allclose(fitted.predict_proba(X), member.mean(axis=0))
    assert len(fitted.estimators_) == 3
    assert fitted.seeds_.shape == (3,)
    assert fitted.n_features_in_ == 4


def test_members_differ(fitted, iris):
    X, _ = iris
    member = fitted.predict_member_proba(X)
    assert not np.allclose(member[0], member[1])
    w0 = fitted.estimators_[0].module_.layers[1].weight
    w1 = fitted.estimators_[1].module_.layers[1].weight
    assert not torch.allclose(w0, w1)


def test_members_differ_in_data_order(fitted):
    from ensemblekit.engine import epoch_indices

    a, b = fitted.seeds_[:2]
    assert not torch.equal(epoch_indices(int(a), 0, 150), epoch_indices(int(b), 0, 150))


def test_same_random_state_same_predictions(iris):
    X, y = iris
    p1 = DeepEnsembleClassifier(n_estimators=2, random_state=3, **TINY).fit(X, y).predict_proba(X)
    p2 = DeepEnsembleClassifier(n_estimators=2, random_state=3, **TINY).fit(X, y).predict_proba(X)
    p3 = DeepEnsembleClassifier(n_estimators=2, random_state=4, **TINY).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)


def test_global_rng_untouched(iris):
    X, y = iris
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch = torch.rand(3)
    expected_np = np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    DeepEnsembleClassifier(n_estimators=2, random_state=0, **TINY).fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected_torch)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)


# ---------------------------------------------------------------- inputs
def test_string_labels(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = DeepEnsembleClassifier(n_estimators=2, random_state=0, **TINY).fit(X, names)
    assert clf.classes_.tolist() == sorted(set(names))
    assert set(clf.predict(X)) <= set(names)


def test_images_with_module_class(digits_images):
    X, y = digits_images

    class TinyCNN(nn.Module):
        def __init__(self, in_channels: int, num_classes: int) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(4 * 4 * 4, num_classes),
            )

        def forward(self, x):
            return self.net(x)

    clf = DeepEnsembleClassifier(TinyCNN, n_estimators=2, max_epochs=3, lr=1e-2,
                                 random_state=0).fit(X, y)
    assert clf.input_shape_ == (1, 8, 8)
    assert clf.predict_member_proba(X[:5]).shape == (2, 5, 10)
    assert clf.score(X, y) > 0.5


def test_images_default_mlp_flattens(digits_images):
    X, y = digits_images
    clf = DeepEnsembleClassifier(n_estimators=2, random_state=0, **TINY).fit(X, y)
    assert clf.estimators_[0].module_.layers[1].in_features == 64


def test_module_instance_is_copied_and_reinitialised(iris):
    X, y = iris
    template = MLP(4, 3, hidden_layer_sizes=(8,))
    before = [p.detach().clone() for p in template.parameters()]
    clf = DeepEnsembleClassifier(template, n_estimators=2, max_epochs=2, random_state=0).fit(X, y)
    for p, q in zip(template.parameters(), before):
        assert torch.equal(p, q)
    first = clf.estimators_[0].module_.layers[1].weight
    second = clf.estimators_[1].module_.layers[1].weight
    assert not torch.allclose(first, second)


def test_routed_optimizer_params(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(n_estimators=1, optimizer=torch.optim.SGD,
                                 optimizer__momentum=0.9, random_state=0, **TINY).fit(X, y)
    assert clf.estimators_[0].optimizer_.param_groups[0]["momentum"] == 0.9
    assert clf.get_params()["optimizer__momentum"] == 0.9
    assert clone(clf).get_params()["optimizer__momentum"] == 0.9


# ---------------------------------------------------------------- warm start
def test_warm_start_trains_only_new_members(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(n_estimators=2, warm_start=True, random_state=0, **TINY)
    clf.fit(X, y)
    first = clf.estimators_[0]
    clf.set_params(n_estimators=3).fit(X, y)
    assert clf.estimators_[0] is first
    assert len(clf.estimators_) == 3
    full = DeepEnsembleClassifier(n_estimators=3, random_state=0, **TINY).fit(X, y)
    np.testing.assert_array_equal(clf.seeds_, full.seeds_)
    np.testing.assert_allclose(clf.predict_member_proba(X), full.predict_member_proba(X),
                               rtol=1e-6, atol=1e-6)


def test_warm_start_errors(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(n_estimators=2, warm_start=True, random_state=0, **TINY)
    clf.fit(X, y)
    with pytest.raises(ValueError, match="must be >= len"):
        clf.set_params(n_estimators=1).fit(X, y)
    with pytest.warns(UserWarning, match="no new member"):
        clf.set_params(n_estimators=2).fit(X, y)
    with pytest.raises(ValueError, match="classes"):
        clf.set_params(n_estimators=3).fit(X, np.where(y == 2, 5, y))


# ---------------------------------------------------------------- sklearn contract
def test_clone_keeps_params(fitted):
    fresh = clone(fitted)
    assert fresh.get_params() == fitted.get_params()
    assert not hasattr(fresh, "estimators_")


def test_grid_search_over_ensemble_size(iris):
    X, y = iris
    search = GridSearchCV(DeepEnsembleClassifier(random_state=0, **TINY),
                          {"n_estimators": [1, 2]}, scoring="neg_log_loss", cv=2)
    search.fit(X, y)
    assert search.best_params_["n_estimators"] in (1, 2)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert len(search.best_estimator_.estimators_) == search.best_params_["n_estimators"]


def test_pipeline_with_scaler():
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), DeepEnsembleClassifier(n_estimators=2, max_epochs=10,
                                                                  lr=1e-2, random_state=0))
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.9
    assert pipe.predict_proba(X).shape == (len(X), 3)


@pytest.mark.parametrize("dump,load", [
    (pickle.dumps, pickle.loads),
    (lambda o: _joblib_dumps(o), lambda b: joblib.load(io.BytesIO(b))),
])
def test_pickle_round_trip(fitted, iris, dump, load):
    X, _ = iris
    restored = load(dump(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))


def _joblib_dumps(obj):
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    return buffer.getvalue()


def test_calibration_of_frozen_ensemble(fitted, iris):
    X, y = iris
    calibrated = CalibratedClassifierCV(FrozenEstimator(fitted)).fit(X, y)
    proba = calibrated.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_progress_bar_when_verbose(iris, capsys):
    X, y = iris
    DeepEnsembleClassifier(n_estimators=2, verbose=1, random_state=0, **TINY).fit(X, y)
    err = capsys.readouterr().err
    assert "member-epochs" in err and "8/8" in err


# ---------------------------------------------------------------- bad input
def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        DeepEnsembleClassifier().predict_proba(np.zeros((2, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_X(iris, bad):
    X, y = iris
    X = X.copy()
    X[0, 0] = bad
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        DeepEnsembleClassifier(**TINY).fit(X, y)


def test_wrong_features_at_predict(fitted, iris):
    X, _ = iris
    with pytest.raises(ValueError, match="X has 3 features"):
        fitted.predict(X[:, :3])


def test_wrong_ndim_at_predict(fitted, iris):
    X, _ = iris
    with pytest.raises(ValueError, match="shape"):
        fitted.predict(X.reshape(len(X), 4, 1))


def test_wrong_image_shape_at_predict(digits_images):
    X, y = digits_images
    clf = DeepEnsembleClassifier(n_estimators=1, random_state=0, **TINY).fit(X, y)
    with pytest.raises(ValueError, match=re.escape("(1, 4, 16)")):
        clf.predict(X.reshape(len(X), 1, 4, 16))


def test_one_class(iris):
    X, _ = iris
    with pytest.raises(ValueError, match="only one class"):
        DeepEnsembleClassifier(**TINY).fit(X, np.zeros(len(X)))


def test_empty_X():
    with pytest.raises(ValueError, match="0 sample"):
        DeepEnsembleClassifier(**TINY).fit(np.zeros((0, 3)), np.zeros(0))


def test_inconsistent_lengths(iris):
    X, y = iris
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        DeepEnsembleClassifier(**TINY).fit(X, y[:-1])


def test_continuous_target(iris):
    X, _ = iris
    with pytest.raises(ValueError, match="Unknown label type"):
        DeepEnsembleClassifier(**TINY).fit(X, np.linspace(0, 1, len(X)))


@pytest.mark.parametrize("params,match", [
    ({"n_estimators": 0}, "n_estimators must be an integer >= 1"),
    ({"n_estimators": 1.5}, "n_estimators must be an integer"),
    ({"max_epochs": 0}, "max_epochs"),
    ({"batch_size": -1}, "batch_size"),
    ({"lr": -0.1}, "lr must lie in"),
    ({"engine": "turbo"}, r"engine must be one of \['auto', 'sequential'"),
    ({"device": "gpu0"}, "device must be 'auto' or a torch device"),
    ({"modul__hidden_layer_sizes": (3,)},
     "Invalid parameter 'modul__hidden_layer_sizes'.*Did you mean 'module__hidden_layer_sizes'"),
    ({"iterator_train__shuffle": True}, "each member draws its own data order"),
    ({"module": 3}, "module must be None"),
])
def test_bad_params(iris, params, match):
    X, y = iris
    clf = DeepEnsembleClassifier(**{**TINY, **params})
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)


def test_routed_module_params_with_instance(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(MLP(4, 3), module__dropout=0.1, max_epochs=1)
    with pytest.raises(ValueError, match="pass the class instead"):
        clf.fit(X, y)


def test_cuda_requested_without_cuda(iris):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    X, y = iris
    with pytest.raises(ValueError, match="CUDA is not available"):
        DeepEnsembleClassifier(device="cuda", **TINY).fit(X, y)
