"""Learning-rate schedules: applied per epoch, identically by both engines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.engine import StepSchedule


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    return X, y


def _fit(data, engine, schedule):
    X, y = data
    return DeepEnsembleClassifier(
        n_estimators=3, max_epochs=3, batch_size=32, lr=1e-2, engine=engine,
        lr_schedule=schedule, random_state=0, module__hidden_layer_sizes=(8,),
    ).fit(X, y)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_final_learning_rate_follows_schedule(data, engine):
    clf = _fit(data, engine, StepSchedule(step_size=1, gamma=0.5))
    assert clf.engine_ == engine
    for net in clf.estimators_:
        # Epochs 0, 1, 2 run at lr, lr/2, lr/4.
        assert net.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-2 / 4)


def test_engines_agree_under_a_schedule(data):
    seq = _fit(data, "sequential", StepSchedule(step_size=1, gamma=0.5))
    vec = _fit(data, "vectorized", StepSchedule(step_size=1, gamma=0.5))
    for a, b in zip(seq.estimators_, vec.estimators_):
        for p, q in zip(a.module_.parameters(), b.module_.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_schedule_changes_training(data):
    X, _ = data
    plain = _fit(data, "vectorized", None)
    frozen = _fit(data, "vectorized", lambda epoch: 1.0 if epoch == 0 else 0.0)
    frozen_one_epoch = DeepEnsembleClassifier(
        n_estimators=3, max_epochs=1, batch_size=32, lr=1e-2, random_state=0,
        module__hidden_layer_sizes=(8,),
    ).fit(*data)
    # A zero multiplier after the first epoch leaves the weights of epoch 1 unchanged.
    np.testing.assert_allclose(frozen.predict_member_proba(X),
                               frozen_one_epoch.predict_member_proba(X), atol=1e-6)
    assert not np.allclose(plain.predict_member_proba(X), frozen.predict_member_proba(X))


def test_bad_schedules(data):
    X, y = data
    with pytest.raises(ValueError, match="lr_schedule must be None or a callable"):
        DeepEnsembleClassifier(lr_schedule=0.5, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"lr_schedule\(0\) returned -1.0"):
        DeepEnsembleClassifier(lr_schedule=lambda e: -1.0, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="step_size"):
        StepSchedule(step_size=0)
