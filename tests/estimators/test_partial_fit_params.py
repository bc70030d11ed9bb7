"""partial_fit refuses to continue members whose parameters changed since they were fitted."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from sklearn.datasets import load_iris

from ensemblekit import (
    DeepEnsembleClassifier,
    DeepEnsembleRegressor,
    DropoutClassifier,
    SubspaceSamplingClassifier,
    SWAGClassifier,
    SWAGRegressor,
)

TINY = dict(max_epochs=2, batch_size=32, lr=1e-2, random_state=0, device="cpu",
            module__hidden_layer_sizes=(8,))
ESTIMATORS = {
    "deep": lambda: DeepEnsembleClassifier(n_estimators=2, **TINY),
    "dropout": lambda: DropoutClassifier(n_samples=2, **TINY),
    "swag": lambda: SWAGClassifier(n_samples=2, swa_start=1, method="diagonal", **TINY),
    "subspace": lambda: SubspaceSamplingClassifier(method="weight_average", **TINY),
    "deep_regressor": lambda: DeepEnsembleRegressor(n_estimators=2, **TINY),
    "swag_regressor": lambda: SWAGRegressor(n_samples=2, swa_start=1, method="diagonal",
                                            **TINY),
}


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


def _first_call(name, X, y):
    est = ESTIMATORS[name]()
    if name.endswith("regressor"):
        return est.partial_fit(X, X[:, 0] + y), X[:, 0] + y
    return est.partial_fit(X, y, classes=np.unique(y)), y


CASES = ([(name, dict(lr=0.1)) for name in ESTIMATORS]
         + [(name, dict(module__hidden_layer_sizes=(16,))) for name in ("dropout", "swag")]
         + [("deep", dict(random_state=1)), ("subspace", dict(batch_size=8)),
            ("deep_regressor", dict(loss="squared_error"))])


@pytest.mark.parametrize(("name", "change"), CASES)
def test_changed_member_parameters_are_refused(iris, name, change):
    X, y = iris
    est, target = _first_call(name, X, y)
    before = est.predict(X[:5])
    (key, value), = change.items()
    old = est.get_params()[key]
    est.set_params(**change)
    expected = re.escape(f"changed since: {key} ({old!r} -> {value!r})")
    with pytest.raises(ValueError, match=expected):
        est.partial_fit(X, target)
    np.testing.assert_array_equal(est.predict(X[:5]), before)
    # fit trains anew with the new values; partial_fit then continues those members.
    est.fit(X, target)
    est.partial_fit(X, target)
    assert all(len(curve) == est.max_epochs + 1 for curve in est.loss_curve_)


@pytest.mark.parametrize("name", ["deep", "swag_regressor"])
def test_parameters_that_do_not_fix_the_members_may_change(iris, name):
    X, y = iris
    est, target = _first_call(name, X, y)
    est.set_params(verbose=0, predict_batch_size=7, max_epochs=9, tol=0.5,
                   early_stopping=True)
    est.partial_fit(X, target)
    assert all(len(curve) == 2 for curve in est.loss_curve_)


def test_several_changes_are_all_named(iris):
    X, y = iris
    est, _ = _first_call("deep", X, y)
    est.set_params(n_estimators=3, lr=0.5)
    with pytest.raises(ValueError, match=r"these parameters have changed since: lr "
                                         r"\(0\.01 -> 0\.5\), n_estimators \(2 -> 3\)"):
        est.partial_fit(X, y)


def test_the_record_survives_pickling(iris):
    X, y = iris
    est, _ = _first_call("deep", X, y)
    again = pickle.loads(pickle.dumps(est))
    again.partial_fit(X, y)
    again.set_params(lr=0.5)
    with pytest.raises(ValueError, match="lr"):
        again.partial_fit(X, y)
