"""BatchNorm refresh gives a sampled network its own statistics."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from ensemblekit.posteriors import refresh_batchnorm, sampled_network


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4, 2), nn.BatchNorm1d(2),
    )
    for bn in (net[1], net[5]):  # stale statistics, as after a weight perturbation
        bn.running_mean.fill_(7.0)
        bn.running_var.fill_(9.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    return net


def _manual_stats(net: nn.Sequential, X: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    # Training-mode BatchNorm over the whole refresh set, dropout off, by hand.
    def p(t):
        return t.detach().double().numpy()

    h = X @ p(net[0].weight).T + p(net[0].bias)
    m1, v1 = h.mean(0), h.var(0, ddof=1)
    h = (h - m1) / np.sqrt(h.var(0) + net[1].eps) * p(net[1].weight) + p(net[1].bias)
    h = np.maximum(h, 0) @ p(net[4].weight).T + p(net[4].bias)
    return [(m1, v1), (h.mean(0), h.var(0, ddof=1))]


def test_refresh_matches_a_manual_forward_pass():
    net = _net()
    X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    weights = [w.clone() for w in net.parameters()]
    net.train()
    net[3].eval()  # mixed modes must come back as they were
    assert refresh_batchnorm(net, X, batch_size=64)
    for bn, (mean, var) in zip((net[1], net[5]), _manual_stats(net, X.astype(np.float64))):
        np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-4, atol=1e-5)
        assert bn.momentum == 0.1
    assert net.training and net[1].training and not net[3].training
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))


def _two_bn_2d() -> nn.Module:
    # BatchNorm2d over (N, C, H, W), then BatchNorm1d over (N, C); dropout must stay off.
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
        nn.Linear(48, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2),
    )


def _two_bn_1d() -> nn.Module:
    # BatchNorm1d over (N, C, L), then BatchNorm3d over (N, C, D, H, W).
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 4, 3)
            self.bn1 = nn.BatchNorm1d(4)
            self.bn3 = nn.BatchNorm3d(2)
            self.head = nn.Linear(128, 2)

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv(x.flatten(2))))  # (N, 4, 34)
            h = self.bn3(h[:, :, :32].reshape(-1, 2, 2, 4, 8) + 1.0)
            return self.head(h.flatten(1))

    return Net()


def _stale(net: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for layer in net.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.running_mean.fill_(3.0)
            layer.running_var.fill_(5.0)
            with torch.no_grad():
                layer.weight.copy_(torch.rand(layer.num_features, generator=gen) + 0.5)
                layer.bias.copy_(torch.rand(layer.num_features, generator=gen) - 0.5)
    return net


def _full_batch_reference(net: nn.Module, X: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    # One training-mode pass over all rows, in float64, by torch's own BatchNorm:
    # a fresh copy, only the BatchNorm layers training, cumulative-average momentum.
    ref = copy.deepcopy(net).double().eval()
    layers = [m for m in ref.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    with torch.no_grad():
        ref(torch.as_tensor(X, dtype=torch.float64))
    return [(m.running_mean.numpy(), m.running_var.numpy()) for m in layers]


@pytest.mark.parametrize("make_net,shape", [(_two_bn_2d, (2, 6, 6)), (_two_bn_1d, (2, 6, 6))])
@pytest.mark.parametrize("batch_size", [1, 7, 50, 101, 1000])
def test_refresh_equals_one_full_batch_pass_whatever_the_chunking(make_net, shape, batch_size):
    torch.manual_seed(0)
    net = _stale(make_net(), seed=1)
    rng = np.random.default_rng(2)
    # An offset and unequal rows make chunk means differ (a mean of chunk means or
    # pooled chunk variances would be off).
    X = (rng.normal(size=(101, *shape)) * np.linspace(0.2, 3, 101)[:, None, None, None]
         + np.linspace(-2, 2, 101)[:, None, None, None]).astype(np.float32)
    expected = _full_batch_reference(net, X)
    weights = [w.clone() for w in net.parameters()]
    net.train()  # the modes come back as they were
    assert refresh_batchnorm(net, X, batch_size=batch_size)
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(layers) == len(expected) == 2
    for layer, (mean, var) in zip(layers, expected):
        np.testing.assert_allclose(layer.running_mean.numpy(), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(layer.running_var.numpy(), var, rtol=1e-5, atol=1e-6)
        assert layer.momentum == 0.1 and int(layer.num_batches_tracked) == 1
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))


def test_refresh_is_the_same_for_every_chunk_size():
    torch.manual_seed(3)
    template = _stale(_two_bn_2d(), seed=4)
    X = np.random.default_rng(5).normal(1.0, 2.0, size=(37, 2, 6, 6)).astype(np.float32)
    stats = []
    for batch_size in (1, 2, 5, 36, 37):
        net = copy.deepcopy(template)
        refresh_batchnorm(net, X, batch_size)
        stats.append(torch.cat([net[1].running_mean, net[1].running_var,
                                net[6].running_mean, net[6].running_var]).numpy())
    for other in stats[1:]:
        np.testing.assert_allclose(other, stats[0], rtol=1e-5, atol=1e-6)


def test_one_value_per_channel_is_a_clear_error():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    for batch_size in (1, 8):
        with pytest.raises(ValueError, match="more than one value per channel"):
            refresh_batchnorm(net, np.ones((1, 3), dtype=np.float32), batch_size)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        refresh_batchnorm(net, np.ones((4, 3), dtype=np.float32), 0)
    with pytest.raises(ValueError, match="at least one row"):
        refresh_batchnorm(net, np.ones((0, 3), dtype=np.float32), 4)


def test_a_batchnorm_applied_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x):
            return self.bn(self.bn(x) * 2.0)

    X = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    for batch_size in (4, 10):
        with pytest.raises(ValueError, match="applied more than once"):
            refresh_batchnorm(Twice(), X, batch_size)


def test_sampled_network_is_refreshed_and_template_untouched():
    net = _net().eval()
    X = np.random.default_rng(2).normal(size=(32, 3)).astype(np.float32)
    theta = torch.nn.utils.parameters_to_vector(net.parameters()).detach() * 1.5
    sample = sampled_network(net, theta, X, batch_size=32)
    assert float(net[1].running_mean[0]) == 7.0  # template keeps its stale stats
    assert not sample.training
    mean, _ = _manual_stats(sample, X.astype(np.float64))[0]
    np.testing.assert_allclose(sample[1].running_mean.numpy(), mean, rtol=1e-4, atol=1e-5)


def test_no_batchnorm_is_a_no_op():
    net = nn.Linear(2, 2)
    assert refresh_batchnorm(net, np.zeros((3, 2), dtype=np.float32), 8) is False
