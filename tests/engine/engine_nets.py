"""Small networks shared by the engine tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBNNet(nn.Module):
    """Conv -> BatchNorm2d -> residual block (custom forward) -> pool -> BatchNorm1d -> Linear."""

    def __init__(self, num_classes: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(4, momentum=None)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.bn3 = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x)))
        h = F.relu(h + self.bn2(self.conv2(h)))
        return self.fc(self.bn3(self.flatten(self.pool(h))))
