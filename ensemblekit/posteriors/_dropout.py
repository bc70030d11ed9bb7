"""Fixed dropout masks: each Monte Carlo dropout sample as one thinned network."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..engine import derive_seed
from ..engine._grouped import register_grouped_layer
from ..engine._layout import GroupingError, Layout, LayoutContext, resolve_layout

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


class FixedMask(nn.Module):
    """Multiplies every input row by one fixed mask: a dropout layer of a thinned network.

    Parameters
    ----------
    mask : torch.Tensor
        Broadcastable to one row of the input, ``x.shape[1:]``; stored as the buffer
        ``mask``.

    Examples
    --------
    >>> import torch
    >>> layer = FixedMask(torch.tensor([0.0, 2.0]))
    >>> layer(torch.ones(3, 2)).tolist()
    [[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]]
    """

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mask.shape)}"


class GroupedFixedMask(nn.Module):
    """``M`` :class:`FixedMask` layers in the grouped form.

    The buffer ``mask`` holds the members' masks concatenated along their first
    axis, shape ``(M * d0, *rest)`` for member masks of shape ``(d0, *rest)``: on
    channel-grouped activations ``(B, M * C, ...)`` it is the mask of the wide
    layer as it is; on member-first features ``(M, B, F)`` it is viewed as
    ``(M, 1, F)``.
    """

    def __init__(self, ctx: LayoutContext, shape: Sequence[int]) -> None:
        super().__init__()
        self.ctx = ctx
        shape = tuple(shape)
        if not shape:
            raise GroupingError("a scalar FixedMask cannot be grouped")
        self.register_buffer("mask", torch.empty(ctx.n_members * shape[0], *shape[1:]))

    def forward(self, x: Tensor) -> Tensor:
        layout = resolve_layout(x, self.ctx, (Layout.CHANNELS, Layout.MEMBER_FIRST))
        if layout is Layout.MEMBER_FIRST:
            if self.mask.dim() != 1:
                raise GroupingError("a FixedMask over feature maps received member-first "
                                    "features")
            mask = self.mask.view(self.ctx.n_members, 1, -1)
        else:
            mask = self.mask
        return self.ctx.tag(x * mask, layout)


register_grouped_layer(FixedMask, lambda layer, ctx: GroupedFixedMask(ctx, layer.mask.shape),
                       (Layout.CHANNELS, Layout.MEMBER_FIRST))


def thinned_copies(
    module: nn.Module, seeds: Sequence[int], sample_shape: Sequence[int]
) -> list[nn.Module] | None:
    """Standalone copies of ``module``, one fixed thinned network per seed.

    Copy ``k`` computes what ``module`` computes inside
    ``thinned_network(module, seeds[k])`` (the same masks, from the same
    generators), with each dropout layer replaced by a :class:`FixedMask`, and it
    is in evaluation mode. Unlike the context manager, the copies are ordinary
    networks of standard layers, so many of them can be evaluated together in one
    grouped pass (:class:`~ensemblekit.engine.MemberPredictor`).

    Parameters
    ----------
    module : torch.nn.Module
        Network with dropout layers; not modified.
    seeds : sequence of int
        One seed per copy, as given to :func:`thinned_network`.
    sample_shape : sequence of int
        Shape of one input row: one forward pass on a zero row finds the shape of
        each dropout layer's input, which its mask depends on.

    Returns
    -------
    list of torch.nn.Module or None
        The copies, on ``module``'s device; ``None`` when a mask cannot be fixed
        ahead of the inputs (a dropout layer used more than once per forward pass,
        or not at all, or one that is not a child of a module).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    >>> x = torch.randn(5, 4)
    >>> [copy] = thinned_copies(net, [3], (4,))
    >>> with thinned_network(net, seed=3):
    ...     expected = net(x)
    >>> torch.equal(copy(x), expected)
    True
    """
    layers = dropout_layers(module)
    if not layers:
        return None
    shapes: dict[int, list[tuple[int, ...]]] = {i: [] for i in range(len(layers))}
    handles = [
        layer.register_forward_pre_hook(
            lambda _layer, inputs, i=i: shapes[i].append(tuple(inputs[0].shape[1:])))
        for i, layer in enumerate(layers)
    ]
    modes = {layer: layer.training for layer in module.modules()}
    first = next(iter(module.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    try:
        module.eval()
        with torch.inference_mode():
            module(torch.zeros((1, *sample_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        for layer, training in modes.items():
            layer.train(training)
    if any(len(found) != 1 for found in shapes.values()):
        return None
    names = {id(layer): name for name, layer in module.named_modules()}
    paths = [names.get(id(layer), "") for layer in layers]
    if any(not path for path in paths):
        return None
    copies = []
    for seed in seeds:
        thinned = copy.deepcopy(module).eval()
        for index, (layer, path) in enumerate(zip(layers, paths)):
            generator = torch.Generator().manual_seed(derive_seed(int(seed), index))
            mask = dropout_mask(layer, shapes[index][0], generator).to(device)
            parent_name, _, child = path.rpartition(".")
            parent = thinned.get_submodule(parent_name) if parent_name else thinned
            setattr(parent, child, FixedMask(mask))
        thinned.requires_grad_(False)
        copies.append(thinned)
    return copies
