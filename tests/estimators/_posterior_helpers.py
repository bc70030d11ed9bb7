"""Small modules and callbacks shared by the posterior estimator tests."""

from __future__ import annotations

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn


class Recorder(Callback):
    """Records the flat parameters and the learning rate at the end of every epoch."""

    def initialize(self):
        self.thetas = []
        self.lrs = []
        return self

    def on_epoch_end(self, net, **kwargs):
        vector = torch.nn.utils.parameters_to_vector(net.module_.parameters())
        self.thetas.append(vector.detach().double().cpu().clone())
        self.lrs.append(net.optimizer_.param_groups[0]["lr"])


class BNNet(nn.Module):
    """MLP with BatchNorm and dropout, for the refresh and MC dropout tests."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(16, num_classes),
        )

    def forward(self, x):
        return self.layers(x)


class NoDropoutNet(nn.Module):
    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.linear(x)


def recorder(net) -> Recorder:
    return dict(net.callbacks_)["Recorder"]


def bn_problem(n_rows: int, seed: int = 0):
    """A net Linear(4,8) -> BatchNorm1d(8) -> ReLU -> Linear(8,2) and ``n_rows`` of data.

    The features have an offset and unequal scales, so chunk statistics differ from
    the statistics of all rows.
    """
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n_rows, 4)) * [1.0, 2.0, 0.5, 3.0] + [1.0, -2.0, 0.0, 4.0])
    X = X.astype(np.float32)
    y = (X[:, 0] - 0.5 * X[:, 1] + rng.normal(scale=0.5, size=n_rows) > 2.0).astype(int)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    return net, X, y
