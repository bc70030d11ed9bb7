"""DropoutClassifier: fixed thinned networks, BatchNorm left in evaluation mode."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from _posterior_helpers import BNNet, NoDropoutNet

from ensemblekit import DropoutClassifier

TINY = dict(max_epochs=6, lr=1e-2, batch_size=32, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def fitted(iris):
    X, y = iris
    return DropoutClassifier(module=BNNet, n_samples=8, **TINY).fit(X, y)


def test_default_mlp_has_dropout(iris):
    X, y = iris
    clf = DropoutClassifier(n_samples=4, module__hidden_layer_sizes=(8,), **TINY).fit(X, y)
    drop = [m for m in clf.estimators_[0].module_.modules() if isinstance(m, torch.nn.Dropout)]
    assert [m.p for m in drop] == [0.1]
    assert clf.predict_member_proba(X[:3]).shape == (4, 3, 3)


def test_member_axis_and_distinct_samples(fitted, iris):
    X, _ = iris
    proba = fitted.predict_member_proba(X)
    assert proba.shape == (8, len(X), 3)
    np.testing.assert_allclose(proba.sum(-1), 1.0, rtol=1e-6)
    assert np.abs(proba[0] - proba[1]).max() > 1e-4
    np.testing.assert_allclose(fitted.predict_proba(X), proba.mean(0), rtol=1e-6)


def test_batchnorm_untouched_and_in_eval_mode(fitted, iris):
    X, _ = iris
    module = fitted.estimators_[0].module_
    bn = module.layers[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    proba = fitted.predict_member_proba(X)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]
    # With the dropout layer switched off, eval-mode BatchNorm alone gives the plain
    # network; the samples' mean is close to it (same marginal predictive per input).
    module.eval()
    with torch.no_grad():
        plain = torch.softmax(module(torch.as_tensor(X)), -1).numpy()
    assert np.abs(proba.mean(0) - plain).mean() < 0.05


def test_deterministic_and_row_independent(fitted, iris):
    X, _ = iris
    full = fitted.predict_member_proba(X)
    perm = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_allclose(fitted.predict_member_proba(X[perm]), full[:, perm], rtol=1e-5)
    np.testing.assert_allclose(fitted.predict_member_proba(X[5:6]), full[:, 5:6], rtol=1e-5)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(restored.predict_member_proba(X), full, rtol=1e-6)


def test_n_estimators_pools_samples(iris):
    X, y = iris
    clf = DropoutClassifier(n_estimators=2, n_samples=3, module__hidden_layer_sizes=(8,),
                            **TINY).fit(X, y)
    assert clf.predict_member_proba(X[:2]).shape == (6, 2, 3)


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(module=NoDropoutNet), "needs a module with a dropout layer"),
        (dict(module__dropout=0.0), "needs a module with a dropout layer"),
        (dict(n_samples=0), "n_samples must be an integer >= 1"),
        (dict(n_estimators=0), "n_estimators must be an integer >= 1"),
    ],
)
def test_bad_parameters(iris, params, match):
    X, y = iris
    with pytest.raises(ValueError, match=match):
        DropoutClassifier(**{**TINY, **params}).fit(X, y)
