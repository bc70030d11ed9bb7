"""Flat parameter vectors: the coordinates every posterior sampler works in."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters


def flatten_parameters(module: nn.Module) -> torch.Tensor:
    """All parameters of ``module`` (weights *and* biases) as one detached vector.

    The order is the module's parameter registration order, the order in which
    :func:`assign_parameters` reads a vector back.

    Parameters
    ----------
    module : torch.nn.Module
        The network.

    Returns
    -------
    theta : torch.Tensor of shape (n_parameters,)
        A copy, on the module's device, in the parameters' dtype.

    Examples
    --------
    >>> from torch import nn
    >>> flatten_parameters(nn.Linear(3, 2)).shape
    torch.Size([8])
    """
    return parameters_to_vector(module.parameters()).detach().clone()


def assign_parameters(module: nn.Module, theta: torch.Tensor) -> nn.Module:
    """Write the flat vector ``theta`` into the parameters of ``module``, in place.

    Parameters
    ----------
    module : torch.nn.Module
        The network to modify.
    theta : torch.Tensor of shape (n_parameters,)
        Values in the order of :func:`flatten_parameters`.

    Returns
    -------
    module : torch.nn.Module
        The same module, for chaining.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> layer = assign_parameters(nn.Linear(2, 1), torch.arange(3.0))
    >>> layer.weight.tolist(), layer.bias.tolist()
    ([[0.0, 1.0]], [2.0])
    """
    n_params = sum(p.numel() for p in module.parameters())
    if theta.ndim != 1 or theta.numel() != n_params:
        raise ValueError(
            f"theta must be a vector of {n_params} values, got shape {tuple(theta.shape)}."
        )
    reference = next(module.parameters(), None)
    if reference is not None:
        theta = theta.to(device=reference.device, dtype=reference.dtype)
    with torch.no_grad():
        vector_to_parameters(theta, module.parameters())
    return module
