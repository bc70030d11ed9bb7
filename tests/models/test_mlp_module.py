"""The existing MLP keeps its signature and behaviour."""

from __future__ import annotations

import torch
from torch import nn

from ensemblekit.models import MLP


def test_shapes_and_flattening():
    net = MLP(in_features=64, num_classes=10, hidden_layer_sizes=(32, 16))
    assert net(torch.zeros(5, 1, 8, 8)).shape == (5, 10)
    widths = [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)]
    assert widths == [(64, 32), (32, 16), (16, 10)]


def test_dropout_only_when_positive():
    assert not any(isinstance(m, nn.Dropout) for m in MLP(4, 2).modules())
    drops = [m for m in MLP(4, 2, (8, 8), dropout=0.3).modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.3, 0.3]


def test_default_parameter_count():
    # sklearn's MLPClassifier default: one hidden layer of 100 units.
    assert sum(p.numel() for p in MLP(20, 3).parameters()) == 20 * 100 + 100 + 100 * 3 + 3
