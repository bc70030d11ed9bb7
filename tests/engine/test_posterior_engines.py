"""Posterior estimators train their runs with either engine and get the same posteriors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemblekit import SWAGClassifier


@pytest.mark.parametrize("method", ["lowrank", "diagonal", "swa"])
def test_multiswag_runs_train_together_with_the_same_moments(tabular, method):
    X, y = tabular
    params = dict(n_estimators=3, method=method, n_samples=4, max_epochs=6, swa_start=2,
                  swa_lr=0.05, batch_size=32, lr=0.05, optimizer=torch.optim.SGD,
                  optimizer__momentum=0.9, module__hidden_layer_sizes=(8,),
                  random_state=0, device="cpu")
    seq = SWAGClassifier(engine="sequential", **params).fit(X, y)
    vec = SWAGClassifier(engine="vectorized", **params).fit(X, y)
    assert seq.engine_ == "sequential"
    assert vec.engine_ == "vectorized" and vec.engine_reason_.startswith("grouped")
    for a, b in zip(seq.moments_, vec.moments_):
        assert a.n_collected == b.n_collected == 4  # epochs 2 to 5
        np.testing.assert_allclose(b.mean.numpy(), a.mean.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b.variance.numpy(), a.variance.numpy(), rtol=1e-3,
                                   atol=1e-6)
        if method == "lowrank":
            np.testing.assert_allclose(b.deviations.numpy(), a.deviations.numpy(),
                                       rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(vec.predict_member_proba(X), seq.predict_member_proba(X),
                               rtol=1e-4, atol=1e-5)
    # The SWA learning rate reached the stacked optimizer: without it the runs differ.
    other = SWAGClassifier(engine="vectorized", **{**params, "swa_lr": 0.005}).fit(X, y)
    assert np.abs(other.moments_[0].mean.numpy() - vec.moments_[0].mean.numpy()).max() > 1e-4
