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


def test_refit_and_partial_fit_give_a_fresh_predictor(tabular):
    X, y = tabular
    clf = DeepEnsembleClassifier(n_estimators=3, max_epochs=1, random_state=0, device="cpu",
                                 module__hidden_layer_sizes=(8,)).fit(X, y)
    clf.predict_proba(X)
    old = clf._member_predictor
    assert old.n_builds == 1
    clf.set_params(random_state=1).fit(X, y)  # a refit: new members, not built yet
    assert clf._member_predictor is not old and clf._member_predictor.n_builds == 0
    np.testing.assert_allclose(clf.predict_member_proba(X), _own_proba(_modules(clf), X),
                               rtol=1e-5, atol=1e-6)
    assert clf._member_predictor.n_builds == 1
    clf.partial_fit(X, y)  # the members train on: their weights change in place
    np.testing.assert_allclose(clf.predict_member_proba(X), _own_proba(_modules(clf), X),
                               rtol=1e-5, atol=1e-6)
    assert clf._member_predictor.n_builds == 1
    clf.predict_proba(X[:5])
    assert clf._member_predictor.n_builds == 1


def test_predicting_leaves_the_members_and_the_estimator_unchanged(fitted, tabular):
    X, _ = tabular
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in _modules(fitted)]
    fitted.predict_proba(X)
    fitted.predict_log_proba(X)
    for state, module in zip(before, _modules(fitted)):
        for key, value in module.state_dict().items():
            assert torch.equal(value, state[key])
    assert fitted._member_predictor.n_builds == 1  # still the same, still valid


@pytest.mark.parametrize("n_rows, batch_size", [(20, 1024), (23, 7), (1, 4)])
def test_rows_split_into_passes_give_the_one_pass_result(monkeypatch, n_rows, batch_size):
    # Small passes (the CPU's activation budget, or batch_size) are equal-sized and
    # together give every row once, whatever the split.
    import ensemblekit.engine._predict as predict_module

    monkeypatch.setattr(predict_module, "_CPU_PASS_BYTES", 1)
    monkeypatch.setattr(predict_module, "_CPU_MIN_ROWS", 3)
    torch.manual_seed(0)
    members = [MLP(4, 3, hidden_layer_sizes=(6,)) for _ in range(4)]
    X = np.random.default_rng(2).normal(size=(n_rows, 4)).astype(np.float32)
    got = MemberPredictor()(members, X, batch_size=batch_size)
    with torch.no_grad():
        ref = np.stack([m.eval()(torch.as_tensor(X)).numpy() for m in members])
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def _as_kinds(X):
    """The same rows as arrays of other dtypes, layouts and flags, and as a list."""
    frozen = X.copy()
    frozen.flags.writeable = False
    wide = np.zeros((len(X), 2 * X.shape[1]), dtype=np.float32)
    wide[:, ::2] = X
    return {
        "float64": X.astype(np.float64),
        "fortran": np.asfortranarray(X),
        "read-only": frozen,
        "strided": wide[:, ::2],
        "list": X.tolist(),
    }


def test_every_kind_of_input_array_predicts_alike(fitted, tabular):
    X, _ = tabular
    expected = fitted.predict_proba(X)
    for name, data in _as_kinds(X).items():
        np.testing.assert_allclose(fitted.predict_proba(data), expected, rtol=1e-6,
                                   atol=1e-7, err_msg=name)
    assert expected.dtype == np.float64
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    integers = np.round(X * 4).astype(np.int64)
    np.testing.assert_allclose(fitted.predict_proba(integers),
                               fitted.predict_proba(integers.astype(np.float32)))


@pytest.mark.parametrize("bad, message", [(np.nan, "NaN"), (np.inf, "infinity"),
                                          (-np.inf, "infinity")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_input_is_refused_at_prediction(fitted, tabular, bad, message, dtype):
    X = tabular[0][:10].astype(dtype)
    X[3, 2] = bad
    for method in (fitted.predict_proba, fitted.predict, fitted.predict_log_proba):
        with pytest.raises(ValueError, match=message):
            method(X)


def test_finite_values_whose_sum_overflows_still_predict(fitted, tabular):
    # scikit-learn's first finiteness check looks at the sum; huge finite values make
    # it overflow, and the element-wise check must then accept them.
    X = tabular[0][:6].copy()
    X[:, 0] = 1e38  # float32: finite, but the sum of the column is not
    with np.errstate(over="ignore"):
        assert not np.isfinite(X.sum())
    proba = fitted.predict_proba(X)
    assert proba.shape == (6, len(fitted.classes_))


def test_empty_and_misshapen_input_is_refused_at_prediction(fitted, tabular):
    X = tabular[0]
    with pytest.raises(ValueError, match="0 sample"):
        fitted.predict_proba(X[:0])
    with pytest.raises(ValueError, match="features"):
        fitted.predict_proba(X[:, :4])
    with pytest.raises(ValueError):
        fitted.predict_proba(X[:, :, None])


def test_feature_names_are_still_checked_at_prediction(tabular):
    pd = pytest.importorskip("pandas")
    X, y = tabular
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=1, random_state=0, device="cpu",
                                 module__hidden_layer_sizes=(8,)).fit(frame, y)
    with pytest.warns(UserWarning, match="feature names"):
        from_array = clf.predict_proba(X)
    np.testing.assert_allclose(clf.predict_proba(frame), from_array)


def test_softmax_of_member_outputs_matches_scipy():
    from scipy.special import softmax

    from ensemblekit.estimators._outputs import outputs_to_proba

    rng = np.random.default_rng(3)
    for classes in (2, 5, 130):
        logits = (rng.standard_normal((3, 17, classes)) * rng.choice([1, 30, 700], size=17)
                  [None, :, None]).astype(np.float32)
        logits[0, 0, 0] = -np.inf
        got = outputs_to_proba(logits, "logits")
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, softmax(logits.astype(np.float64), axis=-1),
                                   rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("kind", ["logits", "log_proba"])
def test_softmax_without_the_max_shift_matches_scipy_up_to_the_overflow_bound(kind):
    # Outputs below 700 in magnitude skip the shift by the row maximum; rows whose
    # outputs all sit near either bound must still come out exactly.
    from scipy.special import log_softmax, softmax

    from ensemblekit.estimators._outputs import outputs_to_proba

    rng = np.random.default_rng(4)
    for classes in (2, 7, 100):
        z = rng.uniform(-5, 5, size=(4, 9, classes))
        z[0, 0] = -699.0 + rng.uniform(0, 0.5, classes)
        z[1, 1] = 699.0 - rng.uniform(0, 0.5, classes)
        z[2, 2, 0] = 650.0
        if kind == "log_proba":
            z = np.clip(log_softmax(z, axis=-1), -699.0, None)
        z = z.astype(np.float32)
        got = outputs_to_proba(z, kind)
        assert got.dtype == np.float64 and np.isfinite(got).all()
        np.testing.assert_allclose(got, softmax(z.astype(np.float64), axis=-1),
                                   rtol=1e-12, atol=1e-300)
