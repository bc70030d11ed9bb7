"""The vectorised engine trains the same members as the sequential engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_nets import ResidualBNNet

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.models import SmallCNN

# Float32 tolerance for members after a few epochs: the two engines run the same
# arithmetic in a different order (batched vs single matrix products, grouped vs
# plain convolutions), so the members agree to rounding, not bit for bit.
ATOL = 1e-4
RTOL = 1e-4


def _fit_both(X, y, **params):
    return [
        DeepEnsembleClassifier(engine=engine, random_state=0, device="cpu",
                               **params).fit(X, y)
        for engine in ("sequential", "vectorized")
    ]


def _assert_same_members(seq, vec, X):
    assert seq.engine_ == "sequential"
    assert vec.engine_ == "vectorized"
    assert len(seq.estimators_) == len(vec.estimators_)
    for a, b in zip(seq.estimators_, vec.estimators_):
        state_a, state_b = a.module_.state_dict(), b.module_.state_dict()
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            np.testing.assert_allclose(
                state_b[key].float().cpu().numpy(), state_a[key].float().cpu().numpy(),
                rtol=RTOL, atol=ATOL, err_msg=key,
            )
        np.testing.assert_allclose(
            b.history[:, "train_loss"], a.history[:, "train_loss"], rtol=1e-4
        )
    np.testing.assert_allclose(
        vec.predict_member_proba(X), seq.predict_member_proba(X), rtol=RTOL, atol=ATOL
    )


def test_mlp_adam_bootstrap_partial_batch(tabular):
    X, y = tabular  # 90 rows, batches of 32: the last batch has 26 rows
    seq, vec = _fit_both(
        X, y, n_estimators=3, max_epochs=3, batch_size=32, lr=1e-2, bootstrap=True,
        module__hidden_layer_sizes=(16, 8),
    )
    _assert_same_members(seq, vec, X)
    # Adam's state follows the members too, so training can continue from it.
    for a, b in zip(seq.estimators_, vec.estimators_):
        pa = dict(a.module_.named_parameters())["layers.1.weight"]
        pb = dict(b.module_.named_parameters())["layers.1.weight"]
        np.testing.assert_allclose(
            b.optimizer_.state[pb]["exp_avg"].numpy(), a.optimizer_.state[pa]["exp_avg"].numpy(),
            rtol=RTOL, atol=1e-6,
        )


def test_small_cnn(images):
    X, y = images  # 42 images, batches of 16: the last batch has 10
    seq, vec = _fit_both(
        X, y, module=SmallCNN, n_estimators=2, max_epochs=2, batch_size=16, lr=1e-3,
        module__dropout=0.0, module__channels=(4, 8),
    )
    _assert_same_members(seq, vec, X)


def test_batchnorm_residual_network(images):
    # SGD with momentum and weight decay. (With Adam, a convolution bias followed by
    # BatchNorm has an exact gradient of zero, so Adam's normalisation turns rounding
    # noise into full-size steps and the engines drift apart by about lr per step.)
    X, y = images
    seq, vec = _fit_both(
        X, y, module=ResidualBNNet, n_estimators=3, max_epochs=2, batch_size=16, lr=0.05,
        optimizer=torch.optim.SGD, optimizer__momentum=0.9, optimizer__weight_decay=1e-3,
        bootstrap=True,
    )
    _assert_same_members(seq, vec, X)
    bn = vec.estimators_[0].module_.bn
    assert int(bn.num_batches_tracked) == 2 * 3  # 2 epochs of 3 batches


def test_members_per_pass_does_not_change_members(images):
    X, y = images
    params = dict(module=ResidualBNNet, n_estimators=3, max_epochs=2, batch_size=16,
                  optimizer=torch.optim.SGD, lr=0.05, engine="vectorized", random_state=3)
    full = DeepEnsembleClassifier(**params).fit(X, y)
    split = DeepEnsembleClassifier(max_members_per_pass=2, **params).fit(X, y)
    assert "2 passes" in split.engine_reason_
    np.testing.assert_allclose(
        split.predict_member_proba(X), full.predict_member_proba(X), rtol=RTOL, atol=ATOL
    )


def test_dropout_masks_depend_on_the_member_seed_only(images):
    # Members with dropout draw masks from their own generators: training them in
    # one pass or one at a time gives the same members.
    X, y = images
    params = dict(module=SmallCNN, module__channels=(4, 8), module__dropout=0.3,
                  n_estimators=3, max_epochs=2, batch_size=16, engine="vectorized",
                  random_state=5, device="cpu")
    together = DeepEnsembleClassifier(**params).fit(X, y)
    alone = DeepEnsembleClassifier(max_members_per_pass=1, **params).fit(X, y)
    np.testing.assert_allclose(
        alone.predict_member_proba(X), together.predict_member_proba(X), rtol=RTOL, atol=ATOL
    )
    # ... and the members differ from each other.
    proba = together.predict_member_proba(X)
    assert np.abs(proba[0] - proba[1]).max() > 1e-3


def test_warm_start_grows_like_a_full_fit(tabular):
    X, y = tabular
    params = dict(max_epochs=2, batch_size=32, engine="vectorized", random_state=0,
                  module__hidden_layer_sizes=(8,))
    full = DeepEnsembleClassifier(n_estimators=3, **params).fit(X, y)
    grown = DeepEnsembleClassifier(n_estimators=2, warm_start=True, **params).fit(X, y)
    grown.set_params(n_estimators=3).fit(X, y)
    np.testing.assert_allclose(
        grown.predict_member_proba(X), full.predict_member_proba(X), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("bootstrap", [False, True])
def test_augmentation_is_the_same_in_both_engines(tabular, bootstrap):
    def jitter(x, generator):
        return x + 0.1 * torch.randn(x.shape, generator=generator, device=x.device)

    X, y = tabular
    seq, vec = _fit_both(
        X, y, n_estimators=2, max_epochs=2, batch_size=32, lr=1e-2, augment=jitter,
        bootstrap=bootstrap, module__hidden_layer_sizes=(8,),
    )
    _assert_same_members(seq, vec, X)
    plain = DeepEnsembleClassifier(
        n_estimators=2, max_epochs=2, batch_size=32, lr=1e-2, engine="vectorized",
        bootstrap=bootstrap, random_state=0, module__hidden_layer_sizes=(8,),
    ).fit(X, y)
    assert np.abs(plain.predict_member_proba(X) - vec.predict_member_proba(X)).max() > 1e-4
