"""The central claim of Fort, Hu & Lakshminarayanan on a small real dataset.

Independently trained networks land in different modes and disagree in function
space; networks sampled around one solution (SWAG, a Gaussian subspace) stay in
one mode and disagree much less, at comparable accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ensemblekit import DeepEnsembleClassifier, SubspaceSamplingClassifier, SWAGClassifier

COMMON = dict(max_epochs=10, lr=1e-2, batch_size=64, random_state=0,
              module__hidden_layer_sizes=(32,))


def _mean_pairwise_disagreement(member_proba: np.ndarray) -> float:
    labels = member_proba.argmax(axis=-1)
    m = len(labels)
    pairs = [(labels[i] != labels[j]).mean() for i in range(m) for j in range(i + 1, m)]
    return float(np.mean(pairs))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:900], y[:900], X[900:], y[900:]


def test_independent_members_disagree_more_than_samples_of_one_mode(digits):
    X, y, X_test, y_test = digits
    ensemble = DeepEnsembleClassifier(n_estimators=3, **COMMON).fit(X, y)
    swag = SWAGClassifier(n_samples=6, swa_start=7, swa_lr=2e-3, **COMMON).fit(X, y)
    gaussian = SubspaceSamplingClassifier(n_samples=6, collect_from_epoch=7, **COMMON).fit(X, y)

    results = {}
    for name, clf in [("ensemble", ensemble), ("swag", swag), ("gaussian", gaussian)]:
        proba = clf.predict_member_proba(X_test)
        accuracy = (proba.argmax(-1) == y_test).mean(axis=1)
        results[name] = (_mean_pairwise_disagreement(proba), float(accuracy.mean()))

    d_ensemble, acc_ensemble = results["ensemble"]
    for name in ("swag", "gaussian"):
        d_mode, acc_mode = results[name]
        assert abs(acc_mode - acc_ensemble) < 0.05, results  # comparable accuracy ...
        assert d_mode < 0.5 * d_ensemble, results  # ... but far less diverse
    assert d_ensemble > 0.02, results
