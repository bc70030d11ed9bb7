"""Recording training trajectories (``checkpoint_epochs``) in every estimator and engine."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector

from ensemblekit import (
    DeepEnsembleClassifier,
    DropoutClassifier,
    SubspaceSamplingClassifier,
    SWAGClassifier,
)


class BNConvNet(nn.Module):
    """Conv -> BatchNorm2d -> pool -> Linear: has parameters and BatchNorm buffers.

    The convolution has no bias: BatchNorm cancels it, so its gradient is rounding noise
    that Adam would amplify differently in the two engines.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x)))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


@pytest.fixture(scope="module")
def tabular():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 1, 6, 6)).astype(np.float32)
    y = (X[:, 0, :3].mean(axis=(1, 2)) > 0).astype(int) + (X[:, 0, 3:].mean(axis=(1, 2)) > 0.2)
    return X, y.astype(int)


def _flat(module: nn.Module) -> np.ndarray:
    return parameters_to_vector(module.parameters()).detach().numpy()


def _bn_stats(module: nn.Module) -> np.ndarray:
    parts = [t.detach().numpy().ravel() for layer in module.modules()
             if isinstance(layer, nn.BatchNorm2d) for t in (layer.running_mean, layer.running_var)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


@pytest.mark.parametrize("data, params", [
    ("tabular", dict(module__hidden_layer_sizes=(8,), batch_size=16, lr=1e-2)),
    ("images", dict(module=BNConvNet, batch_size=16, lr=1e-2)),
])
def test_both_engines_record_the_same_trajectory(data, params, request):
    X, y = request.getfixturevalue(data)
    fits = [
        DeepEnsembleClassifier(n_estimators=2, max_epochs=3, checkpoint_epochs="all",
                               engine=engine, random_state=0, device="cpu", **params).fit(X, y)
        for engine in ("sequential", "vectorized")
    ]
    seq, vec = fits
    assert (seq.engine_, vec.engine_) == ("sequential", "vectorized")
    for clf in fits:
        assert clf.checkpoints_.dtype == np.float32
        assert clf.checkpoints_.shape == (2, 3, _flat(clf.estimators_[0].module_).size)
        np.testing.assert_array_equal(clf.checkpoint_epochs_, [0, 1, 2])
        # The last checkpoint is the trained network, parameters and BatchNorm buffers.
        for m, net in enumerate(clf.estimators_):
            np.testing.assert_array_equal(clf.checkpoints_[m, -1], _flat(net.module_))
            np.testing.assert_array_equal(clf.checkpoint_buffers_[m, -1], _bn_stats(net.module_))
    np.testing.assert_allclose(vec.checkpoints_, seq.checkpoints_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(vec.checkpoint_buffers_, seq.checkpoint_buffers_, rtol=1e-4,
                               atol=1e-5)
    # Checkpoints move: consecutive epochs differ.
    assert np.all(np.abs(np.diff(seq.checkpoints_, axis=1)).max(axis=2) > 0)


@pytest.mark.parametrize("engine, per_pass", [("sequential", None), ("vectorized", None),
                                              ("vectorized", 2)])
def test_checkpoint_is_the_network_trained_for_fewer_epochs(tabular, engine, per_pass):
    X, y = tabular
    params = dict(n_estimators=3, module__hidden_layer_sizes=(8,), batch_size=16, lr=1e-2,
                  engine=engine, max_members_per_pass=per_pass, random_state=3, device="cpu")
    clf = DeepEnsembleClassifier(max_epochs=5, checkpoint_epochs=[1, 3], **params).fit(X, y)
    for k, epoch in enumerate([1, 3]):
        short = DeepEnsembleClassifier(max_epochs=epoch + 1, **params).fit(X, y)
        for m, net in enumerate(short.estimators_):
            np.testing.assert_allclose(clf.checkpoints_[m, k], _flat(net.module_),
                                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value, expected", [
    ("all", [0, 1, 2, 3, 4, 5]),
    (1, [0, 1, 2, 3, 4, 5]),
    (2, [1, 3, 5]),
    (4, [3]),
    (6, [5]),
    ([5, 0, 2], [0, 2, 5]),
    (np.array([3]), [3]),
])
def test_checkpoint_epochs_values(tabular, value, expected):
    X, y = tabular
    clf = DeepEnsembleClassifier(n_estimators=1, max_epochs=6, checkpoint_epochs=value,
                                 module__hidden_layer_sizes=(4,), random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.checkpoint_epochs_, expected)
    assert clf.checkpoints_.shape[:2] == (1, len(expected))


@pytest.mark.parametrize("params, message", [
    (dict(checkpoint_epochs=[3]), r"epoch 3.*\[0, 2\]"),
    (dict(checkpoint_epochs=[-1, 1]), r"epoch -1"),
    (dict(checkpoint_epochs=4), r"checkpoint_epochs=4.*\[1, max_epochs=3\]"),
    (dict(checkpoint_epochs=0), r"checkpoint_epochs=0"),
    (dict(checkpoint_epochs="last"), r"None, 'all'"),
    (dict(checkpoint_epochs=1.5), r"None, 'all'"),
    (dict(checkpoint_epochs=True), r"None, 'all'"),
    (dict(checkpoint_epochs=[]), r"empty"),
    (dict(checkpoint_epochs=[1, 1]), r"duplicates"),
    (dict(checkpoint_epochs=[0.5]), r"integer epoch indices"),
    (dict(checkpoint_epochs="all", checkpoint_dir=3), r"checkpoint_dir"),
])
@pytest.mark.parametrize("cls", [DeepEnsembleClassifier, SWAGClassifier])
def test_bad_checkpoint_parameters(tabular, cls, params, message):
    X, y = tabular
    clf = cls(max_epochs=3, random_state=0, **params)
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y)
    assert not hasattr(clf, "checkpoints_")


@pytest.mark.parametrize("cls, params", [
    (SWAGClassifier, dict(n_samples=2, swa_start=1)),
    (DropoutClassifier, dict(n_samples=2, module__dropout=0.2)),
    (SubspaceSamplingClassifier, dict(n_samples=2, method="random", accuracy_threshold=0.0)),
])
def test_every_estimator_records(tabular, cls, params):
    X, y = tabular
    clf = cls(n_estimators=2, max_epochs=3, checkpoint_epochs=[0, 2], random_state=0,
              module__hidden_layer_sizes=(6,), **params).fit(X, y)
    assert clf.checkpoints_.shape == (2, 2, _flat(clf.estimators_[0].module_).size)
    for m, net in enumerate(clf.estimators_):
        np.testing.assert_array_equal(clf.checkpoints_[m, 1], _flat(net.module_))
        assert not np.array_equal(clf.checkpoints_[m, 0], clf.checkpoints_[m, 1])


def test_checkpoint_dir_memory_maps(tabular, tmp_path):
    X, y = tabular
    params = dict(n_estimators=2, max_epochs=3, checkpoint_epochs="all", random_state=0,
                  module__hidden_layer_sizes=(4,))
    mapped = DeepEnsembleClassifier(checkpoint_dir=tmp_path / "ck", **params).fit(X, y)
    in_memory = DeepEnsembleClassifier(**params).fit(X, y)
    assert isinstance(mapped.checkpoints_, np.memmap)
    assert not isinstance(in_memory.checkpoints_, np.memmap)
    files = sorted((tmp_path / "ck").glob("checkpoints-*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(np.load(files[0]), in_memory.checkpoints_)
    # A second fit into the same folder does not overwrite the first one's file.
    DeepEnsembleClassifier(checkpoint_dir=tmp_path / "ck", **params).fit(X, y)
    assert len(list((tmp_path / "ck").glob("checkpoints-*.npy"))) == 2
    restored = pickle.loads(pickle.dumps(mapped))
    np.testing.assert_array_equal(restored.checkpoints_, in_memory.checkpoints_)


def test_refit_without_checkpoints_drops_them(tabular):
    X, y = tabular
    clf = DeepEnsembleClassifier(n_estimators=1, max_epochs=2, checkpoint_epochs="all",
                                 module__hidden_layer_sizes=(4,), random_state=0).fit(X, y)
    assert hasattr(clf, "checkpoints_")
    clf.set_params(checkpoint_epochs=None).fit(X, y)
    assert not hasattr(clf, "checkpoints_") and not hasattr(clf, "checkpoint_epochs_")
    # The members no longer carry the store they recorded into.
    assert "store" not in pickle.loads(pickle.dumps(clf)).__dict__


def test_warm_start_keeps_earlier_trajectories(tabular):
    X, y = tabular
    params = dict(max_epochs=2, checkpoint_epochs="all", module__hidden_layer_sizes=(4,),
                  random_state=0, engine="sequential")
    grown = DeepEnsembleClassifier(n_estimators=2, warm_start=True, **params).fit(X, y)
    first = np.array(grown.checkpoints_)
    grown.set_params(n_estimators=3).fit(X, y)
    full = DeepEnsembleClassifier(n_estimators=3, **params).fit(X, y)
    np.testing.assert_array_equal(grown.checkpoints_[:2], first)
    np.testing.assert_allclose(grown.checkpoints_, full.checkpoints_, rtol=1e-6, atol=1e-7)
    grown.set_params(n_estimators=4, checkpoint_epochs=[1])
    with pytest.raises(ValueError, match="same checkpoint_epochs"):
        grown.fit(X, y)


def test_training_stopped_early_leaves_nan_checkpoints(tabular):
    from skorch.callbacks import EarlyStopping

    X, y = tabular
    stop = EarlyStopping(monitor="train_loss", patience=1, threshold=10.0,
                         threshold_mode="abs", lower_is_better=True)
    clf = DeepEnsembleClassifier(n_estimators=1, max_epochs=6, checkpoint_epochs="all",
                                 callbacks=[stop], module__hidden_layer_sizes=(4,),
                                 random_state=0)
    with pytest.warns(UserWarning, match="checkpoints are NaN"):
        clf.fit(X, y)
    n_epochs = len(clf.estimators_[0].history)
    assert n_epochs < 6
    assert np.isfinite(clf.checkpoints_[0, :n_epochs]).all()
    assert np.isnan(clf.checkpoints_[0, n_epochs:]).all()
    np.testing.assert_array_equal(clf.checkpoints_[0, n_epochs - 1],
                                  _flat(clf.estimators_[0].module_))
