"""The cached grouped predictor: built once, reused, rebuilt when the members change."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from engine_nets import ResidualBNNet
from test_grouped import WithPReLU

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.engine import MemberPredictor
from ensemblekit.models import MLP


def _own_proba(modules, X):
    """Each member's own forward pass, one module at a time (the reference)."""
    with torch.no_grad():
        x = torch.as_tensor(X)
        return np.stack([torch.softmax(mod.eval()(x).double(), -1).numpy() for mod in modules])


@pytest.fixture
def fitted(tabular):
    X, y = tabular
    return DeepEnsembleClassifier(n_estimators=3, max_epochs=2, random_state=0, device="cpu",
                                  module__hidden_layer_sizes=(8,)).fit(X, y)


def _modules(clf):
    return [net.module_ for net in clf.estimators_]


def test_predictions_reuse_one_grouped_network(fitted, tabular):
    X, _ = tabular
    predictor = fitted._member_predictor
    assert predictor.n_builds == 0  # built lazily, on the first prediction
    first = fitted.predict_member_proba(X)
    second = fitted.predict_member_proba(X[:7])
    fitted.predict_proba(X)
    assert predictor.n_builds == 1
    np.testing.assert_allclose(first, _own_proba(_modules(fitted), X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second, first[:, :7], rtol=1e-5, atol=1e-6)


def test_the_cache_is_never_pickled(fitted, tabular):
    X, _ = tabular
    expected = fitted.predict_member_proba(X)
    data = pickle.dumps(fitted)
    assert b"GroupedNetwork" not in data and b"GroupedLinear" not in data
    clone = pickle.loads(data)
    assert clone._member_predictor.n_builds == 0
    np.testing.assert_allclose(clone.predict_member_proba(X), expected, rtol=1e-6, atol=1e-7)
    assert clone._member_predictor.n_builds == 1


def test_changed_weights_rebuild_the_network(fitted, tabular):
    X, _ = tabular
    fitted.predict_proba(X)
    layer = _modules(fitted)[1].layers[-1]
    with torch.no_grad():
        layer.weight.mul_(-2.0)
    proba = fitted.predict_member_proba(X)
    np.testing.assert_allclose(proba, _own_proba(_modules(fitted), X), rtol=1e-5, atol=1e-6)
    assert fitted._member_predictor.n_builds == 2
    # Loading other weights (copied in place) is seen too.
    _modules(fitted)[0].load_state_dict(_modules(fitted)[2].state_dict())
    proba = fitted.predict_member_proba(X)
    np.testing.assert_allclose(proba[0], proba[2], rtol=1e-6, atol=1e-7)


def test_warm_start_gives_a_predictor_for_the_new_members(tabular):
    X, y = tabular
    clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=1, warm_start=True, random_state=0,
                                 device="cpu", module__hidden_layer_sizes=(8,)).fit(X, y)
    assert clf.predict_member_proba(X).shape[0] == 2
    clf.set_params(n_estimators=4).fit(X, y)
    proba = clf.predict_member_proba(X)
    assert proba.shape[0] == 4
    np.testing.assert_allclose(proba, _own_proba(_modules(clf), X), rtol=1e-5, atol=1e-6)


def test_another_set_of_modules_rebuilds():
    torch.manual_seed(0)
    X = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    first = [MLP(4, 3, hidden_layer_sizes=(6,)) for _ in range(3)]
    second = [MLP(4, 3, hidden_layer_sizes=(6,)) for _ in range(3)]
    predictor = MemberPredictor(max_members_per_pass=2)
    a = predictor(first, X, batch_size=4)
    b = predictor(second, X, batch_size=4)
    c = predictor(second[:2], X, batch_size=4)
    assert predictor.n_builds == 3
    for got, mods in ((a, first), (b, second), (c, second[:2])):
        np.testing.assert_allclose(torch.softmax(torch.as_tensor(got).double(), -1).numpy(),
                                   _own_proba(mods, X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("module, shape", [(WithPReLU, (5,)), (ResidualBNNet, (1, 8, 8))])
def test_members_that_cannot_group_or_with_buffers(module, shape):
    torch.manual_seed(0)
    members = [module() for _ in range(3)]
    X = np.random.default_rng(1).normal(size=(6, *shape)).astype(np.float32)
    predictor = MemberPredictor()
    for _ in range(2):
        got = predictor(members, X, batch_size=4)
    assert predictor.n_builds == 1
    with torch.no_grad():
        ref = np.stack([m.eval()(torch.as_tensor(X)).numpy() for m in members])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
