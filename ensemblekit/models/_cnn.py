"""The paper's plain convolutional networks: SmallCNN and MediumCNN.

Both come from one builder, a port of the function ``multilayer_CNN`` in the paper's released
notebook. Each block is::

    conv 3x3 (stride 1, SAME padding, with bias) -> dropout -> max-pool 2x2 (stride 2, SAME) -> ReLU

and the last block has no ReLU. The pooled feature map is flattened and fed to one dense layer
that returns logits. Every weight *and bias* is drawn from Glorot-uniform with TensorFlow's fan
conventions (see :mod:`ensemblekit.models._init`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ._init import glorot_uniform_

__all__ = ["MediumCNN", "SmallCNN"]


def _pooled_side(side: int, n_blocks: int) -> int:
    # TF SAME pooling with k=2, s=2 gives ceil(n / 2); nn.MaxPool2d(ceil_mode=True) agrees.
    for _ in range(n_blocks):
        side = math.ceil(side / 2)
    return side


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _check_dropout(dropout: float) -> float:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    return float(dropout)


class _ConvPoolNet(nn.Module):
    """Conv-dropout-pool-ReLU blocks followed by one dense layer (the notebook's builder)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        input_size: int,
        dropout: float,
        channels: Sequence[int],
    ) -> None:
        super().__init__()
        num_classes = _check_positive_int("num_classes", num_classes)
        in_channels = _check_positive_int("in_channels", in_channels)
        input_size = _check_positive_int("input_size", input_size)
        dropout = _check_dropout(dropout)
        channels = tuple(_check_positive_int("channels", c) for c in channels)
        if not channels:
            raise ValueError("channels must contain at least one block width.")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        self.dropout = dropout
        self.channels = channels

        layers: list[nn.Module] = []
        width = in_channels
        for i, out in enumerate(channels):
            layers += [
                nn.Conv2d(width, out, kernel_size=3, stride=1, padding=1, bias=True),
                nn.Dropout(dropout),
                nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True),
            ]
            if i < len(channels) - 1:
                layers.append(nn.ReLU())
            width = out
        self.features = nn.Sequential(*layers)
        side = _pooled_side(input_size, len(channels))
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(side * side * width, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw every weight and bias from Glorot-uniform (TensorFlow fans).

        Uses torch's global RNG, so a caller can make the draw reproducible with
        :func:`torch.random.fork_rng` and :func:`torch.manual_seed`.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                out, inp, kh, kw = module.weight.shape
                glorot_uniform_(module.weight, (kh, kw, inp, out))
                glorot_uniform_(module.bias, (1, 1, out))
            elif isinstance(module, nn.Linear):
                out, inp = module.weight.shape
                glorot_uniform_(module.weight, (inp, out))
                glorot_uniform_(module.bias, (1, out))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.features(x)))

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}"


class MediumCNN(_ConvPoolNet):
    """The paper's "Medium CNN": four conv blocks of widths (64, 128, 256, 256).

    An exact port of the released notebook's network. Each block is a 3x3 convolution with
    bias (stride 1, SAME padding), dropout, 2x2 max-pooling with stride 2 (TensorFlow SAME
    padding, reproduced by ``ceil_mode=True``) and a ReLU, except that the last block has no
    ReLU. The flattened feature map feeds one dense layer returning logits. For 32x32x3
    inputs and 10 classes the network has 971,146 parameters.

    The notebook feeds raw pixel values (0-255, no scaling); the network itself does not
    rescale its input.

    Parameters
    ----------
    num_classes : int, default=10
        Number of output logits.
    in_channels : int, default=3
        Number of input channels.
    input_size : int, default=32
        Side of the square input images; sizes the dense layer (each block halves the side,
        rounding up).
    dropout : float, default=0.1
        Dropout probability applied to each convolution's output before pooling (the
        notebook's training value; it is 0 at evaluation because ``eval()`` disables it).
        The dense layer has no dropout.
    channels : sequence of int, default=(64, 128, 256, 256)
        Width of each block.

    Notes
    -----
    *Initialisation.* All weights and all biases are drawn from U(-a, a) with
    ``a = sqrt(6 / (fan_in + fan_out))`` and TensorFlow's fans: a kernel ``[3, 3, C_in,
    C_out]`` has fans ``(9 C_in, 9 C_out)``; a convolution bias, of TensorFlow shape
    ``[1, 1, C]``, has fans ``(1, C)`` so ``a = sqrt(6 / (1 + C))``; the dense bias, shape
    ``[1, K]``, has ``a = sqrt(6 / (1 + K))``. Call :meth:`reset_parameters` to re-draw.

    *Porting weights.* A TensorFlow kernel ``k`` of shape ``[3, 3, C_in, C_out]`` becomes
    ``k.transpose(3, 2, 0, 1)`` (both frameworks compute cross-correlations), a bias
    ``[1, 1, C]`` becomes ``b.reshape(C)``. TensorFlow flattens the last feature map in NHWC
    order, PyTorch in NCHW order, so the dense weight ``d`` of shape ``[h*w*C, K]`` (``h``,
    ``w`` the final spatial sides) becomes
    ``d.reshape(h, w, C, K).transpose(2, 0, 1, 3).reshape(-1, K).T``.

    Examples
    --------
    >>> import torch
    >>> net = MediumCNN()
    >>> sum(p.numel() for p in net.parameters())
    971146
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> MediumCNN(in_channels=1, input_size=8)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        dropout: float = 0.1,
        channels: Sequence[int] = (64, 128, 256, 256),
    ) -> None:
        super().__init__(num_classes, in_channels, input_size, dropout, channels)


class SmallCNN(_ConvPoolNet):
    """The paper's small CNN: three conv blocks of widths (16, 32, 32).

    Built exactly like :class:`MediumCNN` (3x3 conv with bias, dropout, 2x2 max-pool, ReLU
    except after the last block, then one dense layer), with narrower and fewer blocks. For
    32x32x3 inputs and 10 classes it has 19,466 parameters: 448 + 4,640 + 9,248 for the
    convolutions and 4*4*32*10 + 10 = 5,130 for the dense layer.

    Parameters
    ----------
    num_classes : int, default=10
        Number of output logits.
    in_channels : int, default=3
        Number of input channels.
    input_size : int, default=32
        Side of the square input images; sizes the dense layer.
    dropout : float, default=0.1
        Dropout probability after each convolution, before pooling.
    channels : sequence of int, default=(16, 32, 32)
        Width of each block.

    Notes
    -----
    Initialisation is Glorot-uniform for all weights and biases with TensorFlow's fans, as
    in :class:`MediumCNN`.

    Examples
    --------
    >>> import torch
    >>> net = SmallCNN()
    >>> sum(p.numel() for p in net.parameters())
    19466
    >>> SmallCNN(in_channels=1, input_size=8)(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        dropout: float = 0.1,
        channels: Sequence[int] = (16, 32, 32),
    ) -> None:
        super().__init__(num_classes, in_channels, input_size, dropout, channels)
