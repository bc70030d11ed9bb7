"""SubspaceSamplingClassifier: base runs in both engines, early stopping and partial_fit."""

from __future__ import annotations

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
