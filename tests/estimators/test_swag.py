"""SWAGClassifier: moments from its own training run, samples and BatchNorm refresh."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from _posterior_helpers import BNNet, Recorder, bn_problem, recorder
from sklearn.base import clone

from ensemblekit import SWAGClassifier

TINY = dict(max_epochs=8, lr=1e-2, batch_size=32, random_state=0, device="cpu",
            module__hidden_layer_sizes=(8,))


@pytest.fixture(scope="module")
def fitted(iris):
    X, y = iris
    clf = SWAGClassifier(n_samples=5, swa_start=3, swa_lr=5e-3, max_rank=4,
                         callbacks=[Recorder()], **TINY)
    return clf.fit(X, y)


def test_moments_equal_hand_computed_checkpoint_statistics(fitted):
    thetas = torch.stack(recorder(fitted.estimators_[0]).thetas).numpy()
    collected = thetas[3:]  # epochs 3..7
    moments = fitted.moments_[0]
    assert moments.n_collected == 5 and moments.rank == 4
    np.testing.assert_allclose(moments.mean.numpy(), collected.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(moments.variance.numpy(), collected.var(0), rtol=1e-4, atol=1e-9)
    running = np.cumsum(collected, 0) / np.arange(1, 6)[:, None]
    np.testing.assert_allclose(moments.deviations.numpy(), (collected - running)[-4:],
                               rtol=1e-4, atol=1e-6)


def test_swa_phase_runs_at_swa_lr(fitted):
    lrs = recorder(fitted.estimators_[0]).lrs
    assert lrs[:3] == [1e-2] * 3 and lrs[3:] == [5e-3] * 5


def test_member_axis_and_probabilities(fitted, iris):
    X, _ = iris
    proba = fitted.predict_member_proba(X[:7])
    assert proba.shape == (5, 7, 3)
    np.testing.assert_allclose(proba.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(fitted.predict_proba(X[:7]), proba.mean(0), rtol=1e-6)
    assert len(fitted.sample_networks_) == 5
    assert fitted.max_rank_ == 4 and fitted.swa_start_ == 3


def test_samples_differ_and_center_on_the_swa_mean(fitted):
    thetas = torch.stack([torch.nn.utils.parameters_to_vector(m.parameters()).detach()
                          for m in fitted.sample_networks_]).double()
    assert float(thetas.std(0).max()) > 0
    mean = fitted.moments_[0].mean
    scale = fitted.moments_[0].variance.sqrt().max()
    assert float((thetas - mean).abs().max()) < 10 * float(scale)


def test_predictions_are_deterministic_and_row_independent(fitted, iris):
    X, y = iris
    perm = np.random.default_rng(0).permutation(len(X))
    full = fitted.predict_member_proba(X)
    np.testing.assert_allclose(fitted.predict_member_proba(X[perm]), full[:, perm], rtol=1e-5)
    np.testing.assert_allclose(fitted.predict_member_proba(X[:3]), full[:, :3], rtol=1e-5)
    state = torch.get_rng_state()
    again = SWAGClassifier(n_samples=5, swa_start=3, swa_lr=5e-3, max_rank=4, **TINY).fit(X, y)
    np.testing.assert_allclose(again.predict_member_proba(X), full, rtol=1e-5)
    assert torch.equal(state, torch.get_rng_state())


def test_clone_and_pickle(fitted, iris):
    X, _ = iris
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(restored.predict_proba(X), fitted.predict_proba(X))
    params = clone(fitted).get_params()
    assert params["max_rank"] == 4 and params["module__hidden_layer_sizes"] == (8,)


@pytest.mark.parametrize("method,n_members", [("swa", 2), ("diagonal", 6)])
def test_methods_and_multiswag(iris, method, n_members):
    X, y = iris
    clf = SWAGClassifier(n_estimators=2, method=method, n_samples=3, swa_start=4, **TINY)
    clf.fit(X, y)
    assert clf.predict_member_proba(X[:4]).shape == (n_members, 4, 3)
    assert clf.score(X, y) > 0.6
    if method == "swa":
        for network, moments in zip(clf.sample_networks_, clf.moments_):
            theta = torch.nn.utils.parameters_to_vector(network.parameters()).double()
            torch.testing.assert_close(theta, moments.mean, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("predict_batch_size", [1024, 7])
def test_every_sample_gets_its_own_batchnorm_statistics(iris, predict_batch_size):
    X, y = iris
    clf = SWAGClassifier(module=BNNet, n_samples=3, swa_start=4, max_epochs=8, lr=1e-2,
                         batch_size=32, random_state=0, bn_update_size=None,
                         predict_batch_size=predict_batch_size, device="cpu").fit(X, y)
    means = []
    for network in clf.sample_networks_:
        layers = network.layers
        with torch.no_grad():
            h = layers[0](torch.as_tensor(X)).double()
        bn = layers[1]
        np.testing.assert_allclose(bn.running_mean.numpy(), h.mean(0).numpy(), rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(bn.running_var.numpy(), h.var(0).numpy(), rtol=1e-4,
                                   atol=1e-5)
        means.append(bn.running_mean.clone())
    assert not torch.allclose(means[0], means[1])


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(method="full"), r"method must be one of \['swa', 'diagonal', 'lowrank'\]"),
        (dict(swa_start=8), "swa_start=8 must be smaller than max_epochs=8"),
        (dict(swa_start=4, max_rank=5), "max_rank=5 exceeds the 4 parameter vectors"),
        (dict(swa_start=7), "method='lowrank' needs at least 2 deviation columns"),
        (dict(swa_start=4, swa_freq=0), "swa_freq must be an integer >= 1"),
        (dict(n_samples=0), "n_samples must be an integer >= 1"),
        (dict(scale=-1.0), r"scale must lie in \[0.0, inf\]"),
        (dict(scale="half"), "scale must be a real number"),
        (dict(swa_lr=0.0), "swa_lr must lie in"),
        (dict(bn_update_size=0), "bn_update_size must be an integer >= 1"),
    ],
)
def test_bad_parameters(iris, params, match):
    X, y = iris
    with pytest.raises(ValueError, match=match):
        SWAGClassifier(**{**TINY, **params}).fit(X, y)


def test_default_max_rank_follows_the_collected_count(iris):
    X, y = iris
    clf = SWAGClassifier(n_samples=2, swa_start=5, **TINY).fit(X[:60], y[:60])
    assert clf.max_rank_ == 3 and clf.moments_[0].rank == 3


@pytest.mark.parametrize("method", ["swa", "lowrank"])
@pytest.mark.parametrize("n_rows", [120, 101])
def test_predictions_do_not_depend_on_predict_batch_size(method, n_rows):
    # The refresh chunks by predict_batch_size; 101 rows in chunks of 50 leave a
    # chunk of one row.
    net, X, y = bn_problem(n_rows)
    probas = []
    for predict_batch_size in (1024, 50, 7, 1):
        clf = SWAGClassifier(module=net, method=method, n_samples=3, max_epochs=4, swa_start=2,
                             batch_size=32, bn_update_size=None, random_state=0, device="cpu",
                             predict_batch_size=predict_batch_size).fit(X, y)
        probas.append(clf.predict_proba(X))
        for network in clf.sample_networks_:
            # All rows' statistics of the BatchNorm input, for this sample's weights.
            w, b = (p.detach().double().numpy() for p in (network[0].weight, network[0].bias))
            h = X.astype(np.float64) @ w.T + b
            np.testing.assert_allclose(network[1].running_mean.numpy(), h.mean(0),
                                       rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(network[1].running_var.numpy(), h.var(0, ddof=1),
                                       rtol=1e-5, atol=1e-5)
    for proba in probas[1:]:
        np.testing.assert_allclose(proba, probas[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["diagonal", "lowrank"])
def test_default_samples_follow_the_published_swag_posterior(iris, method):
    # Each run's draws against that run's closed-form SWAG covariance (Maddox et al.,
    # 2019): Sigma_diag for "diagonal", (Sigma_diag + D D^T / (K - 1)) / 2 for
    # "lowrank", K the deviations collected. The mean Mahalanobis norm of the draws
    # is P (the number of parameters) with standard error sqrt(2 P / n); a covariance
    # off by a factor 2 would give P / 2 or 2 P.
    X, y = iris
    n = 400
    clf = SWAGClassifier(n_estimators=2, method=method, n_samples=n, swa_start=3, max_rank=4,
                         **TINY).fit(X, y)
    thetas = torch.stack([torch.nn.utils.parameters_to_vector(m.parameters()).detach()
                          for m in clf.sample_networks_]).double().numpy()
    for run, moments in enumerate(clf.moments_):
        # Parameters that never moved (a dead unit) have a floored variance and no
        # deviation: independent of the rest, and below float32 resolution; left out.
        var = moments.variance.numpy()
        moved = var > 1e-16
        cov = np.diag(var[moved])
        if method == "lowrank":
            dev = moments.deviations.double().numpy()[:, moved]
            assert len(dev) == 4
            cov = 0.5 * (cov + dev.T @ dev / (len(dev) - 1))
        delta = (thetas[run * n:(run + 1) * n] - moments.mean.numpy())[:, moved]
        mahalanobis = np.einsum("ij,ij->i", delta, np.linalg.solve(cov, delta.T).T)
        p = int(moved.sum())
        assert p > 30
        assert abs(mahalanobis.mean() - p) < 6 * np.sqrt(2 * p / n)
