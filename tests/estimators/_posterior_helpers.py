"""Small modules and callbacks shared by the posterior estimator tests."""

from __future__ import annotations

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
