"""Every registered layer groups into a network equal to its members, train and eval mode.

The reference is each member's own forward pass on its own batch (and, for whole
fits, the sequential engine). Dropout is compared with identical seeds: on the CPU a
grouped dropout layer draws the masks ``nn.Dropout`` would draw from the member's
stream.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.engine import GroupedNetwork, GroupingError, group_modules, stack_members
from ensemblekit.engine._grouped import GROUPED_LAYERS, register_grouped_layer
from ensemblekit.engine._layout import Layout
from ensemblekit.engine._randomness import MemberStream


def layernorm_mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))


def batchnorm_mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(8, 3))


def groupnorm_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def depthwise_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),            # depthwise
        nn.Conv2d(4, 6, 1, groups=2), nn.BatchNorm2d(6),    # grouped pointwise
        nn.Dropout2d(0.25), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    )


class SequenceModel(nn.Module):
    """Conv1d model on (N, C, L) sequences, with BatchNorm1d on the maps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4)
        self.pool = nn.MaxPool1d(2)
        self.conv2 = nn.Conv1d(4, 4, 3, padding=1, groups=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(3), nn.Flatten(), nn.Linear(12, 3))

    def forward(self, x):
        h = self.pool(torch.relu(self.bn(self.conv1(x))))
        return self.head(h + torch.tanh(self.conv2(h)))


def softmax_head():
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3), nn.Softmax(dim=1))


def log_softmax_head():
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3), nn.LogSoftmax(dim=-1))


NETS = {
    "layernorm": (layernorm_mlp, (6,)),
    "batchnorm1d_dropout": (batchnorm_mlp, (6,)),
    "groupnorm": (groupnorm_cnn, (1, 8, 8)),
    "depthwise_grouped_conv_dropout2d": (depthwise_cnn, (1, 8, 8)),
    "conv1d_sequence": (SequenceModel, (2, 12)),
    "softmax": (softmax_head, (6,)),
    "log_softmax": (log_softmax_head, (6,)),
}


def _members(factory, n=3):
    members = []
    for seed in range(n):
        torch.manual_seed(seed)
        module = factory()
        for p in module.parameters():  # non-trivial affine parameters
            with torch.no_grad():
                p.add_(0.1 * torch.randn_like(p))
        members.append(module)
    return members


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("training", [False, True])
def test_grouped_equals_members(name, training):
    factory, shape = NETS[name]
    members = _members(factory)
    network, form = stack_members(members, shape, training=True)
    assert form == "grouped" and isinstance(network, GroupedNetwork)
    seeds = [11, 12, 13]
    network.train(training)
    network.set_training_seeds(seeds)
    x = torch.randn(3, 5, *shape, generator=torch.Generator().manual_seed(3))
    out = network(x)
    for m, member in enumerate(members):
        member.train(training)
        with MemberStream(seeds[m]).active():
            ref = member(x[m])
        torch.testing.assert_close(out[m], ref, rtol=1e-4, atol=1e-5)


def _fit(X, y, module, engine):
    return DeepEnsembleClassifier(module, n_estimators=3, max_epochs=2, batch_size=16,
                                  lr=0.05, optimizer=torch.optim.SGD, random_state=0,
                                  device="cpu", engine=engine).fit(X, y)


@pytest.mark.parametrize("name", ["layernorm", "batchnorm1d_dropout", "groupnorm",
                                  "depthwise_grouped_conv_dropout2d", "conv1d_sequence"])
def test_vectorized_fit_equals_sequential(name):
    factory, shape = NETS[name]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, *shape)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    seq = _fit(X, y, factory, "sequential")
    vec = _fit(X, y, factory, "vectorized")
    assert vec.engine_reason_.startswith("grouped")
    np.testing.assert_allclose(vec.predict_member_proba(X), seq.predict_member_proba(X),
                               rtol=1e-4, atol=1e-5)


def test_sequence_maps_are_not_read_as_member_first():
    # A (B, M*C, L) map has the rank of (M, B, F) features, and here M == B; the
    # grouped network tells them apart (tags and the known batch size).
    members = _members(SequenceModel, n=4)
    network = group_modules(members, sequence_maps=True).eval()
    x = torch.randn(4, 4, 2, 12)
    with torch.no_grad():
        out = network(x)
        for m, member in enumerate(members):
            torch.testing.assert_close(out[m], member.eval()(x[m]), rtol=1e-4, atol=1e-5)


def test_registry_lists_each_layer_with_its_layouts():
    for layer in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d,
                  nn.GroupNorm, nn.LayerNorm, nn.Dropout, nn.Dropout2d, nn.Flatten,
                  nn.Softmax, nn.LogSoftmax, nn.ReLU, nn.MaxPool1d, nn.MaxPool2d):
        assert GROUPED_LAYERS[layer].accepts
    assert GROUPED_LAYERS[nn.Conv2d].accepts == (Layout.CHANNELS,)
    with pytest.raises(GroupingError, match="PReLU"):
        group_modules([nn.Sequential(nn.Linear(3, 3), nn.PReLU())] * 1)


class Scale(nn.Module):
    """A layer with one parameter per feature: unknown to the registry."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, width))

    def forward(self, x):
        return x * self.weight


class GroupedScale(nn.Module):
    def __init__(self, layer, ctx) -> None:
        super().__init__()
        self.ctx = ctx
        self.weight = nn.Parameter(torch.empty(ctx.n_members, layer.weight.shape[0]))

    def forward(self, x):
        from ensemblekit.engine._layout import resolve_layout

        resolve_layout(x, self.ctx, (Layout.MEMBER_FIRST,))
        return self.ctx.tag(x * self.weight.unsqueeze(1), Layout.MEMBER_FIRST)


def test_a_registered_layer_groups(monkeypatch):
    factory = lambda: nn.Sequential(nn.Linear(6, 5), Scale(5), nn.ReLU(), nn.Linear(5, 3))  # noqa: E731
    members = _members(factory)
    _, form = stack_members(members, (6,), training=True)
    assert form.startswith("vmap") and "Scale" in form
    # For this test only: monkeypatch removes the entry afterwards.
    monkeypatch.setitem(GROUPED_LAYERS, Scale, GROUPED_LAYERS[nn.Linear])
    register_grouped_layer(Scale, lambda layer, ctx: GroupedScale(layer, ctx),
                           (Layout.MEMBER_FIRST,))
    _, form = stack_members(members, (6,), training=True)
    assert form == "grouped"
