"""ResNet20 v1 for CIFAR, as in the Keras ``cifar10_resnet`` example (``resnet_v1``)."""

from __future__ import annotations

from torch import Tensor, nn

from ._cnn import _check_dropout, _check_positive_int
from ._init import he_normal_

__all__ = ["ResNet20v1"]


class _BasicBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, add the shortcut, ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, momentum: float, eps: float
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum)
        # Keras resnet_v1 projects with a 1x1 convolution (with bias, no BatchNorm) where
        # the stage changes, and adds the identity elsewhere.
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride)
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(self.shortcut(x) + y)


class ResNet20v1(nn.Module):
    """ResNet v1 of depth 20 for 32x32 images (He et al. 2016, Keras CIFAR example).

    A 3x3 convolution with 16 filters, then three stages of three basic blocks with 16, 32 and
    64 filters; the first block of the second and third stages halves the spatial size with
    stride 2 and projects its shortcut with a 1x1 convolution. Every convolution has a bias
    (Keras' ``Conv2D`` default) and, except the projections, is followed by BatchNorm.
    Global average pooling and one dense layer return logits.

    Parameter counts, checked in the tests: 273,066 trainable parameters for 10 classes,
    plus 1,376 BatchNorm running statistics (274,442 in all, the Keras count); 280,292 in
    all for 100 classes.

    Parameters
    ----------
    num_classes : int, default=10
        Number of output logits.
    in_channels : int, default=3
        Number of input channels.
    input_size : int, default=32
        Side of the input images. Only validated: global average pooling makes the network
        independent of the input size (the Keras example's 8x8 average pool is global for
        32x32 inputs).
    dropout : float, default=0.0
        Dropout probability on the pooled features, before the dense layer. The Keras
        example has no dropout; a positive value allows MC dropout.
    bn_momentum : float, default=0.1
        BatchNorm running-statistics momentum in PyTorch's convention (PyTorch's default).
        Keras uses 0.99 in its convention, i.e. ``bn_momentum=0.01`` here; that value adapts
        the running statistics slowly and suits long runs only.
    bn_eps : float, default=1e-3
        BatchNorm epsilon (Keras' default).

    Notes
    -----
    *Initialisation* (:meth:`reset_parameters`): convolution kernels and the dense weight
    are Keras ``he_normal`` (a normal truncated at two standard deviations with variance
    ``2 / fan_in``), all biases are zero, BatchNorm scales one and shifts zero.

    *Padding.* Stride-2 3x3 convolutions pad one pixel on each side (PyTorch's convention).
    TensorFlow's SAME padding pads only bottom and right for even inputs, which shifts the
    sampling grid by one pixel; shapes and parameters are identical.

    *Regularisation.* The Keras example adds an L2 penalty ``1e-4 * sum(w**2)`` on
    convolution kernels; that belongs to the training loss, not to the module.

    Examples
    --------
    >>> import torch
    >>> net = ResNet20v1()
    >>> sum(p.numel() for p in net.parameters())
    273066
    >>> net.eval()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        dropout: float = 0.0,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.num_classes = _check_positive_int("num_classes", num_classes)
        self.in_channels = _check_positive_int("in_channels", in_channels)
        self.input_size = _check_positive_int("input_size", input_size)
        self.dropout = _check_dropout(dropout)
        if not 0.0 <= float(bn_momentum) <= 1.0:
            raise ValueError(f"bn_momentum must be in [0, 1], got {bn_momentum!r}.")
        if not float(bn_eps) > 0.0:
            raise ValueError(f"bn_eps must be positive, got {bn_eps!r}.")

        self.conv = nn.Conv2d(self.in_channels, 16, 3, stride=1, padding=1)
        self.bn = nn.BatchNorm2d(16, eps=bn_eps, momentum=bn_momentum)
        self.relu = nn.ReLU()
        blocks: list[nn.Module] = []
        width = 16
        for stage, filters in enumerate((16, 32, 64)):
            for block in range(3):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(_BasicBlock(width, filters, stride, bn_momentum, bn_eps))
                width = filters
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.drop = nn.Dropout(self.dropout)
        self.classifier = nn.Linear(width, self.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw all parameters: He-normal kernels, zero biases, BatchNorm reset.

        BatchNorm running statistics are reset as well. Uses torch's global RNG.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _, inp, kh, kw = module.weight.shape
                he_normal_(module.weight, fan_in=inp * kh * kw)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                he_normal_(module.weight, fan_in=module.in_features)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.relu(self.bn(self.conv(x))))
        return self.classifier(self.drop(self.flatten(self.pool(x))))
