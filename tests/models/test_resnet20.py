"""ResNet20v1: Keras parameter counts, structure and initialisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ensemblekit.models import ResNet20v1


def counts(net: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    moving = sum(b.numel() for name, b in net.named_buffers() if "running_" in name)
    return trainable, moving


def test_keras_parameter_counts():
    # Keras model.summary() of resnet_v1(depth=20): 274,442 total, 273,066 trainable.
    assert counts(ResNet20v1()) == (273_066, 1_376)
    trainable, moving = counts(ResNet20v1(num_classes=100))
    assert trainable + moving == 280_292


def test_structure():
    net = ResNet20v1()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 9 * 2 + 2  # stem, 9 blocks x 2, two projections
    assert all(c.bias is not None for c in convs)  # Keras Conv2D default use_bias=True
    projections = [c for c in convs if c.kernel_size == (1, 1)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in projections] == [
        (16, 32, (2, 2)),
        (32, 64, (2, 2)),
    ]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 19
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.1)
    keras = next(m for m in ResNet20v1(bn_momentum=0.01).modules() if isinstance(m, nn.BatchNorm2d))
    assert keras.momentum == pytest.approx(0.01)


@pytest.mark.parametrize(("c", "side"), [(3, 32), (1, 8), (3, 17)])
def test_output_shapes(c, side):
    net = ResNet20v1(num_classes=4, in_channels=c, input_size=side)
    net.train()
    assert net(torch.randn(3, c, side, side)).shape == (3, 4)
    net.eval()
    assert net(torch.randn(2, c, side, side)).shape == (2, 4)


def test_forward_matches_functional_definition():
    torch.manual_seed(0)
    net = ResNet20v1(num_classes=3)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    net.eval()
    x = torch.randn(2, 3, 32, 32)

    def bn(m, h):
        return F.batch_norm(h, m.running_mean, m.running_var, m.weight, m.bias, eps=1e-3)

    def conv(m, h):
        return F.conv2d(h, m.weight, m.bias, stride=m.stride, padding=m.padding)

    h = F.relu(bn(net.bn, conv(net.conv, x)))
    for block in net.blocks:
        y = F.relu(bn(block.bn1, conv(block.conv1, h)))
        y = bn(block.bn2, conv(block.conv2, y))
        short = conv(block.shortcut, h) if isinstance(block.shortcut, nn.Conv2d) else h
        h = F.relu(short + y)
    assert h.shape == (2, 64, 8, 8)
    expected = F.linear(h.mean(dim=(2, 3)), net.classifier.weight, net.classifier.bias)
    torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-4)


def test_he_normal_init():
    torch.manual_seed(0)
    net = ResNet20v1()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            std = math.sqrt(2 / fan_in)
            assert (m.bias == 0).all()
            # Truncated at two untruncated standard deviations.
            assert m.weight.abs().max() <= 2 * std / 0.87962566103423978 + 1e-6
            if m.weight.numel() >= 9_000:
                assert m.weight.std().item() == pytest.approx(std, rel=0.05)
        elif isinstance(m, nn.BatchNorm2d):
            assert (m.weight == 1).all() and (m.bias == 0).all()


def test_reset_parameters_redraws_and_resets_statistics():
    net = ResNet20v1(in_channels=1, input_size=8)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(7.0)
    net.train()
    net(torch.randn(4, 1, 8, 8) + 3)  # moves running statistics
    net.reset_parameters()
    for name, p in net.named_parameters():
        assert (p != 7.0).all(), name
    for name, b in net.named_buffers():
        if name.endswith("running_mean"):
            assert (b == 0).all(), name
        elif name.endswith("running_var"):
            assert (b == 1).all(), name

    def draw(seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net.reset_parameters()
        return [p.detach().clone() for p in net.parameters()]

    a, b, c = draw(0), draw(0), draw(1)
    for (name, p), pa, pb, pc in zip(net.named_parameters(), a, b, c):
        assert torch.equal(pa, pb)
        if name.endswith("weight") and p.dim() > 1:  # random tensors differ between seeds
            assert not torch.equal(pa, pc), name


def test_dropout_before_classifier():
    assert ResNet20v1().drop.p == 0.0
    net = ResNet20v1(dropout=0.5, in_channels=1, input_size=8).train()
    x = torch.randn(8, 1, 8, 8)
    torch.manual_seed(0)
    assert not torch.equal(net(x), net(x))


@pytest.mark.parametrize(
    "kwargs",
    [{"num_classes": 0}, {"dropout": 1.5}, {"bn_momentum": 2.0}, {"bn_eps": 0.0}],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ResNet20v1(**kwargs)
