"""SubspaceSamplingClassifier: base runs in both engines, early stopping and partial_fit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ensemblekit import SubspaceSamplingClassifier

BASE = dict(n_estimators=2, n_samples=3, max_epochs=5, lr=1e-2, batch_size=32,
            random_state=0, device="cpu", module__hidden_layer_sizes=(8,))


def _theta(net) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(net.module_.parameters()).detach().numpy()


def _both(X, y, sample_weight=None, **params):
    out = {}
    for engine in ("sequential", "vectorized"):
        clf = SubspaceSamplingClassifier(engine=engine, **{**BASE, **params})
        out[engine] = clf.fit(X, y, sample_weight=sample_weight)
    return out["sequential"], out["vectorized"]


@pytest.mark.parametrize("params", [
    dict(method="diagonal_gaussian", collect_from_epoch=2),
    dict(method="pca_gaussian", rank=2, collect_from_epoch=1),
    dict(method="weight_average"),
    # Rejection: each run trains on its own rows, the acceptance rows held out.
    dict(method="random", random_scale=1.0, accuracy_threshold=0.6, max_tries=3,
         acceptance_fraction=0.2),
    dict(method="dropout", dropout_max_p=0.3),
])
def test_engines_give_the_same_runs_and_samples(iris, params):
    X, y = iris
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    seq, vec = _both(X, y, sample_weight=w, **params)
    assert seq.engine_ == "sequential"
    assert vec.engine_ == "vectorized" and vec.engine_reason_.startswith("grouped")
    for a, b in zip(seq.estimators_, vec.estimators_):
        np.testing.assert_allclose(_theta(b), _theta(a), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(vec.n_tries_, seq.n_tries_)
    np.testing.assert_array_equal(vec.accepted_, seq.accepted_)
    np.testing.assert_allclose(vec.loss_curve_, seq.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(vec.predict_member_proba(X), seq.predict_member_proba(X),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(vec.predict_proba(X), seq.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_each_run_trains_on_its_own_rows_without_its_acceptance_rows(iris, engine):
    X, y = iris
    params = dict(BASE, n_samples=1, max_epochs=3, engine=engine)
    clf = SubspaceSamplingClassifier(method="random", accuracy_threshold=0.5,
                                     acceptance_fraction=0.2, **params).fit(X, y)
    held = []
    for m, net in enumerate(clf.estimators_):
        rows = net.get_params_for("iterator_train")["sampler"].rows.numpy()
        accept = net.acceptance_rows_
        assert len(accept) == 30 and len(rows) == 120
        np.testing.assert_array_equal(np.union1d(rows, accept), np.arange(len(y)))
        held.append(accept)
        # The run is the network a run without held-out rows (same seed) reaches on
        # X[rows] alone: the same batches in the same order.
        alone = SubspaceSamplingClassifier(method="dropout", **params).fit(X[rows], y[rows])
        np.testing.assert_allclose(_theta(net), _theta(alone.estimators_[m]), rtol=1e-5,
                                   atol=1e-6)
    assert not np.array_equal(held[0], held[1])  # drawn from each run's seed


def test_engine_parameters_are_validated(iris):
    X, y = iris
    with pytest.raises(ValueError, match=r"engine must be one of \['auto', 'sequential'"):
        SubspaceSamplingClassifier(engine="gpu", **BASE).fit(X, y)
    with pytest.raises(ValueError, match="max_members_per_pass must be an integer >= 1"):
        SubspaceSamplingClassifier(max_members_per_pass=0, **BASE).fit(X, y)
    from skorch.callbacks import LRScheduler

    with pytest.raises(ValueError, match="engine='vectorized' cannot train"):
        SubspaceSamplingClassifier(engine="vectorized", callbacks=[LRScheduler()],
                                   **BASE).fit(X, y)
    auto = SubspaceSamplingClassifier(callbacks=[LRScheduler()], **BASE).fit(X, y)
    assert auto.engine_ == "sequential" and "LRScheduler" in auto.engine_reason_


# ----------------------------------------------------------------- early stopping
def _noisy_digits(n=300):
    # Few rows, a fifth of the labels shuffled and a wide network: the network
    # memorises its training rows and its held-out accuracy stops improving early.
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = (X[:n] / 16).astype(np.float32), y[:n].copy()
    rng = np.random.default_rng(0)
    flip = rng.random(n) < 0.2
    y[flip] = rng.integers(0, 10, flip.sum())
    return X, y


ES = dict(n_estimators=2, max_epochs=60, lr=5e-3, batch_size=32, random_state=1,
          device="cpu", module__hidden_layer_sizes=(64,), early_stopping=True,
          n_iter_no_change=3, validation_fraction=0.2, method="weight_average")


@pytest.fixture(scope="module")
def stopped():
    from _posterior_helpers import Recorder

    X, y = _noisy_digits()
    fits = {e: SubspaceSamplingClassifier(engine=e, **ES).fit(X, y)
            for e in ("sequential", "vectorized")}
    # The same runs with a recorder of every epoch's weights (sequential engine).
    fits["recorded"] = SubspaceSamplingClassifier(engine="sequential", callbacks=[Recorder()],
                                                  **ES).fit(X, y)
    return X, y, fits


def test_early_stopping_stops_runs_and_both_engines_agree(stopped):
    X, _, fits = stopped
    seq, vec = fits["sequential"], fits["vectorized"]
    assert vec.engine_ == "vectorized"
    assert (seq.n_iter_ < 60).all() and (seq.best_epoch_ < seq.n_iter_ - 1).all()
    # The runs stop apart: the vectorised engine froze the first one to stop alone.
    assert len(set(seq.n_iter_.tolist())) > 1
    np.testing.assert_array_equal(vec.n_iter_, seq.n_iter_)
    np.testing.assert_array_equal(vec.best_epoch_, seq.best_epoch_)
    for m in range(2):
        assert len(seq.validation_scores_[m]) == seq.n_iter_[m] == len(seq.loss_curve_[m])
        assert seq.best_epoch_[m] == int(np.argmax(seq.validation_scores_[m]))
        np.testing.assert_allclose(vec.validation_scores_[m], seq.validation_scores_[m])
        np.testing.assert_allclose(vec.loss_curve_[m], seq.loss_curve_[m], rtol=1e-4)
    np.testing.assert_allclose(vec.predict_member_proba(X), seq.predict_member_proba(X),
                               atol=1e-4)


def test_early_stopping_restores_the_best_epoch_and_its_trajectory(stopped):
    _, _, fits = stopped
    from _posterior_helpers import recorder

    clf = fits["recorded"]
    np.testing.assert_array_equal(clf.n_iter_, fits["sequential"].n_iter_)
    assert clf.best_epoch_.max() >= 10  # the window of 10 ends at the best epoch
    for m, (net, sample) in enumerate(zip(clf.estimators_, clf.sample_networks_)):
        thetas = recorder(net).thetas  # weights after every epoch trained
        best = int(clf.best_epoch_[m])
        assert len(thetas) == clf.n_iter_[m]
        np.testing.assert_allclose(_theta(net), thetas[best].numpy(), rtol=1e-6, atol=1e-7)
        # weight_average: the mean of the last 10 epochs up to the best one.
        expected = torch.stack(thetas[max(0, best - 9): best + 1]).mean(0).numpy()
        got = torch.nn.utils.parameters_to_vector(sample.parameters()).detach().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_partial_fit_after_early_stopping_continues_from_the_best_epoch(stopped):
    import copy

    from _posterior_helpers import recorder

    X, y, fits = stopped
    clf = copy.deepcopy(fits["recorded"])
    best = clf.best_epoch_.copy()
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(clf.n_iter_, fits["recorded"].n_iter_ + 1)
    for m, (net, sample) in enumerate(zip(clf.estimators_, clf.sample_networks_)):
        thetas = recorder(net).thetas
        # The window: the epochs up to the best one (those after it were discarded
        # by the restore), then the epoch trained from the best weights.
        window = [*thetas[max(0, best[m] - 8): best[m] + 1], thetas[-1]]
        expected = torch.stack(window).mean(0).numpy()
        got = torch.nn.utils.parameters_to_vector(sample.parameters()).detach().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The vectorised fit's runs stopped apart: runs of one epoch count continue
    # together, still in the vectorised engine.
    vec = copy.deepcopy(fits["vectorized"])
    assert len(set(vec.n_iter_.tolist())) > 1
    vec.set_params(engine="auto").partial_fit(X, y)
    assert vec.engine_ == "vectorized"
    np.testing.assert_array_equal(vec.n_iter_, fits["vectorized"].n_iter_ + 1)


@pytest.mark.parametrize("split", ["per_member", "shared"])
def test_validation_rows_then_acceptance_rows_never_overlap(split):
    from ensemblekit import DeepEnsembleClassifier

    X, y = _noisy_digits(200)
    params = dict(n_estimators=2, max_epochs=1, random_state=3, device="cpu",
                  module__hidden_layer_sizes=(4,), early_stopping=True,
                  validation_fraction=0.25, validation_split=split)
    clf = SubspaceSamplingClassifier(method="random", accuracy_threshold=0.1,
                                     acceptance_fraction=0.2, n_samples=1,
                                     **params).fit(X, y)
    # The validation rows are those any estimator draws for these seeds.
    ref = DeepEnsembleClassifier(**params).fit(X, y)
    valids, accepts = [], []
    for net, ref_net in zip(clf.estimators_, ref.estimators_):
        rows = net.get_params_for("iterator_train")["sampler"].rows.numpy()
        accept = net.acceptance_rows_
        valid = np.setdiff1d(np.arange(len(y)), ref_net.get_params_for(
            "iterator_train")["sampler"].rows.numpy())
        assert len(valid) == 50 and len(accept) == 30 and len(rows) == 120
        assert np.intersect1d(valid, accept).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([rows, accept, valid])),
                                      np.arange(len(y)))
        valids.append(valid)
        accepts.append(accept)
    assert np.array_equal(valids[0], valids[1]) == (split == "shared")
    assert not np.array_equal(accepts[0], accepts[1])


def test_validation_fraction_is_unused_without_early_stopping(iris):
    X, y = iris
    params = dict(BASE, method="random", accuracy_threshold=0.5, n_samples=1, max_epochs=1)
    a = SubspaceSamplingClassifier(validation_fraction=0.1, **params).fit(X, y)
    b = SubspaceSamplingClassifier(validation_fraction=0.5, **params).fit(X, y)
    assert a.validation_scores_ is None and a.best_epoch_ is None
    for na, nb in zip(a.estimators_, b.estimators_):
        np.testing.assert_array_equal(na.acceptance_rows_, nb.acceptance_rows_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.parametrize("params, match", [
    (dict(validation_fraction=1.5), "validation_fraction"),
    (dict(n_iter_no_change=0), "n_iter_no_change"),
    (dict(validation_split="own"), "validation_split"),
    (dict(early_stopping="yes"), "early_stopping"),
    (dict(checkpoint_epochs="all"), "checkpoint_epochs"),
    (dict(validation_fraction=0.01), "stratified"),
])
def test_invalid_early_stopping_parameters(iris, params, match):
    X, y = iris
    with pytest.raises(ValueError, match=match):
        SubspaceSamplingClassifier(**{**BASE, "early_stopping": True, **params}).fit(X, y)


# ----------------------------------------------------------------- partial_fit
@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
@pytest.mark.parametrize("params", [
    dict(method="random", accuracy_threshold=0.5, random_scale=1.0, acceptance_fraction=0.2),
    dict(method="pca_gaussian", rank=2, collect_from_epoch=1),
])
def test_partial_fit_calls_continue_like_a_fit(iris, engine, params):
    # k calls on the same rows: the runs, acceptance rows and checkpoints of
    # fit(max_epochs=k), hence the same samples.
    X, y = iris
    full = SubspaceSamplingClassifier(engine=engine, **{**BASE, **params, "max_epochs": 4})
    full.fit(X, y)
    inc = SubspaceSamplingClassifier(engine=engine, **{**BASE, **params, "max_epochs": 4})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # too few checkpoints at first
        for _ in range(4):
            inc.partial_fit(X, y, classes=[0, 1, 2])
    assert inc.engine_ == engine
    np.testing.assert_array_equal(inc.n_iter_, [4, 4])
    np.testing.assert_allclose(inc.loss_curve_, full.loss_curve_, rtol=1e-5)
    np.testing.assert_array_equal(inc.n_tries_, full.n_tries_)
    np.testing.assert_allclose(inc.predict_member_proba(X), full.predict_member_proba(X),
                               atol=1e-5)


def test_partial_fit_pieces_slide_the_checkpoint_window_in_both_engines(iris):
    from _posterior_helpers import Recorder, recorder

    X, y = iris
    order = np.random.default_rng(0).permutation(len(y))
    params = dict(BASE, method="weight_average", collect_from_epoch=2, max_epochs=4)
    fits = {}
    for engine in ("sequential", "vectorized"):
        clf = SubspaceSamplingClassifier(engine=engine, **params).fit(X, y)
        for piece in np.array_split(order, 3):
            clf.partial_fit(X[piece], y[piece])
        fits[engine] = clf
    seq, vec = fits["sequential"], fits["vectorized"]
    assert vec.engine_ == "vectorized"
    np.testing.assert_array_equal(vec.n_iter_, [7, 7])
    np.testing.assert_allclose(vec.predict_member_proba(X), seq.predict_member_proba(X),
                               atol=1e-5)
    # The window keeps the last max_epochs - collect_from_epoch = 2 epochs: 5 and 6.
    ref = SubspaceSamplingClassifier(engine="sequential", callbacks=[Recorder()],
                                     **params).fit(X, y)
    for piece in np.array_split(order, 3):
        ref.partial_fit(X[piece], y[piece])
    for net, sample in zip(ref.estimators_, ref.sample_networks_):
        thetas = recorder(net).thetas
        assert len(thetas) == 7
        expected = torch.stack(thetas[5:7]).mean(0).numpy()
        got = torch.nn.utils.parameters_to_vector(sample.parameters()).detach().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref.predict_member_proba(X), seq.predict_member_proba(X),
                               atol=1e-5)


def test_first_partial_fit_calls_without_enough_checkpoints(iris):
    X, y = iris
    clf = SubspaceSamplingClassifier(method="diagonal_gaussian", **BASE)
    with pytest.warns(UserWarning, match="too few checkpoints.*1 of 2"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    # A point mass at the run's weights.
    for m, net in enumerate(clf.estimators_):
        for sample in clf.sample_networks_[3 * m: 3 * m + 3]:
            got = torch.nn.utils.parameters_to_vector(sample.parameters()).detach().numpy()
            np.testing.assert_array_equal(got, _theta(net))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf.partial_fit(X, y)  # two checkpoints now: a Gaussian
    spread = np.std([torch.nn.utils.parameters_to_vector(s.parameters()).detach().numpy()
                     for s in clf.sample_networks_[:3]], axis=0)
    assert spread.max() > 0


def test_partial_fit_errors(iris):
    X, y = iris
    clf = SubspaceSamplingClassifier(method="random", accuracy_threshold=0.5, **BASE)
    with pytest.raises(ValueError, match="classes must be given"):
        clf.partial_fit(X, y)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X, np.where(y == 2, 7, y))
    with pytest.raises(ValueError, match="Each call needs at least 2 rows"):
        clf.partial_fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        SubspaceSamplingClassifier(checkpoint_epochs="all", **BASE).partial_fit(
            X, y, classes=[0, 1, 2])
