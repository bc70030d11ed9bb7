"""Networks: MLP, SmallCNN, MediumCNN and ResNet20v1.

All networks take ``num_classes`` and return logits. The convolutional networks take images
``(N, C, H, W)`` and accept ``in_channels`` and ``input_size`` (the side of square inputs,
default 32), so that, e.g., 8x8 grey-scale digits work as well as CIFAR images. Networks
whose initialisation differs from PyTorch's layer defaults expose ``reset_parameters()``,
which re-draws all parameters from torch's global RNG.
"""

from ._cnn import MediumCNN, SmallCNN
from ._mlp import MLP
from ._registry import MODELS, get_model
from ._resnet import ResNet20v1

__all__ = ["MLP", "MODELS", "MediumCNN", "ResNet20v1", "SmallCNN", "get_model"]
