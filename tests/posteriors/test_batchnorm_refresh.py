"""BatchNorm refresh gives a sampled network its own statistics."""

from __future__ import annotations

import numpy as np
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


def test_chunks_average_the_chunk_means():
    net = _net()
    X = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    refresh_batchnorm(net, X, batch_size=10)
    h = X.astype(np.float64) @ net[0].weight.detach().double().numpy().T
    h += net[0].bias.detach().double().numpy()
    chunk_means = h.reshape(4, 10, 4).mean(axis=1).mean(axis=0)
    np.testing.assert_allclose(net[1].running_mean.numpy(), chunk_means, rtol=1e-4, atol=1e-5)


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
