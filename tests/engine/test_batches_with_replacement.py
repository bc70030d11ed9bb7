"""Batches drawn with replacement (batches="with_replacement"), as in the paper's code."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.engine import MemberSampler, epoch_indices


def test_rows_are_drawn_uniformly_with_replacement():
    n, epochs = 200, 400
    draws = np.stack([epoch_indices(3, e, n, replacement=True).numpy() for e in range(epochs)])
    assert draws.shape == (epochs, n) and draws.min() >= 0 and draws.max() < n
    # Distinct rows per epoch: n * (1 - (1 - 1/n)^n) in expectation (about 63 %),
    # where a permutation has all n.
    distinct = np.array([len(np.unique(row)) for row in draws])
    expected = n * (1 - (1 - 1 / n) ** n)
    assert abs(distinct.mean() - expected) < 1.0
    # Every row is equally likely: counts over all draws are multinomial(n * epochs, 1/n).
    counts = np.bincount(draws.ravel(), minlength=n)
    chi2 = ((counts - epochs) ** 2 / epochs).sum()
    assert chi2 < n + 4 * np.sqrt(2 * n)  # chi-square with n - 1 degrees of freedom
    # Deterministic per (seed, epoch), different across epochs and seeds.
    assert np.array_equal(draws[5], epoch_indices(3, 5, n, replacement=True).numpy())
    assert not np.array_equal(draws[5], draws[6])
    assert not np.array_equal(draws[5], epoch_indices(4, 5, n, replacement=True).numpy())
    permutation = epoch_indices(3, 5, n).numpy()
    assert np.array_equal(np.sort(permutation), np.arange(n))


def test_member_sampler_follows_epoch_indices():
    sampler = MemberSampler(50, seed=9, replacement=True)
    first, second = list(sampler), list(sampler)
    assert first == epoch_indices(9, 0, 50, replacement=True).tolist()
    assert second == epoch_indices(9, 1, 50, replacement=True).tolist()


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def test_engines_train_identical_members_with_replacement(iris):
    X, y = iris
    params = dict(n_estimators=3, max_epochs=3, batch_size=16, random_state=0,
                  batches="with_replacement", module__hidden_layer_sizes=(8,), device="cpu")
    seq = DeepEnsembleClassifier(engine="sequential", **params).fit(X, y)
    vec = DeepEnsembleClassifier(engine="vectorized", **params).fit(X, y)
    np.testing.assert_allclose(vec.predict_member_proba(X), seq.predict_member_proba(X),
                               rtol=1e-4, atol=1e-5)
    perm = DeepEnsembleClassifier(engine="vectorized",
                                  **{**params, "batches": "permutation"}).fit(X, y)
    assert not np.allclose(perm.predict_member_proba(X), vec.predict_member_proba(X))


def test_unknown_batches_value_is_refused(iris):
    X, y = iris
    with pytest.raises(ValueError, match=r"batches must be one of \['permutation', "
                                         r"'with_replacement'\], got 'replace'"):
        DeepEnsembleClassifier(batches="replace", max_epochs=1).fit(X, y)
