"""BatchNorm refresh of many samples in grouped passes equals refreshing each alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ensemblekit.models import ResNet20v1
from ensemblekit.posteriors import (
    flatten_parameters,
    refresh_batchnorm,
    sampled_network,
    sampled_networks,
)
from ensemblekit.posteriors._grouped_refresh import refresh_batchnorm_grouped

N_ROWS = 41


def _mlp_bn1d() -> nn.Module:
    # BatchNorm1d on (N, F), dropout (must stay off), two BatchNorm layers.
    return nn.Sequential(
        nn.Flatten(), nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(8, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3),
    )


def _cnn_bn2d() -> nn.Module:
    # SmallCNN's conv-pool blocks with BatchNorm2d, then BatchNorm1d on the dense features.
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.3), nn.MaxPool2d(2),
        nn.ReLU(), nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6), nn.Flatten(), nn.Linear(6, 5),
        nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3),
    )


def _resnet() -> nn.Module:
    # Residual blocks, 19 BatchNorm2d layers, a custom forward.
    return ResNet20v1(num_classes=3, in_channels=2, input_size=6)


def _sequence_bn1d() -> nn.Module:
    # BatchNorm1d on (N, C, L) sequences.
    return nn.Sequential(
        nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3),
    )


def _bn3d() -> nn.Module:
    # BatchNorm3d has no grouped form.
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3)
            self.bn3 = nn.BatchNorm3d(2)
            self.head = nn.Linear(64, 3)

        def forward(self, x):
            h = self.conv(x).reshape(-1, 2, 2, 4, 4)
            return self.head(self.bn3(h + 1.0).flatten(1))

    return Net()


def _prelu() -> nn.Module:
    # PReLU shares its slope across channels: refused by the grouped form.
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.BatchNorm1d(8), nn.PReLU(),
                         nn.Linear(8, 3))


def _bn_subclass() -> nn.Module:
    # A subclass of a registered layer is not that layer: no grouped form.
    class MyBatchNorm(nn.BatchNorm1d):
        pass

    return nn.Sequential(nn.Flatten(), nn.Linear(6, 8), MyBatchNorm(8), nn.ReLU(),
                         nn.Linear(8, 3))


def _data(shape: tuple[int, ...], seed: int = 2) -> np.ndarray:
    # An offset and unequal rows, so that chunk means differ (as in the refresh tests).
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.2, 3, N_ROWS).reshape(-1, *[1] * len(shape))
    offset = np.linspace(-2, 2, N_ROWS).reshape(-1, *[1] * len(shape))
    return (rng.normal(size=(N_ROWS, *shape)) * scale + offset).astype(np.float32)


def _template_and_thetas(make_net, n_samples: int) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    template = make_net()
    for layer in template.modules():  # stale statistics, as after sampling weights
        if isinstance(layer, _BatchNorm):
            layer.running_mean.fill_(3.0)
            layer.running_var.fill_(5.0)
    template.eval()
    theta = flatten_parameters(template)
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(n_samples, theta.numel(), generator=gen)
    return template, theta + 0.2 * theta.abs().mean() * noise


def _statistics(net: nn.Module) -> list[torch.Tensor]:
    return [t for layer in net.modules() if isinstance(layer, _BatchNorm)
            for t in (layer.running_mean, layer.running_var)]


def _full_batch_reference(template: nn.Module, theta: torch.Tensor,
                          X: np.ndarray) -> list[torch.Tensor]:
    # The definition: one training-mode pass over all rows in float64, only the
    # BatchNorm layers training, cumulative-average momentum, by torch's own layers.
    ref = copy.deepcopy(template)
    torch.nn.utils.vector_to_parameters(theta, ref.parameters())
    ref = ref.double().eval()
    for layer in ref.modules():
        if isinstance(layer, _BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None
            layer.train()
    with torch.no_grad():
        ref(torch.as_tensor(X, dtype=torch.float64))
    return _statistics(ref)


def _assert_close(got: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    scale = max(1.0, float(expected.abs().max()))
    np.testing.assert_allclose(got.double().numpy(), expected.double().numpy(), rtol=rtol,
                               atol=rtol * scale)


def _record_batch_sizes(template: nn.Module) -> list[int]:
    # Rows each BatchNorm layer of the template's copies is applied to (hooks are
    # copied with the template): a grouped refresh never runs the copies on the rows.
    sizes: list[int] = []
    for layer in template.modules():
        if isinstance(layer, _BatchNorm):
            layer.register_forward_pre_hook(lambda mod, inputs: sizes.append(len(inputs[0])))
    return sizes


@pytest.mark.parametrize("make_net,shape,batch_size,per_pass", [
    # Every batch size chunks differently (one pass, chunks of several rows, of one
    # row); 6 samples go as 6, 3 + 3 or 2 + 2 + 2 networks per pass.
    *[(make_net, shape, batch_size, per_pass)
      for make_net, shape in [(_mlp_bn1d, (6,)), (_cnn_bn2d, (2, 6, 6))]
      for batch_size, per_pass in [(N_ROWS, None), (7, 2), (1, 4), (100, 5)]],
    (_resnet, (2, 6, 6), N_ROWS, None), (_resnet, (2, 6, 6), 21, 4),
    (_sequence_bn1d, (2, 6), 100, None), (_sequence_bn1d, (2, 6), 3, 4),
])
def test_grouped_refresh_equals_each_sample_alone(make_net, shape, batch_size, per_pass):
    n_samples = 6
    template, thetas = _template_and_thetas(make_net, n_samples)
    X = _data(shape)
    alone = [sampled_network(template, theta, X, batch_size) for theta in thetas]
    before = copy.deepcopy(template.state_dict())
    sizes = _record_batch_sizes(template)
    grouped = sampled_networks(template, thetas, X, batch_size, max_networks_per_pass=per_pass)
    assert min(batch_size, N_ROWS) not in sizes  # the rows went through grouped passes
    assert all(torch.equal(v, before[k]) for k, v in template.state_dict().items())
    x = torch.as_tensor(_data(shape, seed=9))
    for net, ref, theta in zip(grouped, alone, thetas):
        assert not net.training and not any(m.training for m in net.modules())
        assert torch.equal(flatten_parameters(net), theta)
        stats = _statistics(net)
        for got, exp in zip(stats, _statistics(ref)):
            _assert_close(got, exp, 1e-5)
        for got, exp in zip(stats, _full_batch_reference(template, theta, X)):
            _assert_close(got, exp, 1e-5)
        for layer in net.modules():
            if isinstance(layer, _BatchNorm):
                assert int(layer.num_batches_tracked) == 1 and layer.momentum == 0.1
        with torch.no_grad():
            _assert_close(net(x), ref(x), 1e-5)


@pytest.mark.parametrize("make_net,shape", [
    (_bn3d, (2, 6, 6)), (_prelu, (6,)), (_bn_subclass, (6,)),
])
@pytest.mark.parametrize("batch_size", [N_ROWS, 6])
def test_networks_without_grouped_form_fall_back_with_identical_results(make_net, shape,
                                                                          batch_size):
    template, thetas = _template_and_thetas(make_net, 4)
    X = _data(shape)
    alone = [sampled_network(template, theta, X, batch_size) for theta in thetas]
    sizes = _record_batch_sizes(template)
    grouped = sampled_networks(template, thetas, X, batch_size, max_networks_per_pass=None)
    assert min(batch_size, N_ROWS) in sizes  # refreshed one network at a time
    x = torch.as_tensor(_data(shape, seed=9))
    for net, ref in zip(grouped, alone):
        for got, exp in zip(net.state_dict().values(), ref.state_dict().values()):
            assert torch.equal(got, exp)
        assert not net.training
        with torch.no_grad():
            assert torch.equal(net(x), ref(x))


def test_mixed_architectures_and_networks_without_batchnorm():
    # Networks of two architectures, and one without BatchNorm, in one call: each gets
    # what refresh_batchnorm gives it alone.
    X = _data((6,))
    torch.manual_seed(3)
    nets = [_mlp_bn1d(), _prelu(), nn.Sequential(nn.Flatten(), nn.Linear(6, 3)), _mlp_bn1d()]
    alone = copy.deepcopy(nets)
    expected = [refresh_batchnorm(net, X, 9) for net in alone]
    assert refresh_batchnorm_grouped(nets, X, 9, max_networks_per_pass=None) == expected
    assert expected == [True, True, False, True]
    for net, ref in zip(nets, alone):
        for got, exp in zip(_statistics(net), _statistics(ref)):
            _assert_close(got, exp, 1e-5)


def test_grouped_refresh_keeps_errors_and_validates_its_argument():
    template, thetas = _template_and_thetas(_cnn_bn2d, 3)
    one_row = _data((2, 6, 6))[:1]
    for batch_size in (1, 8):
        with pytest.raises(ValueError, match="more than one value per channel"):
            sampled_networks(template, thetas, one_row, batch_size)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        sampled_networks(template, thetas, _data((2, 6, 6)), 0)
    for bad in (0, 1.5, True, "all"):
        with pytest.raises(ValueError, match="max_networks_per_pass must be 'auto', None or "
                                             "an integer >= 1"):
            sampled_networks(template, thetas, _data((2, 6, 6)), 8, max_networks_per_pass=bad)


def test_grouped_refresh_is_accurate_over_many_values_per_channel():
    # 256 rows of 32x32 maps: 262,144 values per channel, where a float32 running sum
    # in the wrong order loses digits. The result must keep the float64 definition's
    # accuracy as refreshing one network does.
    def make_net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                             nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))

    template, thetas = _template_and_thetas(make_net, 3)
    rng = np.random.default_rng(4)
    X = (rng.normal(size=(256, 1, 32, 32)) * 2.0 + 5.0).astype(np.float32)
    for net, theta in zip(sampled_networks(template, thetas, X, 256), thetas):
        for got, exp in zip(_statistics(net), _full_batch_reference(template, theta, X)):
            _assert_close(got, exp, 1e-6)


def test_default_on_the_cpu_refreshes_each_network_alone():
    # Grouping measured slower on the CPU: the default there is the one-network path,
    # bit for bit.
    template, thetas = _template_and_thetas(_cnn_bn2d, 3)
    X = _data((2, 6, 6))
    alone = [sampled_network(template, theta, X, 7) for theta in thetas]
    sizes = _record_batch_sizes(template)
    networks = sampled_networks(template, thetas, X, 7)
    assert 7 in sizes  # the networks themselves ran on chunks of the refresh rows
    for net, ref in zip(networks, alone):
        for got, exp in zip(net.state_dict().values(), ref.state_dict().values()):
            assert torch.equal(got, exp)
