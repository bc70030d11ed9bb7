"""Modules returning logits, probabilities or log-probabilities, and output widths.

The conventions are skorch's: ``CrossEntropyLoss`` takes logits, ``NLLLoss`` takes
probabilities (a final ``nn.Softmax``) or log-probabilities (a final ``nn.LogSoftmax``).
Whatever the module returns, the ensemble's probabilities are the distributions the
module encodes, computed here independently with torch.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss
from torch import nn

from ensemblekit import (
    DeepEnsembleClassifier,
    DropoutClassifier,
    SubspaceSamplingClassifier,
    SWAGClassifier,
)

COMMON = dict(max_epochs=4, lr=1e-2, batch_size=32, random_state=0, device="cpu")
ESTIMATORS = {
    "deep_ensemble": (DeepEnsembleClassifier, dict(n_estimators=2)),
    "swag": (SWAGClassifier, dict(n_samples=3, swa_start=2)),
    "dropout": (DropoutClassifier, dict(n_samples=3)),
    "subspace": (SubspaceSamplingClassifier, dict(n_samples=3)),
}
# head -> (criterion, how the module's output becomes probabilities, kind)
HEADS = {
    "logits": (None, lambda z: torch.softmax(z.double(), 1), "logits"),
    "softmax": (nn.NLLLoss, lambda z: z.double(), "proba"),
    "logsoftmax": (nn.NLLLoss, lambda z: z.double().exp(), "log_proba"),
    "functional_softmax": (nn.NLLLoss, lambda z: z.double(), "proba"),
    "functional_logsoftmax": (nn.NLLLoss, lambda z: z.double().exp(), "log_proba"),
}


class Net(nn.Module):
    """A small MLP with dropout and an optional final (log-)softmax."""

    def __init__(self, in_features: int, num_classes: int, head: str = "logits",
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.head = head
        layers = [nn.Linear(in_features, 16), nn.ReLU(), nn.Dropout(dropout),
                  nn.Linear(16, num_classes)]
        if head == "softmax":
            layers.append(nn.Softmax(dim=-1))
        elif head == "logsoftmax":
            layers.append(nn.LogSoftmax(dim=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        z = self.layers(x)
        if self.head == "functional_softmax":
            return F.softmax(z, dim=1)
        if self.head == "functional_logsoftmax":
            return F.log_softmax(z, dim=1)
        return z


def _fit(name, head, X, y, **params):
    cls, extra = ESTIMATORS[name]
    criterion = HEADS[head][0]
    kwargs = {**COMMON, **extra, **params}
    if criterion is not None:
        kwargs["criterion"] = criterion
    return cls(Net, module__head=head, **kwargs).fit(X, y)


def _module_proba(module, head, X):
    module.eval()
    with torch.no_grad():
        return HEADS[head][1](module(torch.as_tensor(X))).numpy()


@pytest.mark.parametrize("head", list(HEADS))
def test_one_member_ensemble_gives_its_members_distribution(iris, head):
    X, y = iris
    clf = _fit("deep_ensemble", head, X, y, n_estimators=1)
    assert clf.output_kind_ == HEADS[head][2]
    member = clf.estimators_[0]
    expected = _module_proba(member.module_, head, X)
    np.testing.assert_allclose(expected.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X), expected, atol=1e-6)
    np.testing.assert_allclose(member.predict_proba(X), expected, atol=1e-6)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(expected), atol=1e-5)


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_grouped_and_member_paths_agree_for_every_kind(iris, head, engine):
    # Three members are predicted through the grouped network; each member's own
    # skorch predict_proba and its module evaluated alone give the same rows.
    X, y = iris
    clf = _fit("deep_ensemble", head, X, y, n_estimators=3, engine=engine)
    assert clf.engine_ == engine
    member_proba = clf.predict_member_proba(X)
    for m, net in enumerate(clf.estimators_):
        expected = _module_proba(net.module_, head, X)
        np.testing.assert_allclose(member_proba[m], expected, atol=1e-6)
        np.testing.assert_allclose(net.predict_proba(X), expected, atol=1e-6)


@pytest.mark.parametrize("head", ["softmax", "logsoftmax"])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_kind_trains_the_same_model_as_logits(iris, name, head):
    # NLLLoss on log(softmax(z)) and on log_softmax(z) is cross-entropy on z, and the
    # networks start from the same weights: the trained distributions must agree.
    X, y = iris
    reference = _fit(name, "logits", X, y).predict_member_proba(X)
    clf = _fit(name, head, X, y)
    np.testing.assert_allclose(clf.predict_member_proba(X), reference, atol=1e-4)
    if name == "deep_ensemble":
        assert clf.engine_ == "vectorized"
    assert np.isfinite(clf.estimators_[0].history[:, "train_loss"]).all()


def test_vectorized_training_loss_is_the_models_log_loss(iris):
    # The recorded loss of a probability-output member is the NLL of its outputs.
    X, y = iris
    clf = _fit("deep_ensemble", "softmax", X, y, n_estimators=2, engine="vectorized",
               max_epochs=1, lr=1e-12, optimizer=torch.optim.SGD, batch_size=150,
               module__dropout=0.0)
    for net in clf.estimators_:
        proba = _module_proba(net.module_, "softmax", X)
        proba /= proba.sum(1, keepdims=True)
        assert net.history[-1, "train_loss"] == pytest.approx(log_loss(y, proba), rel=1e-4)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_sampled_networks_give_their_distribution(iris, name):
    X, y = iris
    clf = _fit(name, "softmax", X, y)
    proba = clf.predict_member_proba(X)
    np.testing.assert_allclose(proba.sum(-1), 1.0, atol=1e-9)
    networks = getattr(clf, "sample_networks_", None)
    if networks is not None:
        for k, module in enumerate(networks):
            np.testing.assert_allclose(proba[k], _module_proba(module, "softmax", X), atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X), proba.mean(0))


def test_output_kind_survives_pickling(iris):
    X, y = iris
    clf = _fit("deep_ensemble", "softmax", X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


class CrossEntropySubclass(nn.CrossEntropyLoss):
    pass


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("head,criterion,match", [
    ("softmax", None, "CrossEntropyLoss expects the module to return logits"),
    ("functional_softmax", nn.CrossEntropyLoss, "second softmax"),
    ("softmax", CrossEntropySubclass, "CrossEntropySubclass expects the module to return logits"),
    ("logits", nn.NLLLoss, "NLLLoss expects the module to return probabilities"),
])
def test_inconsistent_criterion_and_outputs_are_refused(iris, name, head, criterion, match):
    X, y = iris
    cls, extra = ESTIMATORS[name]
    clf = cls(Net, module__head=head, criterion=criterion, **COMMON, **extra)
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)


# ------------------------------------------------------------------ output width
class Wide(nn.Module):
    def __init__(self, in_features: int, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, width)

    def forward(self, x):
        return self.linear(x)


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("width,n_classes", [(10, 3), (1, 2), (2, 3), (4, 3)])
def test_output_width_must_equal_the_number_of_classes(iris, name, width, n_classes):
    X, y = iris
    y = y if n_classes == 3 else (y > 0).astype(int)
    cls, extra = ESTIMATORS[name]
    clf = cls(Wide, module__width=width, **COMMON, **extra)
    with pytest.raises(ValueError, match=f"returns {width} outputs per sample, but y has "
                                         f"{n_classes} classes"):
        clf.fit(X, y)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_output_width_checked_for_module_instances_and_routed_num_classes(iris, name):
    X, y = iris
    cls, extra = ESTIMATORS[name]
    with pytest.raises(ValueError, match="returns 10 outputs per sample, but y has 3"):
        cls(Wide(4, 10), **COMMON, **extra).fit(X, y)
    with pytest.raises(ValueError, match="returns 7 outputs per sample, but y has 3"):
        cls(Net, module__num_classes=7, **COMMON, **extra).fit(X, y)


def test_module_must_return_one_row_of_outputs_per_sample(iris):
    X, y = iris

    class Pooled(nn.Module):
        def __init__(self, in_features: int, num_classes: int) -> None:
            super().__init__()
            self.linear = nn.Linear(in_features, num_classes)

        def forward(self, x):
            return self.linear(x).mean(0)

    with pytest.raises(ValueError, match=r"shape \(n_samples, n_classes\)"):
        DeepEnsembleClassifier(Pooled, **COMMON).fit(X, y)
