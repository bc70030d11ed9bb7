"""Early stopping (MLPRegressor's rule and R^2 score) and partial_fit of the regressors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from ensemblekit import DeepEnsembleRegressor, DropoutRegressor, SWAGRegressor

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _noisy_linear(n=120, seed=0):
    # Few rows, many inputs, much noise and a wide network: the network soon fits the
    # noise of its training rows and its held-out R^2 stops improving.
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    return X, X[:, 0] + 0.8 * rng.normal(size=n)


def _es(engine, **params):
    base = dict(n_estimators=3, max_epochs=150, lr=1e-2, batch_size=32, random_state=0,
                device="cpu", engine=engine, module__hidden_layer_sizes=(64,),
                early_stopping=True, n_iter_no_change=3, validation_fraction=0.25)
    return DeepEnsembleRegressor(**{**base, **params})


def _mlp_rule(scores, tol, n_iter_no_change):
    """scikit-learn MLPRegressor's stopping rule, written out: (epochs run, best epoch)."""
    best, best_epoch, bad = -np.inf, -1, 0
    for epoch, score in enumerate(scores):
        bad = bad + 1 if score < best + tol else 0
        if score > best:
            best, best_epoch = score, epoch
        if bad > n_iter_no_change:
            return epoch + 1, best_epoch
    return len(scores), best_epoch


def _held_out(reg, n):
    """Each network's validation rows: those its training sampler never visits."""
    rows = [net.get_params_for("iterator_train")["sampler"].rows.numpy()
            for net in reg.estimators_]
    return [np.setdiff1d(np.arange(n), r) for r in rows]


@pytest.fixture(scope="module")
def fitted():
    X, y = _noisy_linear()
    w = np.random.default_rng(3).uniform(0.3, 3.0, len(y))
    return X, y, w, {e: _es(e).fit(X, y, sample_weight=w)
                     for e in ("sequential", "vectorized")}


def test_stops_before_max_epochs_by_the_mlp_rule(fitted):
    *_, regs = fitted
    reg = regs["sequential"]
    assert (reg.n_iter_ < reg.max_epochs).all()
    for m in range(reg.n_estimators):
        scores = reg.validation_scores_[m]
        assert len(scores) == reg.n_iter_[m] == len(reg.loss_curve_[m])
        assert _mlp_rule(scores, reg.tol, reg.n_iter_no_change) == (reg.n_iter_[m],
                                                                    reg.best_epoch_[m])


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_validation_score_is_weighted_r2_on_unstratified_held_out_rows(fitted, engine):
    # The network holds its best epoch's weights, so the weighted R^2 of its
    # predictions (in target units) on its held-out rows is its best validation score.
    X, y, w, regs = fitted
    reg = regs[engine]
    held_out = _held_out(reg, len(y))
    means, _ = reg.predict_member(X)
    for m, rows in enumerate(held_out):
        # ceil(0.25 * 120) rows; y is continuous, so a stratified split would fail.
        assert len(rows) == 30
        expected = r2_score(y[rows], means[m, rows], sample_weight=w[rows])
        assert reg.validation_scores_[m][reg.best_epoch_[m]] == pytest.approx(expected,
                                                                              abs=1e-5)
        assert max(reg.validation_scores_[m]) == reg.validation_scores_[m][
            reg.best_epoch_[m]]
    assert not np.array_equal(held_out[0], held_out[1])
    shared = _held_out(_es(engine, validation_split="shared", max_epochs=1).fit(X, y), len(y))
    assert all(np.array_equal(shared[0], rows) for rows in shared)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_restores_the_best_epoch_weights(fitted, engine):
    # Training for best_epoch + 1 epochs (same seeds, same held-out rows, no stop)
    # reaches the weights the stopped network restored.
    X, y, w, regs = fitted
    reg = regs[engine]
    assert (reg.best_epoch_ < reg.n_iter_ - 1).all()
    for m in range(reg.n_estimators):
        short = _es(engine, n_estimators=m + 1, max_epochs=int(reg.best_epoch_[m]) + 1,
                    n_iter_no_change=1000).fit(X, y, sample_weight=w)
        np.testing.assert_allclose(short.predict_member(X)[0][m],
                                   reg.predict_member(X)[0][m], atol=1e-5)


def test_engines_agree(fitted):
    X, *_, regs = fitted
    seq, vec = regs["sequential"], regs["vectorized"]
    assert vec.engine_ == "vectorized"
    # Networks stop at different epochs: the vectorised engine froze each one alone.
    assert len(set(seq.n_iter_.tolist())) > 1
    np.testing.assert_array_equal(seq.n_iter_, vec.n_iter_)
    np.testing.assert_array_equal(seq.best_epoch_, vec.best_epoch_)
    for m in range(seq.n_estimators):
        np.testing.assert_allclose(seq.validation_scores_[m], vec.validation_scores_[m],
                                   atol=1e-5)
        np.testing.assert_allclose(seq.loss_curve_[m], vec.loss_curve_[m], rtol=1e-4)
    for a, b in zip(seq.predict_member(X), vec.predict_member(X)):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_several_targets_and_squared_error():
    # R^2 averaged uniformly over the targets, as MLPRegressor scores several targets.
    X, y = _noisy_linear()
    Y = np.c_[y, -2 * y + np.random.default_rng(1).normal(size=len(y))]
    reg = _es("vectorized", n_estimators=2, loss="squared_error").fit(X, Y)
    assert (reg.n_iter_ < reg.max_epochs).all()
    means, _ = reg.predict_member(X)
    for m, rows in enumerate(_held_out(reg, len(y))):
        expected = r2_score(Y[rows], means[m, rows])
        assert reg.validation_scores_[m][reg.best_epoch_[m]] == pytest.approx(expected,
                                                                              abs=1e-5)


def test_dropout_regressor_stops_early_and_keeps_its_best_epoch():
    X, y = _noisy_linear()
    reg = DropoutRegressor(n_estimators=2, n_samples=3, max_epochs=150, lr=1e-2,
                           batch_size=32, random_state=0, device="cpu",
                           module__hidden_layer_sizes=(64,), module__dropout=0.05,
                           early_stopping=True, n_iter_no_change=3,
                           validation_fraction=0.25).fit(X, y)
    assert (reg.n_iter_ < 150).all()
    for m in range(2):
        scores = reg.validation_scores_[m]
        assert _mlp_rule(scores, reg.tol, 3) == (reg.n_iter_[m], reg.best_epoch_[m])


def test_too_few_validation_rows():
    X, y = _noisy_linear(n=12)
    with pytest.raises(ValueError, match="at least 2"):
        _es("sequential", validation_fraction=0.05).fit(X, y)


# ----------------------------------------------------------------- partial_fit
def _pf(cls=DeepEnsembleRegressor, **params):
    base = dict(n_estimators=2, random_state=0, device="cpu", lr=1e-2, batch_size=16,
                module__hidden_layer_sizes=(8,))
    return cls(**{**base, **params})


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_partial_fit_epochs_continue_a_fit(engine):
    # k calls on the same rows run the k epochs of fit(max_epochs=k): the target
    # scaling, data order, optimizer state and learning curve carry on.
    X, y = _noisy_linear(n=80)
    full = _pf(engine=engine, max_epochs=3).fit(X, y)
    inc = _pf(engine=engine, max_epochs=50)
    for _ in range(3):
        inc.partial_fit(X, y)
    assert inc.engine_ == engine
    np.testing.assert_array_equal(inc.n_iter_, [3, 3])
    np.testing.assert_allclose(inc.loss_curve_, full.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(inc.y_mean_, full.y_mean_)
    for a, b in zip(inc.predict_member(X), full.predict_member(X)):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("cls", [DeepEnsembleRegressor, DropoutRegressor])
def test_partial_fit_engines_agree_on_weighted_pieces(cls):
    X, y = _noisy_linear(n=90)
    Y = np.c_[y, X[:, 1]]
    w = np.random.default_rng(1).uniform(0.2, 2.0, len(y))
    regs = {}
    for engine in ("sequential", "vectorized"):
        extra = dict(n_samples=2) if cls is DropoutRegressor else {}
        reg = _pf(cls, engine=engine, **extra)
        for piece in np.array_split(np.random.default_rng(0).permutation(len(y)), 3):
            reg.partial_fit(X[piece], Y[piece], sample_weight=w[piece])
        assert reg.engine_ == engine
        regs[engine] = reg
    np.testing.assert_array_equal(regs["vectorized"].n_iter_, [3, 3])
    for a, b in zip(regs["sequential"].predict_member(X), regs["vectorized"].predict_member(X)):
        np.testing.assert_allclose(a, b, atol=2e-5)
    # The weights are used: unweighted pieces give other networks.
    plain = _pf(cls, **(dict(n_samples=2) if cls is DropoutRegressor else {}))
    for piece in np.array_split(np.random.default_rng(0).permutation(len(y)), 3):
        plain.partial_fit(X[piece], Y[piece])
    assert not np.allclose(plain.predict(X), regs["sequential"].predict(X))


def test_partial_fit_errors():
    X, y = _noisy_linear(n=40)
    reg = _pf().partial_fit(X, y)
    with pytest.raises(ValueError, match="partial_fit needs the 1 target"):
        reg.partial_fit(X, np.c_[y, y])
    with pytest.raises(ValueError, match="features"):
        reg.partial_fit(X[:, :3], y)
    with pytest.raises(ValueError, match="checkpoint"):
        _pf(checkpoint_epochs="all").partial_fit(X, y)


# ----------------------------------------------------------------- SWAG
_SWAG = dict(n_estimators=2, n_samples=3, max_epochs=60, swa_start=50, swa_freq=2, lr=1e-2,
             batch_size=32, random_state=0, device="cpu", module__hidden_layer_sizes=(64,),
             early_stopping=True, n_iter_no_change=3, validation_fraction=0.25)
_N_SWA = _SWAG["max_epochs"] - _SWAG["swa_start"]


@pytest.fixture(scope="module")
def swag_stopped():
    X, y = _noisy_linear()
    return X, y, {e: SWAGRegressor(engine=e, **_SWAG).fit(X, y)
                  for e in ("sequential", "vectorized")}


def test_swag_early_stopping_shortens_pretraining_only(swag_stopped):
    X, _, regs = swag_stopped
    for reg in regs.values():
        pre = reg.n_iter_ - _N_SWA
        assert (pre < reg.swa_start).all()
        for m in range(reg.n_estimators):
            scores = reg.validation_scores_[m]
            assert len(scores) == reg.n_iter_[m] == len(reg.loss_curve_[m])
            assert _mlp_rule(scores[: pre[m]], reg.tol, reg.n_iter_no_change) == (
                pre[m], reg.best_epoch_[m])
        # The whole SWA phase ran and collected every swa_freq-th of its epochs.
        np.testing.assert_array_equal(reg.n_collected_, len(range(0, _N_SWA, 2)))
    seq, vec = regs["sequential"], regs["vectorized"]
    assert vec.engine_ == "vectorized"
    np.testing.assert_array_equal(seq.n_iter_, vec.n_iter_)
    np.testing.assert_array_equal(seq.best_epoch_, vec.best_epoch_)
    for m in range(seq.n_estimators):
        np.testing.assert_allclose(seq.validation_scores_[m], vec.validation_scores_[m],
                                   atol=1e-5)
        np.testing.assert_allclose(seq.moments_[m].mean, vec.moments_[m].mean, atol=1e-4)
    for a, b in zip(seq.predict_member(X), vec.predict_member(X)):
        np.testing.assert_allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_swag_partial_fit_calls_continue_a_fit(engine):
    X, y = _noisy_linear(n=80)
    params = dict(n_estimators=2, n_samples=3, swa_start=1, method="diagonal",
                  random_state=0, device="cpu", lr=1e-2, batch_size=16, engine=engine,
                  module__hidden_layer_sizes=(8,))
    inc = SWAGRegressor(max_epochs=50, **params)
    for _ in range(3):
        inc.partial_fit(X, y)
    np.testing.assert_array_equal(inc.n_iter_, [3, 3])
    np.testing.assert_array_equal(inc.n_collected_, [2, 2])
    full = SWAGRegressor(max_epochs=3, **params).fit(X, y)
    np.testing.assert_allclose(inc.loss_curve_, full.loss_curve_, rtol=1e-6)
    for a, b in zip(inc.moments_, full.moments_):
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-6)
    for a, b in zip(inc.predict_member(X), full.predict_member(X)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_memory_serves_early_stopped_regressors_with_their_curves(tmp_path):
    X, y = _noisy_linear()
    params = dict(n_estimators=2, max_epochs=100, memory=str(tmp_path))
    first = _es("auto", **params).fit(X, y)
    again = _es("auto", **params).fit(X, y)
    assert again.n_members_loaded_ == 2
    np.testing.assert_array_equal(again.best_epoch_, first.best_epoch_)
    assert again.validation_scores_ == first.validation_scores_
    np.testing.assert_array_equal(again.predict(X), first.predict(X))
    # The networks learn standardised targets: an affine change of y reuses them, and
    # the predictions follow it.
    shifted = _es("auto", **params).fit(X, 3 * y + 1)
    assert shifted.n_members_loaded_ == 2
    np.testing.assert_allclose(shifted.predict(X), 3 * first.predict(X) + 1, atol=1e-4)


def test_r2_monitor_scores_like_r2_score_and_a_nan_score_never_improves():
    import torch
    from torch import nn

    from ensemblekit.engine import MemberMonitor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.normal(size=(20, 2))
    w = rng.uniform(0.5, 2.0, 20)
    net = nn.Linear(3, 4)  # a Gaussian head: 2 means, then 2 raw variances
    mon = MemberMonitor(X, y, w, n_iter_no_change=1, tol=0.0, batch_size=7, score="r2")
    means = net(torch.as_tensor(X)).detach().numpy()[:, :2]
    assert mon.score(net) == pytest.approx(r2_score(y, means, sample_weight=w), abs=1e-6)
    assert not mon.end_epoch(net) and mon.best_epoch == 0
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    assert not mon.end_epoch(net)  # nan: one epoch without improvement
    assert np.isnan(mon.scores[-1]) and mon.best_epoch == 0
    assert mon.end_epoch(net)  # two: more than n_iter_no_change, stop
    assert mon.improved == [True, False, False]
