"""Fixed dropout masks: each Monte Carlo dropout sample as one thinned network."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..engine import derive_seed

#: Dropout layers whose masks :func:`thinned_network` can fix.
SUPPORTED_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_UNSUPPORTED_DROPOUT = (nn.AlphaDropout, nn.FeatureAlphaDropout)


def dropout_layers(module: nn.Module) -> list[nn.Module]:
    """Dropout layers of ``module`` with a positive drop probability, in module order.

    Parameters
    ----------
    module : torch.nn.Module
        Any network.

    Returns
    -------
    list of torch.nn.Module
        The dropout layers (``Dropout``, ``Dropout1d/2d/3d``) with ``p > 0``.

    Raises
    ------
    ValueError
        If the module holds an alpha-dropout layer, whose masks are not supported.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.2), nn.Dropout(0.0))
    >>> len(dropout_layers(net))
    1
    """
    found = []
    for layer in module.modules():
        if isinstance(layer, _UNSUPPORTED_DROPOUT):
            raise ValueError(
                f"{type(layer).__name__} is not supported for Monte Carlo dropout; use one of "
                f"{[cls.__name__ for cls in SUPPORTED_DROPOUT]}."
            )
        if isinstance(layer, SUPPORTED_DROPOUT) and float(layer.p) > 0:
            found.append(layer)
    return found


def dropout_mask(
    layer: nn.Module, feature_shape: tuple[int, ...], generator: torch.Generator
) -> torch.Tensor:
    """Draw one inverted-dropout mask for ``layer``, shared by every input row.

    Each unit is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``. For
    :class:`~torch.nn.Dropout` a unit is one element of the per-row feature tensor;
    for the channel-wise ``Dropout1d/2d/3d`` it is a whole channel.

    Parameters
    ----------
    layer : torch.nn.Module
        A layer of :data:`SUPPORTED_DROPOUT`.
    feature_shape : tuple of int
        Shape of one row of the layer's input, ``x.shape[1:]``.
    generator : torch.Generator
        Source of the mask.

    Returns
    -------
    mask : torch.Tensor
        Broadcastable to ``feature_shape``, float32 on the CPU.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> mask = dropout_mask(nn.Dropout2d(0.5), (3, 4, 4), torch.Generator().manual_seed(0))
    >>> tuple(mask.shape), sorted(set(mask.flatten().tolist()) | {0.0, 2.0})
    ((3, 1, 1), [0.0, 2.0])
    """
    p = float(layer.p)
    if isinstance(layer, nn.Dropout):
        shape = tuple(feature_shape)
    else:
        shape = (feature_shape[0],) + (1,) * (len(feature_shape) - 1)
    if p >= 1.0:
        return torch.zeros(shape)
    keep = torch.rand(shape, generator=generator, dtype=torch.float64) >= p
    return (keep.to(torch.float64) / (1.0 - p)).to(torch.float32)


@contextmanager
def thinned_network(module: nn.Module, seed: int) -> Iterator[nn.Module]:
    """Run ``module`` as one fixed thinned network: each dropout layer keeps one mask.

    Inside the block the whole module is in evaluation mode (BatchNorm uses its
    running statistics and is never updated) and each dropout layer multiplies its
    input by a mask drawn once per layer from a generator seeded by ``seed`` and the
    layer's position. The mask does not depend on the batch, so the network is one
    deterministic function: predictions do not depend on row order or batch
    composition. Modes are restored on exit.

    Parameters
    ----------
    module : torch.nn.Module
        Network with dropout layers.
    seed : int
        Identifies the thinned network; the same seed gives the same masks.

    Yields
    ------
    module : torch.nn.Module
        The same module, with the masks attached.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    >>> x = torch.randn(5, 4)
    >>> with thinned_network(net, seed=3):
    ...     full = net(x)
    ...     row = net(x[2:3])
    >>> torch.allclose(full[2:3], row)
    True
    """
    layers = dropout_layers(module)
    modes = {layer: layer.training for layer in module.modules()}
    handles = []

    def make_hook(index: int, layer: nn.Module):
        cache: dict[tuple[int, ...], torch.Tensor] = {}

        def hook(_layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
            shape = tuple(inputs[0].shape[1:])
            if shape not in cache:
                generator = torch.Generator().manual_seed(derive_seed(seed, index))
                cache[shape] = dropout_mask(layer, shape, generator)
            mask = cache[shape].to(device=output.device, dtype=output.dtype)
            return inputs[0] * mask

        return hook

    try:
        module.eval()
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(make_hook(index, layer)))
        yield module
    finally:
        for handle in handles:
            handle.remove()
        for layer, training in modes.items():
            layer.train(training)
