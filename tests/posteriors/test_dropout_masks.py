"""Fixed-mask Monte Carlo dropout: thinned networks with BatchNorm left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ensemblekit.posteriors import dropout_layers, dropout_mask, thinned_network


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3),
                        nn.Linear(8, 2))
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    return net


def test_thinned_network_uses_eval_batchnorm_and_one_mask():
    net = _net().train()
    x = torch.randn(16, 3)
    before = (net[1].running_mean.clone(), net[1].running_var.clone())
    with thinned_network(net, seed=5), torch.no_grad():
        out = net(x)
        assert not net[1].training
    # Running statistics unchanged and modes restored.
    assert torch.equal(before[0], net[1].running_mean)
    assert torch.equal(before[1], net[1].running_var)
    assert net.training and net[1].training
    # By hand: eval-mode BatchNorm, then one mask in {0, 1/(1-p)} per hidden unit.
    net.eval()
    with torch.no_grad():
        hidden = net[2](net[1](net[0](x)))
        with thinned_network(net, seed=5):
            thinned = net[3](hidden)
        torch.testing.assert_close(out, net[4](thinned))
    active = hidden > 1e-6
    ratio = torch.where(active, thinned / torch.where(active, hidden, 1.0), torch.nan)
    for column in ratio.T:
        values = column[~torch.isnan(column)]
        if len(values):
            assert float(values.max() - values.min()) < 1e-5  # same mask for every row
            assert min(abs(float(values[0])), abs(float(values[0]) - 1 / 0.7)) < 1e-5


def test_predictions_do_not_depend_on_rows_or_batches():
    net = _net().eval()
    x = torch.randn(10, 3)
    with thinned_network(net, seed=1), torch.no_grad():
        full = net(x)
        perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
        shuffled = net(x[perm])
        single = torch.cat([net(x[i : i + 1]) for i in range(10)])
    torch.testing.assert_close(shuffled, full[perm])
    torch.testing.assert_close(single, full)


def test_seeds_identify_networks():
    net = _net().eval()
    x = torch.randn(10, 3)
    with torch.no_grad():
        outs = []
        for seed in (1, 1, 2):
            with thinned_network(net, seed=seed):
                outs.append(net(x))
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])


def test_mean_over_masks_is_the_eval_network_for_a_linear_readout():
    # The output is linear in the mask after the last dropout layer, so the average
    # over thinned networks converges to the network without dropout, for every input.
    net = _net().eval()
    x = torch.randn(4, 3)
    with torch.no_grad():
        reference = net(x)
        outs = []
        for seed in range(200):
            with thinned_network(net, seed=seed):
                outs.append(net(x))
    mean = torch.stack(outs).mean(0)
    torch.testing.assert_close(mean, reference, atol=0.15 * float(reference.abs().max()), rtol=0)


def test_channel_dropout_masks_whole_channels():
    mask = dropout_mask(nn.Dropout2d(0.5), (6, 3, 3), torch.Generator().manual_seed(0))
    assert mask.shape == (6, 1, 1)
    assert set(mask.flatten().tolist()) <= {0.0, 2.0}
    mask = dropout_mask(nn.Dropout(0.25), (2, 3), torch.Generator().manual_seed(0))
    assert mask.shape == (2, 3)
    assert set(np.round(mask.flatten().numpy().astype(float), 4).tolist()) <= {0.0, 1.3333}


def test_dropout_layers_finds_active_layers_and_rejects_alpha_dropout():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0), nn.Dropout2d(0.2))
    assert [type(m) for m in dropout_layers(net)] == [nn.Dropout2d]
    with pytest.raises(ValueError, match="AlphaDropout is not supported"):
        dropout_layers(nn.Sequential(nn.AlphaDropout(0.1)))


def test_masks_keep_expectation_one():
    mask = dropout_mask(nn.Dropout(0.3), (200_000,), torch.Generator().manual_seed(1))
    assert abs(float(mask.double().mean()) - 1.0) < 0.01
    assert abs(float((mask == 0).double().mean()) - 0.3) < 0.005
