"""SWAG with early stopping of the pretraining, learning curves and partial_fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris

from ensemblekit import SWAGClassifier, SWAGRegressor
from ensemblekit.posteriors import flatten_parameters


def _noisy_digits(n=200):
    # Few rows, a fifth of the labels shuffled: the held-out accuracy stops improving
    # long before max_epochs.
    X, y = load_digits(return_X_y=True)
    X, y = (X[:n] / 16).astype(np.float32), y[:n].copy()
    rng = np.random.default_rng(0)
    flip = rng.random(n) < 0.2
    y[flip] = rng.integers(0, 10, flip.sum())
    return X, y


def _iris_std():
    X, y = load_iris(return_X_y=True)
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


def _mlp_rule(scores, tol, n_iter_no_change):
    """scikit-learn MLPClassifier's stopping rule, written out: (epochs run, best epoch)."""
    best, best_epoch, bad = -np.inf, -1, 0
    for epoch, score in enumerate(scores):
        bad = bad + 1 if score < best + tol else 0
        if score > best:
            best, best_epoch = score, epoch
        if bad > n_iter_no_change:
            return epoch + 1, best_epoch
    return len(scores), best_epoch


# Full-batch SGD without momentum: no optimizer state and no dependence on the row
# order, so a run's trajectory is fixed by its weights alone (used by the manual
# comparison below).
_ES = dict(n_estimators=3, n_samples=4, max_epochs=80, swa_start=70, swa_freq=2, swa_lr=0.05,
           lr=0.5, optimizer=torch.optim.SGD, batch_size=1000, random_state=0, device="cpu",
           module__hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=3,
           validation_fraction=0.2)
_N_SWA = _ES["max_epochs"] - _ES["swa_start"]


@pytest.fixture(scope="module")
def stopped():
    X, y = _noisy_digits()
    return X, y, {e: SWAGClassifier(engine=e, **_ES).fit(X, y)
                  for e in ("sequential", "vectorized")}


def _pretraining(clf):
    return clf.n_iter_ - _N_SWA


def test_early_stopping_shortens_pretraining_by_the_mlp_rule(stopped):
    _, _, clfs = stopped
    for clf in clfs.values():
        pre = _pretraining(clf)
        assert (pre < clf.swa_start).all()  # stopped before swa_start ...
        assert (clf.best_epoch_ < pre - 1).all()  # ... and not at its best epoch
        for m in range(clf.n_estimators):
            scores = clf.validation_scores_[m]
            # One score per epoch run, the SWA phase's included.
            assert len(scores) == clf.n_iter_[m] == len(clf.loss_curve_[m])
            assert _mlp_rule(scores[: pre[m]], clf.tol, clf.n_iter_no_change) == (
                pre[m], clf.best_epoch_[m])
        # The SWA phase is never cut short; it collects every swa_freq-th of its epochs.
        np.testing.assert_array_equal(clf.n_collected_, len(range(0, _N_SWA, _ES["swa_freq"])))
        assert clf.swa_start_ == _ES["swa_start"]


def test_early_stopping_engines_agree(stopped):
    X, _, clfs = stopped
    seq, vec = clfs["sequential"], clfs["vectorized"]
    assert seq.engine_ == "sequential" and vec.engine_ == "vectorized"
    np.testing.assert_array_equal(seq.n_iter_, vec.n_iter_)
    np.testing.assert_array_equal(seq.best_epoch_, vec.best_epoch_)
    for m in range(seq.n_estimators):
        np.testing.assert_allclose(seq.validation_scores_[m], vec.validation_scores_[m])
        np.testing.assert_allclose(seq.loss_curve_[m], vec.loss_curve_[m], rtol=1e-4)
        a, b = seq.moments_[m], vec.moments_[m]
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-5)
        np.testing.assert_allclose(a.variance, b.variance, atol=1e-7)
        np.testing.assert_allclose(a.deviations, b.deviations, atol=1e-5)
    np.testing.assert_allclose(seq.predict_member_proba(X), vec.predict_member_proba(X),
                               atol=1e-4)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_swa_phase_starts_from_the_best_pretraining_weights(stopped, engine):
    # A run without early stopping, on the same training rows from the same seed,
    # whose SWA phase starts right after the best epoch, collects the same iterates.
    X, y, clfs = stopped
    clf = clfs[engine]
    for m in (0, 2):
        rows = clf.estimators_[m].get_params_for("iterator_train")["sampler"].rows.numpy()
        start = int(clf.best_epoch_[m]) + 1
        manual = SWAGClassifier(
            engine=engine, **{**_ES, "n_estimators": m + 1, "early_stopping": False,
                              "swa_start": start, "max_epochs": start + _N_SWA},
        ).fit(X[rows], y[rows])
        assert manual.validation_scores_ is None and manual.best_epoch_ is None
        a, b = manual.moments_[m], clf.moments_[m]
        assert a.n_collected == b.n_collected
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-4)
        np.testing.assert_allclose(a.deviations, b.deviations, atol=1e-4)
        np.testing.assert_allclose(manual.loss_curve_[m][start:], clf.loss_curve_[m][-_N_SWA:],
                                   rtol=1e-4)


def test_shared_validation_rows_and_adam(stopped):
    # Minibatches and Adam: the runs' SWA phases go on from their own epoch counts and
    # optimizer states in both engines.
    X, y, _ = stopped
    params = {**_ES, "optimizer": torch.optim.Adam, "lr": 1e-2, "batch_size": 32,
              "max_epochs": 40, "swa_start": 34, "swa_lr": None, "swa_freq": 1,
              "validation_split": "shared"}
    clfs = {e: SWAGClassifier(engine=e, **params).fit(X, y)
            for e in ("sequential", "vectorized")}
    seq, vec = clfs["sequential"], clfs["vectorized"]
    assert (seq.n_iter_ < 40).all()
    np.testing.assert_array_equal(seq.n_iter_, vec.n_iter_)
    for m in range(3):
        np.testing.assert_allclose(seq.moments_[m].mean, vec.moments_[m].mean, atol=1e-4)
    np.testing.assert_allclose(seq.predict_proba(X), vec.predict_proba(X), atol=1e-4)


# ----------------------------------------------------------------- partial_fit
_PF = dict(n_estimators=2, n_samples=3, max_epochs=4, swa_start=1, random_state=0,
           device="cpu", module__hidden_layer_sizes=(8,), batch_size=32)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_partial_fit_calls_continue_a_fit(engine):
    # k calls on the same rows give the runs, moments and posterior samples of
    # fit(max_epochs=k).
    X, y = _iris_std()
    params = {**_PF, "engine": engine}
    inc = SWAGClassifier(**params)
    for _ in range(3):
        inc.partial_fit(X, y, classes=[0, 1, 2])
    assert inc.engine_ == engine
    np.testing.assert_array_equal(inc.n_iter_, [3, 3])
    np.testing.assert_array_equal(inc.n_collected_, [2, 2])
    full = SWAGClassifier(**{**params, "max_epochs": 3}).fit(X, y)
    np.testing.assert_allclose(inc.loss_curve_, full.loss_curve_, rtol=1e-6)
    for a, b in zip(inc.moments_, full.moments_):
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-6)
        np.testing.assert_allclose(a.deviations, b.deviations, atol=1e-6)
    np.testing.assert_allclose(inc.predict_member_proba(X), full.predict_member_proba(X),
                               atol=1e-5)


def test_partial_fit_before_and_at_the_swa_start():
    X, y = _iris_std()
    clf = SWAGClassifier(**{**_PF, "swa_start": 2})
    clf.partial_fit(X, y, classes=[0, 1, 2])
    clf.partial_fit(X, y)
    # Nothing collected yet: every sample is the current weights (a point estimate).
    np.testing.assert_array_equal(clf.n_collected_, [0, 0])
    proba = clf.predict_member_proba(X)
    assert proba.shape == (6, 150, 3)
    for m, net in enumerate(clf.estimators_):
        expected = torch.softmax(net.module_(torch.as_tensor(X)), dim=1).detach().numpy()
        np.testing.assert_allclose(proba[3 * m: 3 * m + 3], np.stack([expected] * 3),
                                   atol=1e-6)
    # One iterate: zero variance, the samples are that iterate (no low-rank term yet).
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(clf.n_collected_, [1, 1])
    for m, net in enumerate(clf.estimators_):
        np.testing.assert_allclose(clf.moments_[m].mean, flatten_parameters(net.module_),
                                   atol=1e-6)
        expected = torch.softmax(net.module_(torch.as_tensor(X)), dim=1).detach().numpy()
        np.testing.assert_allclose(clf.predict_member_proba(X)[3 * m], expected, atol=1e-5)
    # Two iterates: the low-rank posterior, samples differ.
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(clf.n_collected_, [2, 2])
    proba = clf.predict_member_proba(X)
    assert np.abs(proba[0] - proba[1]).max() > 1e-4


def test_partial_fit_engines_agree_on_pieces_with_weights():
    X, y = _iris_std()
    order = np.random.default_rng(0).permutation(len(y))
    w = np.random.default_rng(1).uniform(0.2, 2.0, len(y))
    clfs = {}
    for engine in ("sequential", "vectorized"):
        clf = SWAGClassifier(**{**_PF, "engine": engine, "batch_size": 16})
        for piece in np.array_split(order, 4):
            clf.partial_fit(X[piece], y[piece], classes=[0, 1, 2], sample_weight=w[piece])
        clfs[engine] = clf
    seq, vec = clfs["sequential"], clfs["vectorized"]
    assert vec.engine_ == "vectorized"
    np.testing.assert_array_equal(vec.n_collected_, [3, 3])
    for a, b in zip(seq.moments_, vec.moments_):
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-5)
    np.testing.assert_allclose(seq.predict_member_proba(X), vec.predict_member_proba(X),
                               atol=2e-5)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_partial_fit_after_runs_stopped_apart(stopped, engine):
    # Each run's next epoch is an SWA epoch counted from its own SWA start.
    import copy

    X, y, clfs = stopped
    clf = copy.deepcopy(clfs[engine])
    before = clf.n_iter_.copy()
    clf.partial_fit(X, y)
    assert clf.engine_ == engine
    np.testing.assert_array_equal(clf.n_iter_, before + 1)
    # _N_SWA = 10 SWA epochs so far, swa_freq=2: the 11th (index 10) is collected.
    np.testing.assert_array_equal(clf.n_collected_, len(range(0, _N_SWA + 1, 2)))
    assert clf.predict_proba(X).shape == (len(y), 10)


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize("params, match", [
    (dict(validation_fraction=1.5), "validation_fraction"),
    (dict(n_iter_no_change=0), "n_iter_no_change"),
    (dict(tol=-1.0), "tol"),
    (dict(validation_split="own"), "validation_split"),
    (dict(early_stopping="yes"), "early_stopping"),
    (dict(checkpoint_epochs="all"), "checkpoint_epochs"),
    (dict(validation_fraction=0.01), "stratified"),
    (dict(swa_start=0), "swa_start"),
])
def test_invalid_early_stopping_parameters(params, match):
    X, y = load_iris(return_X_y=True)
    clf = SWAGClassifier(max_epochs=4, n_samples=2, module__hidden_layer_sizes=(4,),
                         **{"early_stopping": True, "swa_start": 2, **params})
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)


def test_partial_fit_errors():
    X, y = _iris_std()
    clf = SWAGClassifier(**_PF)
    with pytest.raises(ValueError, match="classes must be given"):
        clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        SWAGClassifier(**_PF, checkpoint_epochs="all").partial_fit(X, y, classes=[0, 1, 2])
    clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X, np.where(y == 2, 7, y))


def test_regressor_refuses_early_stopping_without_pretraining():
    X, y = _iris_std()
    with pytest.raises(ValueError, match="swa_start"):
        SWAGRegressor(max_epochs=2, swa_start=0, early_stopping=True).fit(X, y.astype(float))


def test_cached_early_stopped_runs_come_back_with_their_curves(tmp_path):
    X, y = _noisy_digits(120)
    params = {**_ES, "n_estimators": 2, "max_epochs": 30, "swa_start": 25,
              "memory": str(tmp_path)}
    first = SWAGClassifier(**params).fit(X, y)
    again = SWAGClassifier(**params).fit(X, y)
    assert again.n_members_loaded_ == 2
    np.testing.assert_array_equal(again.n_iter_, first.n_iter_)
    np.testing.assert_array_equal(again.best_epoch_, first.best_epoch_)
    assert again.validation_scores_ == first.validation_scores_
    np.testing.assert_array_equal(again.predict_proba(X), first.predict_proba(X))
    # Without early stopping the runs are trained (and stored) again.
    plain = SWAGClassifier(**{**params, "early_stopping": False}).fit(X, y)
    assert plain.n_members_loaded_ == 0 and plain.validation_scores_ is None
