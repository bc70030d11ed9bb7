"""SubspaceSamplingClassifier: each method against its definition on a real run."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from _posterior_helpers import Recorder, bn_problem, recorder

from ensemblekit import SubspaceSamplingClassifier

TINY = dict(max_epochs=6, lr=1e-2, batch_size=32, random_state=0, device="cpu",
            module__hidden_layer_sizes=(8,))


def _fit(X, y, **params):
    return SubspaceSamplingClassifier(callbacks=[Recorder()], **{**TINY, **params}).fit(X, y)


def _thetas(clf) -> torch.Tensor:
    return torch.stack([torch.nn.utils.parameters_to_vector(m.parameters()).detach()
                        for m in clf.sample_networks_]).double()


@pytest.fixture(scope="module")
def pca(iris):
    return _fit(*iris, method="pca_gaussian", n_samples=6, rank=2, collect_from_epoch=2)


def test_pca_samples_lie_in_the_checkpoint_span(pca):
    checkpoints = torch.stack(recorder(pca.estimators_[0]).thetas[2:])  # epochs 2..5
    mean = checkpoints.mean(0)
    _, _, vh = torch.linalg.svd(checkpoints - mean, full_matrices=False)
    centred = _thetas(pca) - mean
    coefficients = centred @ vh[:2].T
    assert float((centred - coefficients @ vh[:2]).abs().max()) < 1e-4
    assert 0.2 < float(coefficients.std()) < 3.0  # N(0, 1) coefficients, c = 1


def test_member_axis_and_pickle(pca, iris):
    X, _ = iris
    proba = pca.predict_member_proba(X[:5])
    assert proba.shape == (6, 5, 3)
    assert pca.n_samples_ == 6 and pca.accepted_.shape == (1, 6) and pca.accepted_.all()
    restored = pickle.loads(pickle.dumps(pca))
    np.testing.assert_allclose(restored.predict_member_proba(X[:5]), proba, rtol=1e-6)
    perm = np.random.default_rng(0).permutation(len(X))
    full = pca.predict_member_proba(X)
    np.testing.assert_allclose(pca.predict_member_proba(X[perm]), full[:, perm], rtol=1e-5)


def test_weight_average_is_the_checkpoint_mean(iris):
    clf = _fit(*iris, method="weight_average", collect_from_epoch=3, n_estimators=2)
    assert clf.predict_member_proba(iris[0][:4]).shape == (2, 4, 3)
    for network, net in zip(clf.sample_networks_, clf.estimators_):
        expected = torch.stack(recorder(net).thetas[3:]).mean(0)
        theta = torch.nn.utils.parameters_to_vector(network.parameters()).double()
        torch.testing.assert_close(theta, expected, rtol=1e-5, atol=1e-6)


def test_diagonal_gaussian_spread_follows_the_checkpoints(iris):
    clf = _fit(*iris, n_samples=40, collect_from_epoch=2, gaussian_scale=2.0)
    checkpoints = torch.stack(recorder(clf.estimators_[0]).thetas[2:])
    sigma = checkpoints.std(0, correction=0)
    spread = _thetas(clf).std(0)
    moving = sigma > 1e-3
    ratio = (spread[moving] / sigma[moving]).median()
    assert 1.6 < float(ratio) < 2.4


def test_random_subspace_distance_and_rejection(iris):
    X, y = iris
    clf = _fit(X, y, method="random", n_samples=5, random_scale=3.0, accuracy_threshold=0.0)
    theta_star = torch.nn.utils.parameters_to_vector(
        clf.estimators_[0].module_.parameters()).detach().double()
    distances = (_thetas(clf) - theta_star).norm(dim=1)
    assert float(distances.max()) <= 3.0 + 1e-4 and float(distances.min()) > 0
    assert (clf.n_tries_ == 1).all()
    # Impossible threshold: every sample uses all its tries and is flagged.
    strict = _fit(X, y, method="random", n_samples=3, max_tries=2, accuracy_threshold=1.0,
                  random_scale=50.0)
    assert (strict.n_tries_ == 2).all() and not strict.accepted_.any()
    # Rejection holds out acceptance_fraction of the rows from training.
    sampler = strict.estimators_[0].get_params_for("iterator_train")["sampler"]
    assert len(sampler) == len(X) - round(0.1 * len(X))


@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_acceptance_fraction_sets_the_rows_held_out_for_acceptance(iris, fraction):
    X, y = iris
    clf = _fit(X, y, method="random", n_samples=2, max_tries=1, accuracy_threshold=0.5,
               acceptance_fraction=fraction, max_epochs=1)
    sampler = clf.estimators_[0].get_params_for("iterator_train")["sampler"]
    assert len(sampler) == len(X) - round(fraction * len(X))
    # Without rejection no row is held out.
    plain = _fit(X, y, method="random", n_samples=2, accuracy_threshold=0.0,
                 acceptance_fraction=fraction, max_epochs=1)
    assert len(plain.estimators_[0].get_params_for("iterator_train")["sampler"]) == len(X)


def test_dropout_subspace_masks_weights(iris):
    clf = _fit(*iris, method="dropout", n_samples=4, dropout_max_p=0.5)
    theta_star = torch.nn.utils.parameters_to_vector(
        clf.estimators_[0].module_.parameters()).detach().double()
    for theta in _thetas(clf):
        kept = theta != 0
        ratio = theta[kept] / theta_star[kept]
        assert float(ratio.max() - ratio.min()) < 1e-4
        assert 1.0 <= float(ratio[0]) <= 2.0 + 1e-5


def test_pca_random_fits_the_random_samples(iris):
    clf = _fit(*iris, method="pca_random", n_samples=6, rank=2, random_scale=2.0,
               accuracy_threshold=0.0)
    assert clf.predict_member_proba(iris[0][:3]).shape == (6, 3, 3)
    theta_star = torch.nn.utils.parameters_to_vector(
        clf.estimators_[0].module_.parameters()).detach().double()
    # The random samples lie within 2 of theta*, so their mean does too; PCA samples
    # stay near it (2 unit directions with N(0, 1) coefficients).
    assert float((_thetas(clf) - theta_star).norm(dim=1).max()) < 2.0 + 6.0


def test_ensemble_of_runs(iris):
    clf = _fit(*iris, n_estimators=2, n_samples=3)
    assert clf.predict_member_proba(iris[0][:2]).shape == (6, 2, 3)
    assert clf.score(*iris) > 0.6


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(method="laplace"), r"method must be one of \['random', 'dropout'"),
        (dict(method="pca_gaussian", rank=5, collect_from_epoch=3),
         "rank=5 exceeds the 3 checkpoints"),
        (dict(method="pca_random", rank=5, n_samples=3), "rank=5 exceeds n_samples=3"),
        (dict(collect_from_epoch=6), "collect_from_epoch=6 must be smaller than max_epochs=6"),
        (dict(collect_from_epoch=5), "needs at least 2 checkpoints"),
        (dict(dropout_max_p=1.0), r"dropout_max_p must lie in \[0.0, 1.0\)"),
        (dict(accuracy_threshold=1.5), r"accuracy_threshold must lie in \[0.0, 1.0\]"),
        (dict(acceptance_fraction=0.0), r"acceptance_fraction must lie in \(0.0, 1.0\)"),
        (dict(max_tries=0), "max_tries must be an integer >= 1"),
        (dict(random_scale=-1.0), "random_scale must lie in"),
        (dict(gaussian_scale=-1.0), "gaussian_scale must lie in"),
        (dict(rank=0), "rank must be an integer >= 1"),
    ],
)
def test_bad_parameters(iris, params, match):
    X, y = iris
    with pytest.raises(ValueError, match=match):
        SubspaceSamplingClassifier(**{**TINY, **params}).fit(X, y)


def test_acceptance_fraction_must_leave_training_rows(iris):
    X, _y = iris
    with pytest.raises(ValueError, match="leaving 0 rows to train each run on"):
        SubspaceSamplingClassifier(method="random", acceptance_fraction=0.9,
                                   **TINY).fit(X[:2], [0, 1])


@pytest.mark.parametrize("method", ["diagonal_gaussian", "weight_average", "random"])
def test_predictions_do_not_depend_on_predict_batch_size(method):
    # The BatchNorm refresh (and the random subspace's accuracy check) chunk by
    # predict_batch_size; 101 rows in chunks of 50 leave a chunk of one row.
    net, X, y = bn_problem(101, seed=1)
    params = dict(module=net, method=method, n_samples=3, max_epochs=4, collect_from_epoch=1,
                  batch_size=32, bn_update_size=None, random_state=0, device="cpu",
                  random_scale=0.5, accuracy_threshold=0.5, acceptance_fraction=0.2)
    fits = [SubspaceSamplingClassifier(predict_batch_size=size, **params).fit(X, y)
            for size in (1024, 50, 1)]
    for clf in fits:
        np.testing.assert_allclose(clf.predict_proba(X), fits[0].predict_proba(X),
                                   rtol=0, atol=1e-5)
        np.testing.assert_array_equal(clf.n_tries_, fits[0].n_tries_)
        if method == "random":
            continue  # refreshed on the run's training rows, an internal split
        for network in clf.sample_networks_:
            # The statistics of all rows at the BatchNorm input, for the sample's weights.
            w, b = (p.detach().double().numpy() for p in (network[0].weight, network[0].bias))
            h = X.astype(np.float64) @ w.T + b
            np.testing.assert_allclose(network[1].running_mean.numpy(), h.mean(0),
                                       rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(network[1].running_var.numpy(), h.var(0, ddof=1),
                                       rtol=1e-5, atol=1e-5)
