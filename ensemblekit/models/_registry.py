"""Look up a network class by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from torch import nn

from ._cnn import MediumCNN, SmallCNN
from ._mlp import MLP
from ._resnet import ResNet20v1

__all__ = ["MODELS", "get_model"]

#: Read-only mapping from canonical name to network class.
MODELS: Mapping[str, type[nn.Module]] = MappingProxyType(
    {"MLP": MLP, "SmallCNN": SmallCNN, "MediumCNN": MediumCNN, "ResNet20v1": ResNet20v1}
)


def _normalise(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def get_model(name: str, **params: Any) -> nn.Module:
    """Build a network by name.

    Parameters
    ----------
    name : {"MLP", "SmallCNN", "MediumCNN", "ResNet20v1"}
        Name of the network. Case, underscores and hyphens are ignored, so ``"smallcnn"``,
        ``"small_cnn"`` and ``"SmallCNN"`` are the same.
    **params
        Constructor parameters of the network, e.g. ``num_classes`` or ``dropout``.

    Returns
    -------
    module : torch.nn.Module
        A freshly initialised network.

    Raises
    ------
    ValueError
        If ``name`` is not a known network; the message lists the valid names.

    Examples
    --------
    >>> net = get_model("resnet20v1", num_classes=100)
    >>> type(net).__name__, net.classifier.out_features
    ('ResNet20v1', 100)
    >>> get_model("small_cnn", in_channels=1, input_size=8).classifier.in_features
    32
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, got {type(name).__name__}.")
    lookup = {_normalise(key): cls for key, cls in MODELS.items()}
    cls = lookup.get(_normalise(name))
    if cls is None:
        raise ValueError(f"Unknown model {name!r}; valid names are {', '.join(MODELS)}.")
    return cls(**params)
