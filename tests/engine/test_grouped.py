"""Grouped networks compute each member's own forward pass; ungroupable layers fall back."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from engine_nets import ResidualBNNet
from torch import nn

from ensemblekit.engine import (
    GroupedNetwork,
    GroupingError,
    VmapNetwork,
    check_grouped,
    group_modules,
    stack_members,
)
from ensemblekit.models import MLP, MediumCNN, ResNet20v1, SmallCNN

MODELS = {
    "mlp": (lambda: MLP(12, 4, hidden_layer_sizes=(8, 8), dropout=0.2), (12,)),
    "mlp-on-images": (lambda: MLP(48, 4, hidden_layer_sizes=(8,)), (3, 4, 4)),
    "small-cnn": (lambda: SmallCNN(num_classes=4, input_size=8), (3, 8, 8)),
    "medium-cnn": (lambda: MediumCNN(num_classes=4, input_size=8, channels=(4, 8, 8, 8)),
                   (3, 8, 8)),
    "resnet20": (lambda: ResNet20v1(num_classes=4, input_size=8, dropout=0.1), (3, 8, 8)),
    "residual-bn": (lambda: ResidualBNNet(num_classes=4, in_channels=3), (3, 8, 8)),
}


def _members(factory, n=3):
    members = []
    for seed in range(n):
        torch.manual_seed(seed)
        members.append(factory())
    return members


def _randomise_bn_statistics(members):
    # Fresh BatchNorm layers have running mean 0 and variance 1, which would hide
    # a mix-up of members' statistics: give each member its own.
    gen = torch.Generator().manual_seed(0)
    for member in members:
        for layer in member.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.running_mean.normal_(generator=gen)
                layer.running_var.uniform_(0.5, 2.0, generator=gen)
                layer.weight.data.normal_(1.0, 0.2, generator=gen)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_groups_and_matches_members(name):
    factory, shape = MODELS[name]
    members = _members(factory)
    _randomise_bn_statistics(members)
    network, form = stack_members(members, shape)
    assert form == "grouped"
    assert isinstance(network, GroupedNetwork)
    # Evaluation mode, checked by stack_members; here independently, with other inputs.
    network.eval()
    x = torch.randn(3, 5, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = network(x)
        for m, member in enumerate(members):
            torch.testing.assert_close(out[m], member.eval()(x[m]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet20", "residual-bn", "small-cnn"])
def test_training_mode_matches_members(name):
    # Training mode: batch statistics and running-statistics updates per member
    # (dropout switched off, as masks are drawn differently).
    factory, shape = MODELS[name]
    members = _members(factory)
    for member in members:
        for layer in member.modules():
            if isinstance(layer, nn.Dropout):
                layer.p = 0.0
    network = group_modules(members).train()
    copies = [copy.deepcopy(m).train() for m in members]
    x = torch.randn(3, 6, *shape, generator=torch.Generator().manual_seed(2))
    out = network(x)
    refs = [member(x[m]) for m, member in enumerate(copies)]
    for m, ref in enumerate(refs):
        torch.testing.assert_close(out[m], ref, rtol=1e-4, atol=1e-5)
    # Gradients of the summed loss are each member's own.
    out.square().sum().backward()
    for ref in refs:
        ref.square().sum().backward()
    network.write_members(members)  # writes parameters and running statistics
    for member, ref in zip(members, copies):
        for key, value in ref.state_dict().items():
            torch.testing.assert_close(member.state_dict()[key], value, rtol=1e-4, atol=1e-5)
    grads = dict(network.named_member_parameters())
    for m, ref in enumerate(copies):
        for key, p in ref.named_parameters():
            member_grad = network.member_slice(grads[key].grad, m, p.shape)
            torch.testing.assert_close(member_grad, p.grad, rtol=1e-3, atol=1e-4)


def test_grouped_dropout_draws_from_member_generators():
    members = _members(lambda: MLP(4, 3, hidden_layer_sizes=(64,), dropout=0.5), n=2)
    network = group_modules(members).train()

    def run():
        network.set_generators([torch.Generator().manual_seed(s) for s in (7, 8)])
        return network(torch.ones(2, 16, 4))

    a, b = run(), run()
    torch.testing.assert_close(a, b)  # the generators fix the masks
    network.set_generators([torch.Generator().manual_seed(s) for s in (7, 9)])
    c = network(torch.ones(2, 16, 4))
    torch.testing.assert_close(c[0], a[0])  # member 0's masks depend on its generator only
    assert not torch.allclose(c[1], a[1])


class ChannelMixing(nn.Module):
    """Normalises over each sample's channels: mixes members in a grouped layout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = self.conv(x)
        h = h - h.mean(dim=1, keepdim=True)
        return self.fc(torch.flatten(F.relu(h), 1))


class WithPReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 8)
        self.act = nn.PReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ChannelMixingBN(ChannelMixing):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return super().forward(self.bn(x.repeat(1, 4, 1, 1))[:, :1])


def test_channel_mixing_falls_back_to_vmap():
    members = _members(ChannelMixing)
    network, form = stack_members(members, (1, 8, 8))
    assert isinstance(network, VmapNetwork)
    assert form.startswith("vmap") and "mixes channels" in form


def test_layer_with_shared_parameter_falls_back_to_vmap():
    members = _members(WithPReLU)
    with pytest.raises(GroupingError, match="PReLU"):
        group_modules(members)
    network, form = stack_members(members, (5,))
    assert isinstance(network, VmapNetwork) and "PReLU" in form
    x = torch.randn(3, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(network(x)[2], members[2](x[2]))


def test_buffers_and_channel_mixing_cannot_be_stacked():
    members = _members(ChannelMixingBN)
    with pytest.raises(GroupingError, match="nor vmap"):
        stack_members(members, (1, 8, 8))


def test_check_grouped_detects_a_wrong_network():
    members = _members(lambda: MLP(4, 3, hidden_layer_sizes=(8,)))
    network = group_modules(members[::-1])  # members in the wrong order
    with pytest.raises(GroupingError, match="reproduce"):
        check_grouped(network, members, (4,))


def test_tied_weights_are_refused():
    layer = nn.Linear(4, 4)
    members = [nn.Sequential(layer, nn.ReLU(), layer)]
    with pytest.raises(GroupingError, match="reuses"):
        group_modules(members)
