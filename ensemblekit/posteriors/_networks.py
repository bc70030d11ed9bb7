"""Turning sampled parameter vectors into networks ready to predict."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from ._batchnorm import refresh_batchnorm
from ._grouped_refresh import refresh_batchnorm_grouped
from ._vector import assign_parameters


def refresh_rows(n_rows: int, max_rows: int | None, generator: torch.Generator) -> np.ndarray:
    """Choose the rows used to refresh BatchNorm statistics.

    All rows when ``max_rows`` is None or at least ``n_rows``; else ``max_rows``
    rows drawn without replacement.

    Parameters
    ----------
    n_rows : int
        Number of training rows available.
    max_rows : int or None
        Most rows to use; ``None`` means all.
    generator : torch.Generator
        Source of the draw.

    Returns
    -------
    ndarray of int64
        Sorted row indices.

    Examples
    --------
    >>> import torch
    >>> refresh_rows(5, None, torch.Generator()).tolist()
    [0, 1, 2, 3, 4]
    >>> len(refresh_rows(100, 10, torch.Generator().manual_seed(0)))
    10
    """
    if max_rows is None or max_rows >= n_rows:
        return np.arange(n_rows)
    rows = torch.randperm(n_rows, generator=generator)[:max_rows]
    return np.sort(rows.numpy())


def sampled_network(
    template: nn.Module,
    theta: torch.Tensor,
    X_refresh: np.ndarray | torch.Tensor,
    batch_size: int,
) -> nn.Module:
    """A copy of ``template`` holding the parameters ``theta``, BatchNorm refreshed.

    Parameters
    ----------
    template : torch.nn.Module
        Trained network; never modified.
    theta : torch.Tensor of shape (n_parameters,)
        Flat parameters, in the order of :func:`flatten_parameters`.
    X_refresh : ndarray or torch.Tensor of shape (n_rows, ...)
        Data whose statistics the BatchNorm layers take (see
        :func:`refresh_batchnorm`); unused by networks without BatchNorm.
    batch_size : int
        Rows per forward pass of the refresh.

    Returns
    -------
    network : torch.nn.Module
        In evaluation mode.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = sampled_network(nn.Linear(2, 1), torch.zeros(3), torch.zeros(4, 2), 4)
    >>> net.weight.abs().sum().item()
    0.0
    """
    network = copy.deepcopy(template)
    assign_parameters(network, theta)
    refresh_batchnorm(network, X_refresh, batch_size)
    return network.eval()


def sampled_networks(
    template: nn.Module,
    thetas: Iterable[torch.Tensor],
    X_refresh: np.ndarray | torch.Tensor,
    batch_size: int,
    *,
    max_networks_per_pass: int | str | None = "auto",
) -> list[nn.Module]:
    """Build a :func:`sampled_network` for each parameter vector.

    The networks are those :func:`sampled_network` builds one at a time. On an
    accelerator their BatchNorm statistics are refreshed several networks per
    forward pass, in the engine's grouped form (see
    :func:`~ensemblekit.posteriors._grouped_refresh.refresh_batchnorm_grouped`):
    the same statistics up to float32 rounding, in fewer, wider passes; networks
    the grouped form cannot represent are refreshed one at a time, as they are on
    the CPU by default (where grouping measured slower).

    Parameters
    ----------
    template : torch.nn.Module
        The trained network whose architecture the samples share; never modified.
    thetas : iterable of torch.Tensor of shape (n_parameters,)
        Flat parameter vectors (or the rows of a 2-d tensor).
    X_refresh : ndarray or torch.Tensor of shape (n_rows, ...)
        Rows on which BatchNorm statistics are recomputed for each sample.
    batch_size : int
        Rows per forward pass of the refresh (per network).
    max_networks_per_pass : int, None or "auto", default="auto"
        Most networks refreshed in one grouped pass (a pass holds that many
        networks' activations); ``None``: all of them; ``"auto"``: 8 on an
        accelerator, 1 (each network alone) on the CPU.

    Returns
    -------
    list of torch.nn.Module
        One network per vector, in evaluation mode.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> template = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    >>> thetas = torch.randn(4, 15)
    >>> X = torch.randn(10, 2)
    >>> nets = sampled_networks(template, thetas, X, batch_size=10, max_networks_per_pass=4)
    >>> alone = sampled_network(template, thetas[3], X, batch_size=10)
    >>> len(nets), torch.allclose(nets[3][1].running_mean, alone[1].running_mean, atol=1e-6)
    (4, True)
    """
    networks = []
    for theta in thetas:
        network = copy.deepcopy(template)
        assign_parameters(network, theta)
        networks.append(network)
    refresh_batchnorm_grouped(networks, X_refresh, batch_size, max_networks_per_pass)
    return [network.eval() for network in networks]
