"""Monte Carlo dropout trains its runs with either engine.

On the CPU the grouped dropout layer draws each run's training masks from the run's
seed exactly as ``nn.Dropout`` draws them from torch's generator seeded the same way,
so both engines give the same runs up to float rounding. The sequential engine's
reference is built here from skorch nets and :func:`fit_sequential` directly.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss
from skorch import NeuralNetClassifier
from skorch.callbacks import LRScheduler
from torch import nn

from ensemblekit import DropoutClassifier, DropoutRegressor
from ensemblekit.engine import (
    MemberSampler,
    SampleWeightedLoss,
    draw_member_seeds,
    fit_sequential,
)
from ensemblekit.models import MLP

ATOL = 1e-5
RTOL = 1e-4


class ChannelDropoutCNN(nn.Module):
    """A small CNN with channel dropout (``Dropout2d``) after its convolution."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.drop = nn.Dropout2d(0.25)
        self.fc = nn.Linear(6 * 8 * 8, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.drop(torch.relu(self.conv(x))), 1))


def _params(**params):
    base = dict(n_estimators=3, n_samples=4, max_epochs=4, batch_size=32, lr=1e-2,
                random_state=0, device="cpu", module__hidden_layer_sizes=(16,),
                module__dropout=0.3)
    return {**base, **params}


def _assert_same(a, b, X):
    np.testing.assert_allclose(a.predict_member_proba(X), b.predict_member_proba(X),
                               rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def sequential(tabular):
    X, y = tabular
    return DropoutClassifier(engine="sequential", **_params()).fit(X, y)


@pytest.mark.parametrize("sample_weight", [False, True])
def test_sequential_engine_trains_exactly_as_fit_sequential(tabular, sample_weight):
    X, y = tabular
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(y)) if sample_weight else None
    clf = DropoutClassifier(engine="sequential", **_params()).fit(X, y, sample_weight=w)
    assert clf.engine_ == "sequential" and clf.engine_reason_ == "requested"
    seeds = draw_member_seeds(0, 3)
    np.testing.assert_array_equal(clf.seeds_, seeds)
    # The runs as the estimator trained them before it had an engine parameter: skorch
    # nets with the member's own data order, trained one by one by fit_sequential.
    nets = [
        NeuralNetClassifier(
            MLP, module__in_features=6, module__num_classes=3,
            module__hidden_layer_sizes=(16,), module__dropout=0.3,
            criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-2,
            max_epochs=4, batch_size=32, train_split=None, device="cpu",
            classes=np.arange(3), iterator_train__sampler=MemberSampler(len(X), int(seed)),
        )
        for seed in seeds
    ]
    if w is not None:
        for net in nets:
            net.set_params(criterion=SampleWeightedLoss,
                           criterion__loss=nn.CrossEntropyLoss)
    fit_sequential(nets, X, y.astype(np.int64), [int(s) for s in seeds], None,
                   w)
    for ours, ref in zip(clf.estimators_, nets):
        for (name, a), (_, b) in zip(ours.module_.state_dict().items(),
                                     ref.module_.state_dict().items()):
            assert torch.equal(a, b), name
    reference = copy.deepcopy(clf)
    reference.estimators_ = nets
    np.testing.assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))


@pytest.mark.parametrize("members_per_pass", [None, 1, 2])
def test_vectorized_runs_equal_the_sequential_runs(tabular, sequential, members_per_pass):
    X, y = tabular
    vec = DropoutClassifier(engine="vectorized", max_members_per_pass=members_per_pass,
                            **_params()).fit(X, y)
    assert vec.engine_ == "vectorized" and vec.engine_reason_.startswith("grouped")
    _assert_same(vec, sequential, X)
    proba = vec.predict_member_proba(X)
    # Samples of one run differ (thinned networks), and so do the runs.
    assert np.abs(proba[0] - proba[1]).max() > 1e-3
    assert np.abs(proba[0] - proba[4]).max() > 1e-3
    np.testing.assert_allclose(vec.loss_curve_, sequential.loss_curve_, rtol=1e-5)


def test_channel_dropout_cnn_engines_agree(images):
    X, y = images
    params = dict(module=ChannelDropoutCNN, n_estimators=2, n_samples=3, max_epochs=2,
                  batch_size=16, lr=1e-2, random_state=1, device="cpu")
    seq = DropoutClassifier(engine="sequential", **params).fit(X, y)
    vec = DropoutClassifier(engine="vectorized", **params).fit(X, y)
    assert vec.engine_ == "vectorized" and vec.engine_reason_.startswith("grouped")
    _assert_same(vec, seq, X)


def test_engines_reach_comparable_accuracy_and_loss(iris):
    # Different seeds: the runs of the two engines are independent draws, as on CUDA
    # where the engines' masks differ. Their held-out scores must agree statistically.
    X, y = iris
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), bool)
    test[rng.permutation(len(y))[:50]] = True
    params = dict(n_estimators=6, n_samples=5, max_epochs=15, batch_size=16, lr=1e-2,
                  device="cpu", module__hidden_layer_sizes=(16,), module__dropout=0.3)
    scores = {}
    for engine, state in (("sequential", 0), ("vectorized", 1)):
        clf = DropoutClassifier(engine=engine, random_state=state, **params)
        clf.fit(X[~test], y[~test])
        assert clf.engine_ == engine
        member = clf.predict_member_proba(X[test]).reshape(6, 5, test.sum(), 3).mean(1)
        scores[engine] = (
            np.array([log_loss(y[test], p, labels=[0, 1, 2]) for p in member]),
            np.array([accuracy_score(y[test], p.argmax(1)) for p in member]),
        )
    (seq_nll, seq_acc), (vec_nll, vec_acc) = scores["sequential"], scores["vectorized"]
    # Means of 6 runs each within 4 standard errors of their difference (or an
    # absolute floor for runs that agree closely).
    se_nll = np.sqrt((seq_nll.var(ddof=1) + vec_nll.var(ddof=1)) / 6)
    assert abs(seq_nll.mean() - vec_nll.mean()) <= max(4 * se_nll, 0.05)
    assert abs(seq_acc.mean() - vec_acc.mean()) <= 0.08
    assert min(seq_acc.mean(), vec_acc.mean()) > 0.8


def test_early_stopping_in_the_vectorized_engine(tabular):
    X, y = tabular
    params = _params(max_epochs=40, early_stopping=True, n_iter_no_change=2,
                     validation_fraction=0.2, lr=3e-2)
    seq = DropoutClassifier(engine="sequential", **params).fit(X, y)
    vec = DropoutClassifier(engine="vectorized", **params).fit(X, y)
    assert vec.engine_ == "vectorized"
    assert (vec.n_iter_ < 40).all()
    np.testing.assert_array_equal(vec.n_iter_, seq.n_iter_)
    np.testing.assert_array_equal(vec.best_epoch_, seq.best_epoch_)
    for a, b in zip(vec.validation_scores_, seq.validation_scores_):
        np.testing.assert_allclose(a, b, atol=1e-6)
    _assert_same(vec, seq, X)


def test_partial_fit_in_either_engine(tabular):
    # The first call builds and trains the runs as fit(max_epochs=1) does; later
    # calls continue them (their dropout draws from a stream of their own, so k
    # calls are not fit(max_epochs=k)), identically in both engines.
    X, y = tabular
    one = DropoutClassifier(engine="sequential", **_params(max_epochs=1)).fit(X, y)
    clfs = {}
    for engine in ("sequential", "vectorized"):
        clf = DropoutClassifier(engine=engine, **_params(max_epochs=50))
        clf.partial_fit(X, y, classes=[0, 1, 2])
        assert clf.engine_ == engine
        _assert_same(clf, one, X)
        for _ in range(2):
            clf.partial_fit(X, y)
            assert clf.engine_ == engine
        np.testing.assert_array_equal(clf.n_iter_, [3, 3, 3])
        clfs[engine] = clf
    seq, vec = clfs["sequential"], clfs["vectorized"]
    np.testing.assert_allclose(vec.loss_curve_, seq.loss_curve_, rtol=1e-5)
    _assert_same(vec, seq, X)
    assert np.abs(vec.predict_member_proba(X) - one.predict_member_proba(X)).max() > 1e-3


def test_partial_fit_engines_agree_on_weighted_pieces(tabular):
    X, y = tabular
    order = np.random.default_rng(0).permutation(len(y))
    w = np.random.default_rng(1).uniform(0.2, 2.0, len(y))
    clfs = {}
    for engine in ("sequential", "vectorized"):
        clf = DropoutClassifier(engine=engine, **_params())
        for piece in np.array_split(order, 3):
            clf.partial_fit(X[piece], y[piece], classes=[0, 1, 2], sample_weight=w[piece])
        assert clf.engine_ == engine
        clfs[engine] = clf
    _assert_same(clfs["vectorized"], clfs["sequential"], X)


def test_auto_falls_back_for_skorch_callbacks(tabular):
    X, y = tabular
    params = _params(n_estimators=2, max_epochs=2,
                     callbacks=[("sched", LRScheduler(policy="StepLR", step_size=1))])
    with pytest.raises(ValueError, match=r"engine='vectorized' cannot train.*sched"):
        DropoutClassifier(engine="vectorized", **params).fit(X, y)
    clf = DropoutClassifier(engine="auto", **params).fit(X, y)
    assert clf.engine_ == "sequential" and "sched" in clf.engine_reason_


@pytest.mark.parametrize("params, match", [
    (dict(engine="grouped"), r"engine must be one of \['auto', 'sequential', 'vectorized'\]"),
    (dict(precision="fp16"), r"precision must be one of \['fp32', 'bf16'\]"),
    (dict(max_members_per_pass=0), "max_members_per_pass"),
])
@pytest.mark.parametrize("cls", [DropoutClassifier, DropoutRegressor])
def test_invalid_engine_parameters(tabular, cls, params, match):
    X, y = tabular
    with pytest.raises(ValueError, match=match):
        cls(**_params(max_epochs=1, **params)).fit(X, y)


def test_precision_is_ignored_by_the_sequential_engine_with_a_warning(tabular):
    X, y = tabular
    with pytest.warns(UserWarning, match="precision='bf16' applies to the vectorised"):
        DropoutClassifier(engine="sequential", precision="bf16",
                          **_params(n_estimators=1, max_epochs=1)).fit(X, y)


@pytest.mark.parametrize("loss", ["gaussian_nll", "squared_error"])
def test_regressor_engines_give_the_same_runs(tabular, loss):
    X, _ = tabular
    y = np.c_[X[:, 0] - X[:, 1], X[:, 2]]
    params = _params(loss=loss)
    seq = DropoutRegressor(engine="sequential", **params).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vec = DropoutRegressor(engine="vectorized", max_members_per_pass=2, **params).fit(X, y)
    assert seq.engine_ == "sequential"
    assert vec.engine_ == "vectorized" and vec.engine_reason_.startswith("grouped")
    for a, b in zip(vec.predict_member(X), seq.predict_member(X)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    mean, _ = vec.predict_member(X)
    assert mean.shape == (12, len(X), 2)
    assert np.abs(mean[0] - mean[1]).max() > 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_engines_draw_other_masks_from_the_same_distribution(iris):
    # On CUDA the fused dropout kernel and the grouped layer draw different masks: the
    # runs differ, but they do not depend on the grouping and score alike.
    X, y = iris
    params = dict(n_estimators=4, n_samples=5, max_epochs=15, batch_size=16, lr=1e-2,
                  device="cuda", random_state=0, module__hidden_layer_sizes=(16,),
                  module__dropout=0.3)
    seq = DropoutClassifier(engine="sequential", **params).fit(X, y)
    vec = DropoutClassifier(engine="vectorized", **params).fit(X, y)
    pairs = DropoutClassifier(engine="vectorized", max_members_per_pass=2, **params).fit(X, y)
    assert vec.engine_ == "vectorized"
    np.testing.assert_allclose(pairs.predict_member_proba(X), vec.predict_member_proba(X),
                               rtol=1e-3, atol=1e-4)
    nll = {name: log_loss(y, clf.predict_proba(X), labels=[0, 1, 2])
           for name, clf in (("sequential", seq), ("vectorized", vec))}
    acc = {name: accuracy_score(y, clf.predict(X))
           for name, clf in (("sequential", seq), ("vectorized", vec))}
    assert abs(nll["sequential"] - nll["vectorized"]) < 0.15
    assert abs(acc["sequential"] - acc["vectorized"]) < 0.1
