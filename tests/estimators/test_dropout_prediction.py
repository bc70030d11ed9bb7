"""Monte Carlo dropout samples evaluated in grouped passes give the per-sample numbers.

The reference evaluates each thinned network on its own, through
:func:`ensemblekit.posteriors.thinned_network` and the mask seed of sample ``s`` of a
run, ``derive_seed(run_seed, mask_stream, s)``.
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from _posterior_helpers import BNNet
from torch import nn

from ensemblekit import DropoutClassifier, DropoutRegressor
from ensemblekit.engine import derive_seed
from ensemblekit.estimators._base import softmax
from ensemblekit.estimators._dropout import _MASK_STREAM
from ensemblekit.models import SmallCNN
from ensemblekit.posteriors import thinned_network
from ensemblekit.posteriors._dropout import FixedMask, GroupedFixedMask

TINY = dict(max_epochs=3, lr=1e-2, batch_size=32, random_state=0, device="cpu")


class ChannelDropoutCNN(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.drop = nn.Dropout2d(0.3)
        self.fc = nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.drop(torch.relu(self.conv(x))), 1))


class ReusedDropoutNet(nn.Module):
    """One dropout layer applied twice per forward pass: its masks cannot be fixed."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 8)
        self.fc2 = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.out(self.drop(torch.relu(self.fc2(self.drop(torch.relu(self.fc1(x)))))))


def _reference(clf, X):
    """Logits of every thinned network, one network at a time."""
    out = []
    for net, seed in zip(clf.estimators_, clf.seeds_):
        module = net.module_
        for s in range(clf.n_samples_):
            with thinned_network(module, derive_seed(int(seed), _MASK_STREAM, s)), \
                    torch.no_grad():
                out.append(module(torch.as_tensor(X)).numpy())
    return np.stack(out)


@contextmanager
def _count_forwards():
    counts = {FixedMask: 0, GroupedFixedMask: 0}

    def hook(module, inputs, output):
        if type(module) in counts:
            counts[type(module)] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield counts
    finally:
        handle.remove()


@pytest.mark.parametrize("case", ["mlp", "batchnorm", "cnn_dropout", "cnn_dropout2d"])
def test_grouped_samples_equal_one_network_at_a_time(iris, digits_images, case):
    if case in ("mlp", "batchnorm"):
        X, y = iris
        params = (dict(module__hidden_layer_sizes=(16, 8), module__dropout=0.3)
                  if case == "mlp" else dict(module=BNNet))
    else:
        X, y = digits_images
        X, y = X[:120], y[:120]
        params = (dict(module=SmallCNN, module__channels=(4, 8), module__dropout=0.3)
                  if case == "cnn_dropout" else dict(module=ChannelDropoutCNN))
    clf = DropoutClassifier(n_estimators=2, n_samples=5, predict_batch_size=50,
                            **TINY, **params).fit(X, y)
    proba = clf.predict_member_proba(X)
    with _count_forwards() as counts:
        again = clf.predict_member_proba(X)
    np.testing.assert_array_equal(again, proba)
    # Built once: then one grouped pass of all 10 networks per chunk of rows (3
    # chunks), and no network evaluated on its own.
    n_layers = len([m for m in clf.estimators_[0].module_.modules()
                    if isinstance(m, (nn.Dropout, nn.Dropout2d))])
    assert counts == {FixedMask: 0, GroupedFixedMask: 3 * n_layers}
    expected = softmax(_reference(clf, X))
    np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)
    assert np.abs(proba[0] - proba[1:5]).max() > 1e-4  # the samples differ
    np.testing.assert_allclose(clf.predict_member_proba(X[7:9]), proba[:, 7:9], atol=1e-6)


def test_grouped_networks_are_built_once_and_rebuilt_when_the_runs_change(iris):
    X, y = iris
    clf = DropoutClassifier(n_estimators=2, n_samples=4, module__hidden_layer_sizes=(8,),
                            module__dropout=0.3, **TINY)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    first = clf.predict_member_proba(X)
    np.testing.assert_array_equal(clf.predict_member_proba(X), first)
    assert clf._member_predictor.n_builds == 1
    clf.partial_fit(X, y)
    after = clf.predict_member_proba(X)
    assert np.abs(after - first).max() > 1e-4
    np.testing.assert_allclose(after, softmax(_reference(clf, X)), rtol=1e-4, atol=1e-6)
    # Weights changed in place without a new fit are seen too.
    with torch.no_grad():
        next(clf.estimators_[1].module_.parameters()).mul_(0.5)
    np.testing.assert_allclose(clf.predict_member_proba(X), softmax(_reference(clf, X)),
                               rtol=1e-4, atol=1e-6)


def test_pickling_leaves_the_thinned_networks_out(iris):
    X, y = iris
    clf = DropoutClassifier(n_samples=30, module__hidden_layer_sizes=(64,), **TINY).fit(X, y)
    size = len(pickle.dumps(clf))
    proba = clf.predict_member_proba(X)
    assert len(pickle.dumps(clf)) < 1.1 * size
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_member_proba(X), proba, atol=1e-6)


def test_masks_that_cannot_be_fixed_fall_back_to_one_network_at_a_time(iris):
    X, y = iris
    clf = DropoutClassifier(ReusedDropoutNet, n_estimators=2, n_samples=3, **TINY).fit(X, y)
    with _count_forwards() as counts:
        proba = clf.predict_member_proba(X)
    assert counts[GroupedFixedMask] == 0 and counts[FixedMask] == 0
    np.testing.assert_allclose(proba, softmax(_reference(clf, X)), rtol=1e-5, atol=1e-7)


def test_regressor_samples_in_grouped_passes(iris):
    X, _ = iris
    y = np.c_[X[:, 0] - X[:, 1], X[:, 2]]
    reg = DropoutRegressor(n_estimators=2, n_samples=4, module__hidden_layer_sizes=(8,),
                           module__dropout=0.3, **TINY).fit(X, y)
    reg.predict_member(X)
    with _count_forwards() as counts:
        mean, std = reg.predict_member(X)
    assert counts == {FixedMask: 0, GroupedFixedMask: 1}
    ref = _reference(reg, X)  # outputs: the means, then raw variances
    np.testing.assert_allclose(mean, ref[..., :2] * reg.y_std_ + reg.y_mean_,
                               rtol=1e-4, atol=1e-5)
    assert std.shape == mean.shape == (8, len(X), 2)
