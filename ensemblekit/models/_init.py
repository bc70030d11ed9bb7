"""Initialisers that follow TensorFlow/Keras fan conventions.

PyTorch's :func:`torch.nn.init.xavier_uniform_` computes fans from PyTorch's weight layout;
the networks here were defined in TensorFlow, where the fans of a variable of shape
``(d_1, ..., d_k)`` are (``tf.contrib.layers.variance_scaling_initializer`` and
``keras.initializers`` agree)::

    receptive = d_1 * ... * d_{k-2}
    fan_in  = d_{k-1} * receptive   (d_k when k == 1)
    fan_out = d_k     * receptive

For kernels this agrees with PyTorch's layout. Biases are where the conventions matter: the
paper's convolution biases have TensorFlow shape ``[1, 1, C]`` and the dense bias ``[1, K]``,
so their fans are ``(1, C)`` and ``(1, K)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def tf_fans(shape: Sequence[int]) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a TensorFlow variable of the given shape.

    Parameters
    ----------
    shape : sequence of int
        TensorFlow shape of the variable (kernels are ``[kh, kw, in, out]``, dense weights
        ``[in, out]``).

    Returns
    -------
    fan_in, fan_out : int
        The fans used by TensorFlow's variance-scaling initialisers.

    Examples
    --------
    >>> tf_fans([3, 3, 3, 64])
    (27, 576)
    >>> tf_fans([1, 1, 64])
    (1, 64)
    >>> tf_fans([1, 10])
    (1, 10)
    """
    shape = [int(d) for d in shape]
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_limit(tf_shape: Sequence[int]) -> float:
    """Bound ``sqrt(6 / (fan_in + fan_out))`` of Glorot-uniform for a TensorFlow shape.

    Examples
    --------
    >>> round(glorot_limit([1, 10]), 6)  # the paper's dense bias: sqrt(6 / 11)
    0.738549
    """
    fan_in, fan_out = tf_fans(tf_shape)
    return math.sqrt(6.0 / (fan_in + fan_out))


@torch.no_grad()
def glorot_uniform_(tensor: Tensor, tf_shape: Sequence[int]) -> Tensor:
    """Fill ``tensor`` in place from U(-a, a) with the Glorot bound of ``tf_shape``."""
    limit = glorot_limit(tf_shape)
    return tensor.uniform_(-limit, limit)


@torch.no_grad()
def he_normal_(tensor: Tensor, fan_in: int) -> Tensor:
    """Fill ``tensor`` in place with Keras ``he_normal``.

    A normal truncated at two standard deviations whose *variance after truncation* is
    ``2 / fan_in`` (the current Keras definition; the untruncated standard deviation is
    ``sqrt(2 / fan_in) / 0.87962566103423978``).
    """
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    return torch.nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
