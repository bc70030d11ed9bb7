"""Training-time random draws come from each member's own seed, in every stacked form.

The reference is the sequential engine: a member trained alone, with torch's global
generator seeded from the member's seed. On the CPU every stacked form must give the
same members, whatever the grouping (members per pass, warm start).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.engine import stack_members
from ensemblekit.models import SmallCNN

ATOL = 1e-5
RTOL = 1e-4


class ScaledDropoutNet(nn.Module):
    """Learned per-feature scaling (its own parameter: cannot be grouped) and Dropout(0.3)."""

    def __init__(self, n_features: int = 6, num_classes: int = 3) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n_features))
        self.fc1 = nn.Linear(n_features, 16)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x * self.scale))))


class FunctionalDropoutNet(nn.Module):
    """Standard layers, but dropout called as a function in ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.4, self.training))


class GaussianNoiseNet(nn.Module):
    """Multiplicative Gaussian noise (``randn_like``) on the hidden layer in training."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        if self.training:
            h = h * (1 + 0.5 * torch.randn_like(h))
        return self.fc2(h)


class InPlaceNoiseNet(nn.Module):
    """Noise drawn in place (``torch.empty(n).normal_()``) and added in training only."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        if self.training:
            h = h + 0.3 * torch.empty(16).normal_()
        return self.fc2(h)


class ScaledUniformNoiseNet(ScaledDropoutNet):
    """Own parameter (vmap form) with ``torch.rand`` noise on the input and Dropout."""

    def forward(self, x):
        if self.training:
            x = x + 0.2 * torch.rand(x.shape)
        return super().forward(x)


def _fit(X, y, module, engine, **params):
    defaults = dict(n_estimators=4, max_epochs=3, batch_size=32, lr=1e-2, random_state=0,
                    device="cpu")
    return DeepEnsembleClassifier(module, engine=engine, **{**defaults, **params}).fit(X, y)


def _assert_same(a, b, X):
    np.testing.assert_allclose(a.predict_member_proba(X), b.predict_member_proba(X),
                               rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def sequential_scaled(tabular):
    X, y = tabular
    return _fit(X, y, ScaledDropoutNet, "sequential")


@pytest.mark.parametrize("members_per_pass", [None, 1, 2, 3])
def test_vmap_form_dropout_does_not_depend_on_grouping(tabular, sequential_scaled,
                                                       members_per_pass):
    X, y = tabular
    vec = _fit(X, y, ScaledDropoutNet, "auto", max_members_per_pass=members_per_pass)
    assert vec.engine_ == "vectorized" and vec.engine_reason_.startswith("vmap")
    assert "own stream" in vec.engine_reason_
    _assert_same(vec, sequential_scaled, X)
    proba = vec.predict_member_proba(X)
    assert np.abs(proba[0] - proba[1]).max() > 1e-3  # the members do differ


def test_vmap_form_warm_start_equals_full_fit(tabular, sequential_scaled):
    X, y = tabular
    grown = _fit(X, y, ScaledDropoutNet, "auto", n_estimators=2, warm_start=True)
    grown.set_params(n_estimators=4).fit(X, y)
    full = _fit(X, y, ScaledDropoutNet, "auto")
    assert full.engine_ == grown.engine_ == "vectorized"
    _assert_same(grown, full, X)
    _assert_same(grown, sequential_scaled, X)
    np.testing.assert_array_equal(grown.seeds_, full.seeds_)


@pytest.mark.parametrize(
    "module", [FunctionalDropoutNet, GaussianNoiseNet, InPlaceNoiseNet, ScaledUniformNoiseNet]
)
def test_random_draws_in_forward_follow_the_member_seed(tabular, module):
    X, y = tabular
    seq = _fit(X, y, module, "sequential", n_estimators=3)
    together = _fit(X, y, module, "auto", n_estimators=3)
    pairs = _fit(X, y, module, "auto", n_estimators=3, max_members_per_pass=2)
    # The grouped form would draw one global stream for all members: it is refused.
    assert together.engine_ == "vectorized"
    assert together.engine_reason_.startswith("vmap")
    assert "random" in together.engine_reason_
    _assert_same(together, seq, X)
    _assert_same(pairs, seq, X)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_grouped_dropout_reproduces_the_sequential_masks(tabular, images, kind):
    if kind == "mlp":
        X, y = tabular
        params = dict(module__hidden_layer_sizes=(16, 8), module__dropout=0.3)
    else:
        X, y = images
        params = dict(module=SmallCNN, module__channels=(4, 8), module__dropout=0.3,
                      batch_size=16)
    base = dict(n_estimators=3, max_epochs=2, lr=1e-2, random_state=1, device="cpu",
                **params)
    seq = DeepEnsembleClassifier(engine="sequential", **base).fit(X, y)
    vec = DeepEnsembleClassifier(engine="vectorized", **base).fit(X, y)
    single = DeepEnsembleClassifier(engine="vectorized", max_members_per_pass=1,
                                    **base).fit(X, y)
    assert vec.engine_reason_.startswith("grouped")
    _assert_same(vec, seq, X)
    _assert_same(single, seq, X)


def test_training_check_refuses_global_draws_in_the_grouped_form():
    members = [FunctionalDropoutNet() for _ in range(2)]
    _, form = stack_members(members, (6,))
    assert form == "grouped"  # in evaluation mode nothing is drawn
    _, form = stack_members(members, (6,), training=True)
    assert form.startswith("vmap") and "global generator" in form


def test_members_after_out_of_memory_halving_are_the_same(tabular, sequential_scaled,
                                                          monkeypatch):
    # Out-of-memory errors injected for passes of more than one member: the engine
    # halves the pass until it fits (4 -> 2 -> 1), and the members do not change.
    from ensemblekit.engine import _loop

    real = _loop._train_group
    sizes = []

    def train_group(nets, *args, **kwargs):
        sizes.append(len(nets))
        if len(nets) > 1:
            raise torch.cuda.OutOfMemoryError("injected")
        return real(nets, *args, **kwargs)

    monkeypatch.setattr(_loop, "_train_group", train_group)
    X, y = tabular
    with pytest.warns(UserWarning) as record:
        halved = _fit(X, y, ScaledDropoutNet, "auto")
    assert [str(w.message) for w in record] == [
        "Out of GPU memory; training 2 members per pass instead.",
        "Out of GPU memory; training 1 members per pass instead.",
    ]
    assert sizes[:3] == [4, 2, 1]
    assert "1 members per pass (4 passes)" in halved.engine_reason_
    _assert_same(halved, sequential_scaled, X)
