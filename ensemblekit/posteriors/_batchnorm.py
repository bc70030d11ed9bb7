"""Recomputing BatchNorm statistics for networks whose weights were sampled."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(module: nn.Module) -> list[_BatchNorm]:
    """BatchNorm layers of ``module`` that keep running statistics.

    Parameters
    ----------
    module : torch.nn.Module
        Any network.

    Returns
    -------
    list of torch.nn.modules.batchnorm._BatchNorm
        The layers, in module order.

    Examples
    --------
    >>> from torch import nn
    >>> len(batchnorm_layers(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))))
    1
    """
    return [
        layer
        for layer in module.modules()
        if isinstance(layer, _BatchNorm) and layer.track_running_stats
    ]


def refresh_batchnorm(module: nn.Module, X: np.ndarray | torch.Tensor, batch_size: int) -> bool:
    """Replace every BatchNorm layer's running statistics by those of the data ``X``.

    The running statistics of a network whose weights were sampled (or averaged)
    describe *another* network; this recomputes them for ``module``'s own weights.
    Only the BatchNorm layers are put in training mode (dropout and everything else
    stay in evaluation mode) and the statistics are reset and accumulated as a
    cumulative average (``momentum=None``) over chunks of ``batch_size`` rows. With
    ``len(X) <= batch_size`` there is one chunk, and each layer's running mean and
    variance are exactly the mean and unbiased variance of its inputs over ``X``,
    where each earlier layer normalises with those same batch statistics (training-mode
    normalisation). The modes and momenta of all layers are restored afterwards; the
    weights are untouched.

    Parameters
    ----------
    module : torch.nn.Module
        Network to update in place.
    X : ndarray or torch.Tensor of shape (n_rows, ...)
        Refresh inputs (a subset of the training data).
    batch_size : int
        Rows per forward pass.

    Returns
    -------
    updated : bool
        False when the network has no BatchNorm layer (nothing was run).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    >>> refresh_batchnorm(net, torch.randn(16, 2), batch_size=16)
    True
    """
    layers = batchnorm_layers(module)
    if not layers:
        return False
    if len(X) < 1:
        raise ValueError("refresh_batchnorm needs at least one row of data.")
    modes = {layer: layer.training for layer in module.modules()}
    momenta = {layer: layer.momentum for layer in layers}
    device = next(module.parameters()).device
    try:
        module.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
            layer.train()
        with torch.no_grad():
            for start in range(0, len(X), batch_size):
                xb = torch.as_tensor(X[start : start + batch_size], device=device)
                module(xb)
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        for layer, training in modes.items():
            layer.train(training)
    return True
