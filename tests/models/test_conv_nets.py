"""SmallCNN and MediumCNN: sizes, structure, forward semantics and initialisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ensemblekit.models import MediumCNN, SmallCNN


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("cls", "kwargs", "expected"),
    [
        # Reference counts: the notebook's printed 971,146 and the hand-derived 19,466.
        (MediumCNN, {}, 971_146),
        (SmallCNN, {}, 19_466),
        # 8x8x1: convs 160 + 4,640 + 9,248; side 8 -> 4 -> 2 -> 1; dense 32*10 + 10.
        (SmallCNN, {"in_channels": 1, "input_size": 8}, 160 + 4_640 + 9_248 + 330),
        # 8x8x1: convs 640 + 73,856 + 295,168 + 590,080; side 8 -> 4 -> 2 -> 1 -> 1.
        (MediumCNN, {"in_channels": 1, "input_size": 8}, 640 + 73_856 + 295_168 + 590_080 + 2_570),
        # 100 classes: only the dense layer changes, 2*2*256*100 + 100.
        (MediumCNN, {"num_classes": 100}, 971_146 - 10_250 + 102_500),
    ],
)
def test_parameter_counts(cls, kwargs, expected):
    assert n_params(cls(**kwargs)) == expected


@pytest.mark.parametrize("cls", [SmallCNN, MediumCNN])
@pytest.mark.parametrize(("c", "side"), [(3, 32), (1, 8), (3, 28), (1, 7)])
def test_output_shapes(cls, c, side):
    net = cls(num_classes=7, in_channels=c, input_size=side).eval()
    out = net(torch.randn(4, c, side, side))
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()


def test_block_order_and_last_block_has_no_relu():
    kinds = [type(m).__name__ for m in MediumCNN().features]
    block = ["Conv2d", "Dropout", "MaxPool2d", "ReLU"]
    assert kinds == block * 3 + block[:3]
    assert [m.out_channels for m in MediumCNN().features if isinstance(m, nn.Conv2d)] == [
        64,
        128,
        256,
        256,
    ]
    assert [m.out_channels for m in SmallCNN().features if isinstance(m, nn.Conv2d)] == [16, 32, 32]


def test_default_dropout_is_point_one():
    for net in (SmallCNN(), MediumCNN()):
        probs = [m.p for m in net.modules() if isinstance(m, nn.Dropout)]
        assert probs and all(p == 0.1 for p in probs)


def _tf_same_maxpool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow SAME pooling with k=2, s=2: pad bottom/right only when the side is odd, and
    # padded cells never win the max.
    ph, pw = x.shape[-2] % 2, x.shape[-1] % 2
    return F.max_pool2d(F.pad(x, (0, pw, 0, ph), value=-math.inf), 2, 2)


def test_pooling_matches_tensorflow_same_on_odd_sides():
    x = torch.tensor([[[[1.0, -2.0, 3.0], [-4.0, -5.0, -6.0], [-7.0, 8.0, -9.0]]]])
    pool = next(m for m in SmallCNN().modules() if isinstance(m, nn.MaxPool2d))
    expected = torch.tensor([[[[1.0, 3.0], [8.0, -9.0]]]])
    assert torch.equal(pool(x), expected)
    assert torch.equal(_tf_same_maxpool(x), expected)


@pytest.mark.parametrize("side", [32, 7, 28])
def test_forward_matches_functional_port_of_the_notebook(side):
    torch.manual_seed(0)
    net = MediumCNN(num_classes=5, input_size=side).eval()
    x = torch.randn(3, 3, side, side) * 50
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    a = x
    for i, conv in enumerate(convs):
        h = F.conv2d(a, conv.weight, conv.bias, padding="same")
        h = _tf_same_maxpool(h)
        a = F.relu(h) if i < len(convs) - 1 else h
    # Flatten in NCHW order, as the PyTorch network does.
    expected = a.reshape(len(x), -1) @ net.classifier.weight.T + net.classifier.bias
    torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-3)


def test_glorot_init_of_weights_and_biases():
    torch.manual_seed(1)
    net = MediumCNN()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        c_out, c_in = conv.weight.shape[:2]
        w_lim = math.sqrt(6 / (9 * c_in + 9 * c_out))
        b_lim = math.sqrt(6 / (1 + c_out))  # TF bias shape [1, 1, C]
        assert conv.weight.abs().max() <= w_lim
        # Uniform on (-a, a): std a / sqrt(3); all tensors here have >= 1,728 entries.
        assert conv.weight.std().item() == pytest.approx(w_lim / math.sqrt(3), rel=0.1)
        assert conv.bias.abs().max() <= b_lim
        assert conv.bias.abs().max() > 0.5 * b_lim  # drawn, not zero
        assert conv.bias.std().item() == pytest.approx(b_lim / math.sqrt(3), rel=0.35)
    dense = net.classifier
    assert dense.weight.abs().max() <= math.sqrt(6 / (1024 + 10))
    b_lim = math.sqrt(6 / 11)  # TF bias shape [1, 10]
    assert dense.bias.abs().max() <= b_lim
    assert (dense.bias != 0).all()


@pytest.mark.parametrize("cls", [SmallCNN, MediumCNN])
def test_reset_parameters_redraws_everything_reproducibly(cls):
    net = cls(in_channels=1, input_size=8)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(7.0)
    net.reset_parameters()
    for name, p in net.named_parameters():
        assert (p != 7.0).all(), name

    def draw(seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net.reset_parameters()
        return [p.detach().clone() for p in net.parameters()]

    a, b, c = draw(0), draw(0), draw(1)
    for pa, pb, pc in zip(a, b, c):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)
    # fork_rng restores the global stream: reset did not consume it.
    torch.manual_seed(123)
    first = torch.rand(1)
    torch.manual_seed(123)
    draw(5)
    assert torch.equal(torch.rand(1), first)


def test_gradients_reach_every_parameter():
    net = SmallCNN(in_channels=1, input_size=8)
    out = net(torch.randn(6, 1, 8, 8))
    F.cross_entropy(out, torch.arange(6) % 10).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_eval_is_deterministic_and_train_applies_dropout():
    torch.manual_seed(0)
    net = SmallCNN(dropout=0.5)
    x = torch.randn(4, 3, 32, 32)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"in_channels": -1},
        {"input_size": 0},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"channels": ()},
        {"num_classes": 2.5},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SmallCNN(**kwargs)
