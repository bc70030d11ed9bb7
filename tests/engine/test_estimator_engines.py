"""Engine selection, fallbacks and batched prediction of the estimators."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from engine_nets import ResidualBNNet
from skorch.callbacks import LRScheduler
from test_grouped import ChannelMixing, ChannelMixingBN, WithPReLU

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.engine import predict_logits_sequential, predict_member_logits
from ensemblekit.estimators._base import softmax


@pytest.fixture(scope="module")
def fitted(images):
    X, y = images
    return DeepEnsembleClassifier(
        ResidualBNNet, n_estimators=3, max_epochs=2, batch_size=16, engine="vectorized",
        random_state=0, device="cpu",
    ).fit(X, y)


def test_auto_picks_vectorized(tabular):
    X, y = tabular
    clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=1, random_state=0).fit(X, y)
    assert clf.engine_ == "vectorized"
    assert clf.engine_reason_.startswith("grouped")


def test_callbacks_need_the_sequential_engine(tabular):
    X, y = tabular
    params = dict(n_estimators=2, max_epochs=2, random_state=0,
                  callbacks=[("sched", LRScheduler(policy="StepLR", step_size=1))])
    with pytest.raises(ValueError, match=r"callbacks.*sched.*sequential"):
        DeepEnsembleClassifier(engine="vectorized", **params).fit(X, y)
    clf = DeepEnsembleClassifier(engine="auto", **params).fit(X, y)
    assert clf.engine_ == "sequential"
    assert "sched" in clf.engine_reason_


def test_optimizer_that_is_not_elementwise_falls_back(tabular):
    X, y = tabular
    clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=1, optimizer=torch.optim.LBFGS,
                                 random_state=0).fit(X, y)
    assert clf.engine_ == "sequential" and "LBFGS" in clf.engine_reason_


def test_vmap_fallback_warns_and_matches_sequential(tabular):
    X, y = tabular
    X = X[:, :5]
    params = dict(module=WithPReLU, n_estimators=2, max_epochs=2, batch_size=32,
                  random_state=0, optimizer=torch.optim.SGD, lr=0.1)
    with pytest.warns(UserWarning, match="vmap"):
        vec = DeepEnsembleClassifier(engine="vectorized", **params).fit(X, y)
    assert vec.engine_ == "vectorized" and "PReLU" in vec.engine_reason_
    seq = DeepEnsembleClassifier(engine="sequential", **params).fit(X, y)
    np.testing.assert_allclose(vec.predict_member_proba(X), seq.predict_member_proba(X),
                               rtol=1e-4, atol=1e-5)


def test_ungroupable_module_with_buffers(images):
    X, y = images
    params = dict(module=ChannelMixingBN, n_estimators=2, max_epochs=1, random_state=0)
    with pytest.raises(ValueError, match="engine='vectorized' cannot train"):
        DeepEnsembleClassifier(engine="vectorized", **params).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = DeepEnsembleClassifier(**params).fit(X, y)
    assert clf.engine_ == "sequential" and "nor vmap" in clf.engine_reason_
    # Prediction falls back to the members one by one.
    assert clf.predict_member_proba(X).shape == (2, len(X), 3)


@pytest.mark.parametrize(
    ("param", "value", "match"),
    [
        ("engine", "parallel", "engine must be one of"),
        ("precision", "fp16", r"precision must be one of \['fp32', 'bf16'\]"),
        ("max_members_per_pass", 0, "max_members_per_pass must be an integer >= 1"),
        ("augment", "flip", "augment must be None or a callable"),
    ],
)
def test_invalid_options(tabular, param, value, match):
    X, y = tabular
    with pytest.raises(ValueError, match=match):
        DeepEnsembleClassifier(max_epochs=1, **{param: value}).fit(X, y)


@pytest.mark.parametrize("members_per_pass", [None, 2])
def test_batched_prediction_matches_sequential_path(fitted, images, members_per_pass):
    X, _ = images
    modules = [net.module_ for net in fitted.estimators_]
    expected = predict_logits_sequential(modules, X, batch_size=10)
    got = predict_member_logits(modules, X, batch_size=10,
                                max_members_per_pass=members_per_pass)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fitted.predict_member_proba(X), softmax(expected),
                               rtol=1e-5, atol=1e-6)
    # Each member is an ordinary fitted skorch net.
    np.testing.assert_allclose(fitted.estimators_[1].predict_proba(X),
                               softmax(expected[1]), rtol=1e-4, atol=1e-5)
    assert all(mod.training is False for mod in modules)


def test_mlp_prediction_on_images_and_chunks(images):
    X, y = images
    clf = DeepEnsembleClassifier(n_estimators=3, max_epochs=1, predict_batch_size=7,
                                 random_state=0).fit(X, y)
    modules = [net.module_ for net in clf.estimators_]
    np.testing.assert_allclose(clf.predict_member_proba(X),
                               softmax(predict_logits_sequential(modules, X, 64)),
                               rtol=1e-5, atol=1e-6)


def test_pickle_roundtrip_and_history(fitted, images):
    X, _ = images
    clone = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(clone.predict_member_proba(X), fitted.predict_member_proba(X))
    for net in fitted.estimators_:
        assert len(net.history) == 2
        assert np.isfinite(net.history[:, "train_loss"]).all()


def test_bf16_precision_trains(images):
    X, y = images
    clf = DeepEnsembleClassifier(ResidualBNNet, n_estimators=2, max_epochs=1,
                                 precision="bf16", random_state=0).fit(X, y)
    proba = clf.predict_member_proba(X)
    assert np.isfinite(proba).all() and proba.dtype == np.float64
    with pytest.warns(UserWarning, match="vectorised engine only"):
        DeepEnsembleClassifier(ResidualBNNet, n_estimators=2, max_epochs=1, precision="bf16",
                               engine="sequential", random_state=0).fit(X, y)


def test_channel_mixing_module_trains_with_vmap(images):
    X, y = images
    clf = DeepEnsembleClassifier(ChannelMixing, n_estimators=2, max_epochs=1,
                                 random_state=0).fit(X, y)
    assert clf.engine_ == "vectorized" and clf.engine_reason_.startswith("vmap")
