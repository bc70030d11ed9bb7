"""Per-member learning curves, validation splits and early stopping, in both engines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris
from sklearn.metrics import log_loss

from ensemblekit import DeepEnsembleClassifier, DropoutClassifier, SWAGClassifier


def _noisy_digits(n=300):
    # Few rows, a fifth of the labels shuffled and a wide network: the network
    # memorises the training rows and its held-out accuracy stops improving early.
    X, y = load_digits(return_X_y=True)
    X, y = (X[:n] / 16).astype(np.float32), y[:n].copy()
    rng = np.random.default_rng(0)
    flip = rng.random(n) < 0.2
    y[flip] = rng.integers(0, 10, flip.sum())
    return X, y


def _es(engine, **params):
    base = dict(n_estimators=3, max_epochs=80, lr=1e-2, batch_size=32, random_state=0,
                device="cpu", engine=engine, module__hidden_layer_sizes=(64,),
                early_stopping=True, n_iter_no_change=3, validation_fraction=0.2)
    return DeepEnsembleClassifier(**{**base, **params})


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


@pytest.fixture(scope="module")
def fitted():
    X, y = _noisy_digits()
    return X, y, {e: _es(e).fit(X, y) for e in ("sequential", "vectorized")}


def test_stops_before_max_epochs_by_the_mlp_rule(fitted):
    _, _, clfs = fitted
    clf = clfs["sequential"]
    assert (clf.n_iter_ < clf.max_epochs).all()
    for m in range(clf.n_estimators):
        scores = clf.validation_scores_[m]
        assert len(scores) == clf.n_iter_[m] == len(clf.loss_curve_[m])
        assert _mlp_rule(scores, clf.tol, clf.n_iter_no_change) == (clf.n_iter_[m],
                                                                    clf.best_epoch_[m])


def test_engines_agree_on_curves_weights_and_optimizer_state(fitted):
    X, _, clfs = fitted
    seq, vec = clfs["sequential"], clfs["vectorized"]
    assert vec.engine_ == "vectorized"
    # Members stop at different epochs: the vectorised engine froze each one alone.
    assert len(set(seq.n_iter_.tolist())) > 1
    np.testing.assert_array_equal(seq.n_iter_, vec.n_iter_)
    np.testing.assert_array_equal(seq.best_epoch_, vec.best_epoch_)
    for m in range(seq.n_estimators):
        np.testing.assert_allclose(seq.validation_scores_[m], vec.validation_scores_[m])
        np.testing.assert_allclose(seq.loss_curve_[m], vec.loss_curve_[m], rtol=1e-4)
        a = seq.estimators_[m].optimizer_.state_dict()["state"]
        b = vec.estimators_[m].optimizer_.state_dict()["state"]
        assert a.keys() == b.keys()
        for key in a:
            assert float(a[key]["step"]) == float(b[key]["step"]) == seq.n_iter_[m] * 8
            np.testing.assert_allclose(a[key]["exp_avg_sq"], b[key]["exp_avg_sq"],
                                       rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(seq.predict_member_proba(X), vec.predict_member_proba(X),
                               atol=1e-4)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_restores_the_best_epoch_weights(fitted, engine):
    # Training for best_epoch + 1 epochs (same seeds, same held-out rows, no stop)
    # reaches the weights the stopped member restored.
    X, y, clfs = fitted
    clf = clfs[engine]
    assert (clf.best_epoch_ < clf.n_iter_ - 1).all()
    for m in range(clf.n_estimators):
        short = _es(engine, n_estimators=m + 1, max_epochs=int(clf.best_epoch_[m]) + 1,
                    n_iter_no_change=1000).fit(X, y)
        np.testing.assert_allclose(short.predict_member_proba(X)[m],
                                   clf.predict_member_proba(X)[m], atol=1e-5)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_loss_curve_is_the_epoch_loss_full_batch(engine):
    # With one full batch per epoch the loss recorded in epoch e is the training loss
    # of the weights reached after e epochs: compare with sklearn's log_loss.
    X, y = load_iris(return_X_y=True)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    params = dict(n_estimators=2, lr=0.1, batch_size=len(y), random_state=1, device="cpu",
                  engine=engine, optimizer=torch.optim.SGD,
                  module__hidden_layer_sizes=(8,))
    clf = DeepEnsembleClassifier(max_epochs=4, **params).fit(X, y)
    assert clf.validation_scores_ is None and clf.best_epoch_ is None
    np.testing.assert_array_equal(clf.n_iter_, [4, 4])
    for e in (1, 3):
        short = DeepEnsembleClassifier(max_epochs=e, **params).fit(X, y)
        proba = short.predict_member_proba(X)
        for m in range(2):
            assert clf.loss_curve_[m][e] == pytest.approx(log_loss(y, proba[m]), rel=1e-4)


def test_validation_rows_stratified_per_member_or_shared():
    X, y = load_iris(return_X_y=True)

    def held_out(clf):
        out = []
        for net in clf.estimators_:
            rows = net.get_params_for("iterator_train")["sampler"].rows.numpy()
            out.append(np.setdiff1d(np.arange(len(y)), rows))
        return out

    params = dict(n_estimators=3, max_epochs=2, random_state=0, device="cpu",
                  module__hidden_layer_sizes=(4,), early_stopping=True,
                  validation_fraction=0.2)
    own = held_out(DeepEnsembleClassifier(**params).fit(X, y))
    shared = held_out(DeepEnsembleClassifier(validation_split="shared", **params).fit(X, y))
    for rows in own + shared:
        assert len(rows) == 30
        np.testing.assert_array_equal(np.bincount(y[rows]), [10, 10, 10])
    assert not np.array_equal(own[0], own[1])
    assert all(np.array_equal(shared[0], r) for r in shared)


def test_weighted_validation_score_and_dropout_estimator():
    X, y = _noisy_digits(200)
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(y))
    clf = DropoutClassifier(n_estimators=2, n_samples=2, max_epochs=40, lr=1e-2,
                            random_state=0, device="cpu", module__hidden_layer_sizes=(32,),
                            early_stopping=True, n_iter_no_change=2).fit(X, y, sample_weight=w)
    assert (clf.n_iter_ < 40).all()
    assert len(clf.validation_scores_) == 2 and len(clf.loss_curve_) == 2


def test_swag_has_learning_curves():
    X, y = load_iris(return_X_y=True)
    clf = SWAGClassifier(n_samples=2, max_epochs=4, swa_start=2, random_state=0,
                         device="cpu", module__hidden_layer_sizes=(4,)).fit(X, y)
    assert len(clf.loss_curve_) == 1 and len(clf.loss_curve_[0]) == 4
    np.testing.assert_array_equal(clf.n_iter_, [4])


@pytest.mark.parametrize("params, match", [
    (dict(validation_fraction=1.5), "validation_fraction"),
    (dict(n_iter_no_change=0), "n_iter_no_change"),
    (dict(tol=-1.0), "tol"),
    (dict(validation_split="own"), "validation_split"),
    (dict(early_stopping="yes"), "early_stopping"),
    (dict(checkpoint_epochs="all"), "checkpoint_epochs"),
    (dict(validation_fraction=0.01), "stratified"),
])
def test_invalid_early_stopping_parameters(params, match):
    X, y = load_iris(return_X_y=True)
    clf = DeepEnsembleClassifier(n_estimators=1, max_epochs=1,
                                 module__hidden_layer_sizes=(4,),
                                 **{"early_stopping": True, **params})
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)


# ----------------------------------------------------------------- partial_fit
def _iris_std():
    X, y = load_iris(return_X_y=True)
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_partial_fit_epochs_continue_a_fit(engine):
    # k calls on the same rows run the k epochs of fit(max_epochs=k): the data order,
    # optimizer state and learning curve carry on.
    X, y = _iris_std()
    params = dict(n_estimators=2, random_state=0, device="cpu", engine=engine,
                  module__hidden_layer_sizes=(8,), batch_size=32)
    full = DeepEnsembleClassifier(max_epochs=3, **params).fit(X, y)
    inc = DeepEnsembleClassifier(max_epochs=50, **params)
    for _ in range(3):
        inc.partial_fit(X, y, classes=np.array([0, 1, 2]))
    assert inc.engine_ == engine
    np.testing.assert_array_equal(inc.n_iter_, [3, 3])
    np.testing.assert_allclose(inc.loss_curve_, full.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(inc.predict_member_proba(X), full.predict_member_proba(X),
                               atol=1e-6)


def test_partial_fit_engines_agree_on_pieces_with_weights():
    X, y = _iris_std()
    order = np.random.default_rng(0).permutation(len(y))
    w = np.random.default_rng(1).uniform(0.2, 2.0, len(y))
    clfs = {}
    for engine in ("sequential", "vectorized"):
        clf = DeepEnsembleClassifier(n_estimators=2, random_state=0, device="cpu",
                                     engine=engine, module__hidden_layer_sizes=(8,),
                                     batch_size=16)
        for piece in np.array_split(order, 3):
            # Pieces lack classes: labels are declared once, on the first call.
            piece = piece[y[piece] != piece[0] % 3] if piece[0] % 2 else piece
            clf.partial_fit(X[piece], y[piece], classes=[0, 1, 2], sample_weight=w[piece])
        clfs[engine] = clf
    np.testing.assert_array_equal(clfs["vectorized"].n_iter_, [3, 3])
    np.testing.assert_allclose(clfs["sequential"].predict_member_proba(X),
                               clfs["vectorized"].predict_member_proba(X), atol=2e-5)


def test_partial_fit_errors_and_dropout():
    X, y = _iris_std()
    clf = DropoutClassifier(n_estimators=2, n_samples=2, random_state=0, device="cpu",
                            module__hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="classes must be given"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    assert clf.classes_.tolist() == [0, 1, 2]
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(clf.n_iter_, [2, 2])
    assert clf.predict_proba(X).shape == (150, 3)
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X, np.where(y == 2, 7, y))


def test_partial_fit_after_members_stopped_apart_stays_vectorized(fitted):
    # Members of one epoch count train together; the result is the sequential one.
    X, y, clfs = fitted
    import copy

    clf = copy.deepcopy(clfs["vectorized"])
    ref = copy.deepcopy(clfs["sequential"])
    clf.set_params(engine="auto")
    before = clf.n_iter_.copy()
    assert len(set(before.tolist())) > 1
    clf.partial_fit(X, y)
    ref.partial_fit(X, y)
    np.testing.assert_array_equal(clf.n_iter_, before + 1)
    assert clf.engine_ == "vectorized"
    np.testing.assert_allclose(clf.predict_member_proba(X), ref.predict_member_proba(X),
                               atol=1e-5)


# ----------------------------------------------------------------- scale-out, cache
def _cache_entries(folder):
    return len(list((folder / "ensemblekit_members").glob("*.ekm")))


@pytest.mark.slow
@pytest.mark.parametrize("split", ["per_member", "shared"])
def test_members_stopped_in_worker_processes_match_a_local_fit(split):
    # Each member's validation rows and stopping rule travel to the worker that
    # trains it; the curves and weights that come back are those of a local fit.
    X, y = _noisy_digits(200)
    params = dict(max_epochs=40, validation_split=split, module__hidden_layer_sizes=(32,))
    local = _es("sequential", **params).fit(X, y)
    remote = _es("sequential", **params, n_jobs=2).fit(X, y)
    assert (local.n_iter_ < 40).any()
    np.testing.assert_array_equal(remote.n_iter_, local.n_iter_)
    np.testing.assert_array_equal(remote.best_epoch_, local.best_epoch_)
    for m in range(3):
        np.testing.assert_allclose(remote.validation_scores_[m], local.validation_scores_[m])
        np.testing.assert_allclose(remote.loss_curve_[m], local.loss_curve_[m], rtol=1e-6)
    np.testing.assert_allclose(remote.predict_member_proba(X), local.predict_member_proba(X),
                               rtol=1e-6, atol=1e-7)
    for net in remote.estimators_:  # no held-out rows left in the members
        assert "ensemblekit_monitor" not in dict(net.callbacks_)


def test_cache_never_reuses_members_across_early_stopping_settings(tmp_path):
    X, y = _iris_std()
    base = dict(n_estimators=2, max_epochs=30, lr=5e-2, batch_size=32, random_state=0,
                device="cpu", module__hidden_layer_sizes=(8,), memory=str(tmp_path))
    es = dict(early_stopping=True, n_iter_no_change=2, validation_fraction=0.2)
    plain = DeepEnsembleClassifier(**base).fit(X, y)
    assert plain.validation_scores_ is None and _cache_entries(tmp_path) == 2
    stopped = DeepEnsembleClassifier(**base, **es).fit(X, y)
    assert _cache_entries(tmp_path) == 4
    assert stopped.validation_scores_ is not None
    np.testing.assert_array_equal([len(s) for s in stopped.validation_scores_],
                                  stopped.n_iter_)
    # The same settings again: every member comes from the cache, curves included.
    again = DeepEnsembleClassifier(**base, **es).fit(X, y)
    assert _cache_entries(tmp_path) == 4 and again.n_members_loaded_ == 2
    np.testing.assert_array_equal(again.n_iter_, stopped.n_iter_)
    np.testing.assert_array_equal(again.best_epoch_, stopped.best_epoch_)
    np.testing.assert_allclose(again.predict_proba(X), stopped.predict_proba(X))
    # Any other early-stopping setting trains (and stores) new members.
    count = 4
    for change in (dict(n_iter_no_change=3), dict(tol=0.05), dict(validation_fraction=0.3),
                   dict(validation_split="shared")):
        other = DeepEnsembleClassifier(**base, **{**es, **change}).fit(X, y)
        count += 2
        assert other.n_members_loaded_ == 0, change
        assert _cache_entries(tmp_path) == count, change


def test_first_partial_fit_call_does_not_take_fully_trained_members(tmp_path):
    X, y = _iris_std()
    base = dict(n_estimators=2, max_epochs=5, random_state=0, device="cpu",
                module__hidden_layer_sizes=(8,), memory=str(tmp_path))
    full = DeepEnsembleClassifier(**base).fit(X, y)
    np.testing.assert_array_equal(full.n_iter_, [5, 5])
    inc = DeepEnsembleClassifier(**base).partial_fit(X, y, classes=[0, 1, 2])
    np.testing.assert_array_equal(inc.n_iter_, [1, 1])
    assert _cache_entries(tmp_path) == 4
    # ... nor does a full fit take the one-epoch members of a first partial_fit call.
    refit = DeepEnsembleClassifier(**base).fit(X, y)
    np.testing.assert_array_equal(refit.n_iter_, [5, 5])
    np.testing.assert_allclose(refit.predict_proba(X), full.predict_proba(X))


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_progress_bar_counts_the_epochs_that_ran(engine, capsys):
    X, y = _noisy_digits()
    clf = _es(engine, verbose=1).fit(X, y)
    err = capsys.readouterr().err
    ran, planned = int(clf.n_iter_.sum()), clf.n_estimators * clf.max_epochs
    assert ran < planned
    # The finished bar counts the member-epochs that ran, and says how many did not.
    assert f"{ran}/{ran}" in err
    assert f"{planned - ran} planned member-epochs not run" in err
