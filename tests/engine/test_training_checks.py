"""Stacked forms are checked in training mode, and fall back when training fails.

Layers here behave differently in training: operations over the batch axis, noise
drawn in place, code that only some forms can run. The reference is always the
sequential engine, which trains each member alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.engine import GroupingError, check_grouped, group_modules, stack_members

ATOL = 1e-5
RTOL = 1e-4


# --------------------------------------------------------- training-only batch operations
class BatchCentre(nn.Module):
    """Subtracts the batch mean, in training only (parameter-free)."""

    def forward(self, x):
        return x - x.mean(0, keepdim=True) if self.training else x


class BatchSizeScale(nn.Module):
    """Scales by a function of the batch size, in training only."""

    def forward(self, x):
        return x * (4.0 / x.shape[0]) ** 0.5 if self.training else x


class BatchStandardise(nn.Module):
    """BatchNorm without parameters or running statistics: batch statistics in training."""

    def forward(self, x):
        if not self.training:
            return x
        mean = x.mean(0, keepdim=True)
        var = x.var(0, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5)


class AffineBatchNorm(nn.Module):
    """A hand-written BatchNorm with a learned scale and shift (no running statistics)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))
        self.beta = nn.Parameter(torch.zeros(width))

    def forward(self, x):
        if self.training:
            x = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
        return x * self.gamma + self.beta


class RunningBatchNorm(nn.Module):
    """A hand-written BatchNorm keeping a running mean in a buffer."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(width))

    def forward(self, x):
        if self.training:
            mean = x.mean(0)
            with torch.no_grad():
                self.running_mean.mul_(0.9).add_(0.1 * mean)
            return x - mean
        return x - self.running_mean


def _tabular_net(layer_factory):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(6, 16)
            self.mid = layer_factory(16)
            self.fc2 = nn.Linear(16, 3)

        def forward(self, x):
            return self.fc2(F.relu(self.mid(self.fc1(x))))

    Net.__name__ = f"Net_{layer_factory.__name__}"
    return Net


class ConvBatchCentre(nn.Module):
    """Images: conv, a training-only per-batch centring over (batch, height, width), linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = self.conv(x)
        if self.training:
            h = h - h.mean(dim=(0, 2, 3), keepdim=True) * (h.shape[0] / 8)
        return self.fc(torch.flatten(F.relu(h), 1))


class ConvChannelCentre(ConvBatchCentre):
    """Images: centring over each sample's channels, in training only (mixes members)."""

    def forward(self, x):
        h = self.conv(x)
        if self.training:
            h = h - h.mean(dim=1, keepdim=True)
        return self.fc(torch.flatten(F.relu(h), 1))


def _centre(width):
    return BatchCentre()


def _scale(width):
    return BatchSizeScale()


def _standardise(width):
    return BatchStandardise()


BATCH_LAYERS = {
    "centre": _tabular_net(_centre),
    "batch_size_scale": _tabular_net(_scale),
    "standardise": _tabular_net(_standardise),
    "affine_batchnorm": _tabular_net(AffineBatchNorm),
    "running_batchnorm": _tabular_net(RunningBatchNorm),
}


def _fit(X, y, module, engine, **params):
    defaults = dict(n_estimators=3, max_epochs=2, batch_size=32, lr=1e-2, random_state=0,
                    device="cpu", optimizer=torch.optim.SGD)
    return DeepEnsembleClassifier(module, engine=engine, **{**defaults, **params}).fit(X, y)


@pytest.mark.parametrize("name", sorted(BATCH_LAYERS))
def test_training_only_batch_operations_match_the_sequential_engine(tabular, name):
    X, y = tabular
    module = BATCH_LAYERS[name]
    seq = _fit(X, y, module, "sequential")
    auto = _fit(X, y, module, "auto")
    assert not auto.engine_reason_.startswith("grouped")
    np.testing.assert_allclose(auto.predict_member_proba(X), seq.predict_member_proba(X),
                               rtol=RTOL, atol=ATOL)
    # The operation changes training: without it the members would be other ones.
    plain = _fit(X, y, _tabular_net(lambda width: nn.Identity()), "sequential")
    assert np.abs(plain.predict_member_proba(X) - seq.predict_member_proba(X)).max() > 1e-3


@pytest.mark.parametrize("module, grouped", [(ConvBatchCentre, True),
                                             (ConvChannelCentre, False)])
def test_image_batch_operations_match_the_sequential_engine(images, module, grouped):
    # Per-channel batch statistics act per member in the channel-grouped layout, so
    # they may stay grouped; a mean over channels mixes members and must not.
    X, y = images
    seq = _fit(X, y, module, "sequential", batch_size=16)
    auto = _fit(X, y, module, "auto", batch_size=16)
    assert auto.engine_ == "vectorized"
    assert auto.engine_reason_.startswith("grouped") is grouped
    np.testing.assert_allclose(auto.predict_member_proba(X), seq.predict_member_proba(X),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["centre", "batch_size_scale", "standardise"])
def test_evaluation_check_alone_misses_what_the_training_check_finds(name):
    torch.manual_seed(0)
    members = [BATCH_LAYERS[name]() for _ in range(2)]
    grouped = group_modules(members)
    check_grouped(grouped, members, (6,))  # identical in evaluation mode
    with pytest.raises(GroupingError, match="training mode"):
        check_grouped(grouped, members, (6,), training=True)
    # The members are left as they were (the check trains copies).
    assert all(m.training for m in members)
    assert all(p.grad is None for m in members for p in m.parameters())


def test_batchnorm_running_statistics_pass_the_training_check():
    torch.manual_seed(0)
    members = [nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
               for _ in range(3)]
    before = [m[1].running_mean.clone() for m in members]
    _, form = stack_members(members, (6,), training=True)
    assert form == "grouped"
    for m, mean in zip(members, before):
        torch.testing.assert_close(m[1].running_mean, mean)


# --------------------------------------------------------- failures during training
class InPlaceNoise(nn.Module):
    """In-place noise added to activations in training: vmap's 'different' mode refuses it."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, x):
        return x + 0.3 * torch.empty(self.width).normal_() if self.training else x


class ScaledNet(nn.Module):
    """Own feature scaling (cannot be grouped) around an arbitrary middle layer."""

    middle: type[nn.Module] = nn.Identity

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(6))
        self.fc1 = nn.Linear(6, 16)
        self.mid = self.middle()
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.mid(self.fc1(x * self.scale))))


class ScaledInPlaceNoise(ScaledNet):
    def __init__(self) -> None:
        super().__init__()
        self.mid = InPlaceNoise(16)


class DataDependentInTraining(nn.Module):
    """Reads a value back (``.item()``) on full batches in training: vmap cannot."""

    def forward(self, x):
        if self.training and x.shape[0] > 8:
            return x / max(1.0, float(x.detach().abs().max()))
        return x


class ScaledDataDependent(ScaledNet):
    middle = DataDependentInTraining


class LayoutDependentInTraining(nn.Module):
    """Refuses the member-first layout of full batches in training (grouped fails late)."""

    def forward(self, x):
        if self.training and x.dim() == 3 and x.shape[1] > 8:
            raise RuntimeError("this layer needs (batch, features) inputs")
        return x


class LinearLayoutDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.mid = LayoutDependentInTraining()
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.mid(self.fc1(x))))


@pytest.mark.parametrize("module", [_tabular_net(InPlaceNoise), ScaledInPlaceNoise])
def test_in_place_noise_in_training_falls_back_instead_of_crashing(tabular, module):
    X, y = tabular
    seq = _fit(X, y, module, "sequential")
    auto = _fit(X, y, module, "auto")
    assert auto.engine_ == "vectorized"
    assert auto.engine_reason_.startswith("vmap") and "random" in auto.engine_reason_
    np.testing.assert_allclose(auto.predict_member_proba(X), seq.predict_member_proba(X),
                               rtol=RTOL, atol=ATOL)


def test_vmap_failure_in_training_falls_back_to_sequential(tabular):
    # The probe's small batch passes; the first full batch fails under vmap.
    X, y = tabular
    seq = _fit(X, y, ScaledDataDependent, "sequential")
    auto = _fit(X, y, ScaledDataDependent, "auto")
    assert auto.engine_ == "sequential"
    assert "failed in training" in auto.engine_reason_
    assert "item" in auto.engine_reason_ or "vmap" in auto.engine_reason_
    np.testing.assert_allclose(auto.predict_member_proba(X), seq.predict_member_proba(X),
                               rtol=1e-6, atol=1e-7)
    for a, b in zip(auto.estimators_, seq.estimators_):
        assert len(a.history) == len(b.history) == 2
    with pytest.raises(ValueError, match="engine='vectorized' cannot train"):
        _fit(X, y, ScaledDataDependent, "vectorized")


def test_grouped_failure_in_training_falls_back_to_vmap(tabular):
    X, y = tabular
    seq = _fit(X, y, LinearLayoutDependent, "sequential")
    auto = _fit(X, y, LinearLayoutDependent, "auto")
    assert auto.engine_ == "vectorized"
    assert auto.engine_reason_.startswith("vmap (the grouped form failed in training")
    np.testing.assert_allclose(auto.predict_member_proba(X), seq.predict_member_proba(X),
                               rtol=RTOL, atol=ATOL)
