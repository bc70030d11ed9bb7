"""Recomputing BatchNorm statistics for networks whose weights were sampled."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..engine._grouped import GroupedBatchNorm
from ..engine._layout import Layout, resolve_layout


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
    r"""Replace every BatchNorm layer's running statistics by those of the data ``X``.

    The running statistics of a network whose weights were sampled (or averaged)
    describe *another* network; this recomputes them for ``module``'s own weights.
    The result is defined as the statistics of **one training-mode forward pass of
    all rows of** ``X`` in which only the BatchNorm layers train (dropout and
    everything else stay in evaluation mode): for each BatchNorm layer, with
    :math:`x` its input and :math:`n` the number of values per channel (rows times
    spatial positions; BatchNorm1d on ``(N, C)`` or ``(N, C, L)``, BatchNorm2d/3d
    over the batch and spatial axes),

    .. math::

        \mu_c = \frac1n \sum x_c, \qquad
        \mathrm{running\_var}_c = \frac{1}{n-1} \sum (x_c - \mu_c)^2,

    where every earlier layer normalises with the full-data mean and *biased*
    variance, as training mode does (:class:`torch.nn.BatchNorm1d`).

    The result does not depend on ``batch_size``, which only bounds the rows of one
    forward pass. When all rows fit in one pass, that pass is run in training mode.
    Otherwise the layers are fixed one at a time in forward order: for each layer,
    every chunk is run up to that layer (the earlier layers already holding their
    full-data statistics, in evaluation mode) and per-channel counts, means and sums
    of squared deviations are merged over the chunks in float64 (Chan, Golub and
    LeVeque's pairwise update). A chunk may hold a single row. This costs about
    half as many passes over ``X`` as there are BatchNorm layers (one pass when all
    rows fit in one chunk, the default in the estimators). The modes and
    momenta of all layers are restored afterwards; the weights are untouched and
    ``num_batches_tracked`` is set to 1.

    Parameters
    ----------
    module : torch.nn.Module
        Network to update in place. Each BatchNorm layer must be applied at most
        once per forward pass.
    X : ndarray or torch.Tensor of shape (n_rows, ...)
        Refresh inputs (a subset of the training data).
    batch_size : int
        Most rows per forward pass, at least 1.

    Returns
    -------
    updated : bool
        False when the network has no BatchNorm layer (nothing was run).

    Raises
    ------
    ValueError
        If ``X`` is empty, ``batch_size < 1``, a BatchNorm layer sees a single value
        per channel over all of ``X`` (its unbiased variance is undefined), or a
        BatchNorm layer is applied more than once in a forward pass.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 1))
    >>> X = torch.randn(10, 2)
    >>> refresh_batchnorm(net, X, batch_size=3)
    True
    >>> h = net[0](X).detach()
    >>> torch.allclose(net[1].running_mean, h.mean(0), atol=1e-6)
    True
    >>> torch.allclose(net[1].running_var, h.var(0), atol=1e-6)  # unbiased, all rows
    True
    """
    layers = batchnorm_layers(module)
    if not layers:
        return False
    n_rows = len(X)
    if n_rows < 1:
        raise ValueError("refresh_batchnorm needs at least one row of data.")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    batch_size = int(batch_size)
    modes = {layer: layer.training for layer in module.modules()}
    momenta = {layer: layer.momentum for layer in layers}
    device = next(module.parameters(), layers[0].running_mean).device
    try:
        module.eval()
        for layer in layers:
            layer.reset_running_stats()
        with torch.no_grad():
            if n_rows <= batch_size:
                _one_pass(module, layers, torch.as_tensor(X, device=device))
            else:
                _layer_by_layer(module, layers, X, batch_size, device)
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        for layer, training in modes.items():
            layer.train(training)
    return True


class _Stop(Exception):
    """Ends a forward pass once the layer being refreshed has seen its input."""


def _values_per_channel(layer: _BatchNorm, x: torch.Tensor) -> int:
    return x.numel() // max(1, layer.num_features)


def _channels_first(layer: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """The layer's input with its channel axis second, ``(N, C, ...)``.

    A grouped layer fed member-first features ``(M, B, F)`` normalises them as the
    channel-grouped ``(B, M * F)`` (see :class:`~ensemblekit.engine.GroupedNetwork`).
    """
    if (isinstance(layer, GroupedBatchNorm) and x.dim() == 3
            and resolve_layout(x, layer.ctx) is Layout.MEMBER_FIRST):
        m, b, f = x.shape
        return x.transpose(0, 1).reshape(b, m * f)
    return x


def _check_once(layer: _BatchNorm, calls: dict[nn.Module, int]) -> None:
    calls[layer] = calls.get(layer, 0) + 1
    if calls[layer] > 1:
        raise ValueError(
            f"{layer!r} is applied more than once per forward pass; refreshing its "
            "statistics needs every BatchNorm layer to be applied once."
        )


def _check_values(layer: _BatchNorm, n_values: int, shape: tuple[int, ...]) -> None:
    if n_values < 2:
        raise ValueError(
            f"Refreshing {layer!r} needs more than one value per channel over all refresh "
            f"rows (its unbiased variance), got input of shape {shape} in all; use more "
            "refresh rows (bn_update_size)."
        )


def _one_pass(module: nn.Module, layers: list[_BatchNorm], X: torch.Tensor) -> None:
    # All rows in one training-mode pass: torch computes exactly the definition.
    calls: dict[nn.Module, int] = {}

    def hook(layer: Any, inputs: tuple[torch.Tensor, ...]) -> None:
        _check_once(layer, calls)
        x = inputs[0]
        _check_values(layer, _values_per_channel(layer, x), tuple(x.shape))

    handles = [layer.register_forward_pre_hook(hook) for layer in layers]
    try:
        for layer in layers:
            layer.momentum = None  # cumulative average: one batch gives its statistics
            layer.train()
        module(X)
    finally:
        for handle in handles:
            handle.remove()
    for layer in layers:
        layer.eval()
        if layer.num_batches_tracked is not None:
            layer.num_batches_tracked.fill_(1)


def _order_error() -> ValueError:
    return ValueError(
        "The BatchNorm layers a forward pass reaches, or their order, change with the "
        "input; their statistics cannot be refreshed chunk by chunk. Use a batch size of "
        "at least the number of refresh rows."
    )


class _Moments:
    """Per-channel count, mean and sum of squared deviations, merged chunk by chunk."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None
        self.shape: tuple[int, ...] = ()

    def add(self, layer: _BatchNorm, x: torch.Tensor) -> None:
        if x.device.type == "mps":  # no float64 there
            x = x.cpu()
        channels = x.shape[1]
        values = x.detach().to(torch.float64).transpose(0, 1).reshape(channels, -1)
        n_b = values.shape[1]
        mean_b = values.mean(dim=1)
        m2_b = ((values - mean_b[:, None]) ** 2).sum(dim=1)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            self.shape = tuple(x.shape)
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n
        self.shape = (self.shape[0] + x.shape[0], *self.shape[1:])


def _layer_by_layer(
    module: nn.Module,
    layers: list[_BatchNorm],
    X: np.ndarray | torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> None:
    # BatchNorm layers are all in evaluation mode here. Each round fixes the first
    # layer of the forward pass whose statistics are still unknown: every chunk runs
    # up to that layer, whose input moments are merged; the earlier layers normalise
    # with their full-data mean and biased variance, as in one training-mode pass.
    fixed: dict[nn.Module, _Moments] = {}
    while True:
        state: dict[str, Any] = {"target": None, "moments": _Moments(), "calls": {}}

        def hook(layer: Any, inputs: tuple[torch.Tensor, ...], state: dict = state) -> None:
            _check_once(layer, state["calls"])
            if layer in fixed:
                return
            x = _channels_first(layer, inputs[0])
            if x.ndim < 2 or x.shape[1] != layer.num_features:
                return  # the layer raises its own error on this input
            if state["target"] is None:
                state["target"] = layer
            elif layer is not state["target"]:
                raise _order_error()
            state["moments"].add(layer, x)
            raise _Stop

        handles = [layer.register_forward_pre_hook(hook) for layer in layers]
        try:
            for start in range(0, len(X), batch_size):
                state["calls"] = {}
                xb = torch.as_tensor(X[start : start + batch_size], device=device)
                try:
                    module(xb)
                except _Stop:
                    continue
                if state["target"] is not None:
                    raise _order_error()
                # A complete pass: no layer is left to fix (unused layers stay reset).
                break
        finally:
            for handle in handles:
                handle.remove()
        target = state["target"]
        if target is None:
            break
        moments = state["moments"]
        _check_values(target, moments.n, moments.shape)
        target.running_mean.copy_(moments.mean)
        target.running_var.copy_(moments.m2 / moments.n)  # biased: used to normalise
        fixed[target] = moments
    for layer, moments in fixed.items():
        layer.running_var.copy_(moments.m2 / (moments.n - 1))
    for layer in layers:
        if layer.num_batches_tracked is not None:
            layer.num_batches_tracked.fill_(1)
