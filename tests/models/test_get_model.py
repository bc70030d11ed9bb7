"""The name -> network lookup."""

from __future__ import annotations

import pytest
from torch import nn

from ensemblekit.models import MLP, MODELS, MediumCNN, ResNet20v1, SmallCNN, get_model


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("MLP", MLP),
        ("smallcnn", SmallCNN),
        ("SMALLCNN", SmallCNN),
        ("small_cnn", SmallCNN),
        ("MediumCNN", MediumCNN),
        ("medium-cnn", MediumCNN),
        ("resnet20v1", ResNet20v1),
        ("ResNet20V1", ResNet20v1),
    ],
)
def test_lookup_is_case_insensitive(name, cls):
    params = {"in_features": 4, "num_classes": 3} if cls is MLP else {"num_classes": 3}
    net = get_model(name, **params)
    assert type(net) is cls


def test_params_are_forwarded():
    net = get_model("MediumCNN", num_classes=100, dropout=0.0, in_channels=1, input_size=8)
    assert net.classifier.out_features == 100
    assert net.classifier.in_features == 256
    assert all(m.p == 0.0 for m in net.modules() if isinstance(m, nn.Dropout))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="resnet18") as info:
        get_model("resnet18")
    for name in ("MLP", "SmallCNN", "MediumCNN", "ResNet20v1"):
        assert name in str(info.value)


def test_non_string_name():
    with pytest.raises(ValueError, match="string"):
        get_model(SmallCNN)


def test_unknown_parameter_is_a_type_error():
    with pytest.raises(TypeError):
        get_model("SmallCNN", widht=3)


def test_registry_is_read_only():
    assert set(MODELS) == {"MLP", "SmallCNN", "MediumCNN", "ResNet20v1"}
    with pytest.raises(TypeError):
        MODELS["x"] = MLP
