"""Grouped networks: M independent copies of a network evaluated as one wide network.

A network built from standard layers becomes, for ``M`` members, one network whose
convolutions have ``groups=M`` (times their own groups) and ``M`` times the channels,
whose BatchNorm and GroupNorm layers are ``M`` times wider and whose linear layers are
batched matrix products over a member axis. No weight is shared between members and
every normalisation statistic is per channel, hence per member, so the grouped network
computes exactly what the ``M`` networks compute separately, in one pass.

Two layouts carry member activations through the network (named in
:class:`~ensemblekit.engine._layout.Layout`, resolved in one place,
:func:`~ensemblekit.engine._layout.resolve_layout`):

* *channel-grouped* ``(B, M * C, ...)``: member ``m`` owns channels
  ``m * C`` to ``(m + 1) * C`` (images, sequences, and flattened feature maps);
* *member-first* ``(M, B, F)``: features of member ``m`` at index ``m`` (the output of
  a batched linear layer).

One table, :data:`GROUPED_LAYERS`, maps each layer type to its grouped conversion and
the layouts it accepts (:func:`register_grouped_layer` adds one). Operations that act
on each element or each channel alone (activations, pooling, residual additions) need
no conversion, so modules with their own ``forward`` built from such operations work
unchanged. A conversion is accepted only after a numerical check against the members'
own forward passes (:func:`check_grouped`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._layout import GroupingError, Layout, LayoutContext, resolve_layout

__all__ = [
    "GroupedNetwork",
    "GroupingError",
    "check_grouped",
    "group_modules",
]


# Layers that act on each element: correct on every layout as they are.
_ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
)

# Layers that act on each channel and its spatial neighbourhood alone: correct on
# channel-grouped maps as they are.
_PER_CHANNEL: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.ConstantPad1d, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad1d,
    nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d,
)

_BOTH = (Layout.CHANNELS, Layout.MEMBER_FIRST)
_CHANNELS = (Layout.CHANNELS,)


class _GroupedLayer(nn.Module):
    """A grouped layer: knows the members' count and the forward pass's layout context."""

    def __init__(self, ctx: LayoutContext) -> None:
        super().__init__()
        self.ctx = ctx

    @property
    def n_members(self) -> int:
        return self.ctx.n_members


class PassThrough(_GroupedLayer):
    """A member's layer that is correct on the grouped layouts it accepts, unchanged.

    It checks the input's layout and gives its output the same one.
    """

    def __init__(self, layer: nn.Module, ctx: LayoutContext,
                 accepts: tuple[Layout, ...]) -> None:
        super().__init__(ctx)
        self.layer = layer
        self.accepts = accepts

    def forward(self, x: Tensor) -> Tensor:
        layout = resolve_layout(x, self.ctx, self.accepts)
        return self.ctx.tag(self.layer(x), layout)


def _to_member_first(x: Tensor, m: int, layout: Layout) -> Tensor:
    """Features in the member-first layout ``(M, B, F)``."""
    if layout is Layout.MEMBER_FIRST:
        return x
    if x.dim() == 2:
        return x.view(x.shape[0], m, -1).transpose(0, 1)
    raise GroupingError(
        f"a layer over the feature axis received a channel-grouped map of shape "
        f"{tuple(x.shape)}"
    )


class GroupedLinear(_GroupedLayer):
    """``M`` linear layers as one batched matrix product over the member axis.

    ``weight`` has shape ``(M, out_features, in_features)`` and ``bias``
    ``(M, out_features)``: member ``m``'s layer is ``weight[m]``, ``bias[m]``.
    Accepts member-first features and flat channel-grouped features ``(B, M*F)``;
    returns member-first features.
    """

    def __init__(self, ctx: LayoutContext, in_features: int, out_features: int,
                 bias: bool) -> None:
        super().__init__(ctx)
        m = ctx.n_members
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(m, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(m, out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        layout = resolve_layout(x, self.ctx, _BOTH)
        m = self.n_members
        if (layout is Layout.MEMBER_FIRST and x.shape[0] > 1 and x.stride(0) == 0
                and x.device.type != "cpu"):
            # Every member reads the same rows (prediction): one matrix product with the
            # members' weights side by side beats M small ones. (On the CPU the batched
            # product below reads the shared rows as fast, without the copy into the
            # member-first layout.)
            b = x.shape[1]
            weight = self.weight.reshape(m * self.out_features, self.in_features).to(x.dtype)
            if self.bias is None:
                out = x[0] @ weight.t()
            else:
                out = torch.addmm(self.bias.reshape(-1).to(x.dtype), x[0], weight.t())
            out = out.view(b, m, self.out_features).transpose(0, 1).contiguous()
            return self.ctx.tag(out, Layout.MEMBER_FIRST)
        x = _to_member_first(x, m, layout)
        weight_t = self.weight.transpose(1, 2).to(x.dtype)
        if self.bias is None:
            out = torch.bmm(x, weight_t)
        else:
            out = torch.baddbmm(self.bias.unsqueeze(1).to(x.dtype), x, weight_t)
        return self.ctx.tag(out, Layout.MEMBER_FIRST)

    def extra_repr(self) -> str:
        return (f"n_members={self.n_members}, in_features={self.in_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class GroupedBatchNorm(nn.BatchNorm2d):
    """``M`` BatchNorm layers (1-D or 2-D) as one layer ``M`` times wider.

    Accepts channel-grouped activations of any rank and member-first features.
    """

    def __init__(self, ctx: LayoutContext, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx = ctx

    @property
    def n_members(self) -> int:
        return self.ctx.n_members

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise GroupingError(f"expected an input with a channel axis, got {input.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        layout = resolve_layout(x, self.ctx, _BOTH)
        if layout is Layout.MEMBER_FIRST:
            m, b, f = x.shape
            out = super().forward(x.transpose(0, 1).reshape(b, m * f))
            out = out.view(b, m, f).transpose(0, 1)
        else:
            out = super().forward(x)
        return self.ctx.tag(out, layout)


class GroupedGroupNorm(nn.GroupNorm):
    """``M`` GroupNorm layers: ``M`` times the groups and the channels."""

    def __init__(self, ctx: LayoutContext, layer: nn.GroupNorm) -> None:
        m = ctx.n_members
        super().__init__(m * layer.num_groups, m * layer.num_channels, eps=layer.eps,
                         affine=layer.affine)
        self.ctx = ctx

    def forward(self, x: Tensor) -> Tensor:
        layout = resolve_layout(x, self.ctx, _BOTH)
        if layout is Layout.MEMBER_FIRST:
            m, b, f = x.shape
            out = super().forward(x.transpose(0, 1).reshape(b, m * f))
            out = out.view(b, m, f).transpose(0, 1)
        else:
            out = super().forward(x)
        return self.ctx.tag(out, layout)


class GroupedLayerNorm(_GroupedLayer):
    """``M`` LayerNorm layers over the last (feature) axis of features."""

    def __init__(self, ctx: LayoutContext, layer: nn.LayerNorm) -> None:
        super().__init__(ctx)
        if len(layer.normalized_shape) != 1:
            raise GroupingError("LayerNorm over more than the feature axis cannot be grouped")
        m = ctx.n_members
        self.normalized_shape = tuple(layer.normalized_shape)
        self.eps = layer.eps
        width = self.normalized_shape[0]
        affine = layer.weight is not None
        self.weight = nn.Parameter(torch.empty(m, width)) if affine else None
        has_bias = getattr(layer, "bias", None) is not None
        self.bias = nn.Parameter(torch.empty(m, width)) if has_bias else None

    def forward(self, x: Tensor) -> Tensor:
        layout = resolve_layout(x, self.ctx, _BOTH)
        h = _to_member_first(x, self.n_members, layout)
        h = F.layer_norm(h, self.normalized_shape, eps=self.eps)
        if self.weight is not None:
            h = h * self.weight.unsqueeze(1)
        if self.bias is not None:
            h = h + self.bias.unsqueeze(1)
        if layout is Layout.CHANNELS:
            h = h.transpose(0, 1).reshape(x.shape)
        return self.ctx.tag(h, layout)


class GroupedFlatten(_GroupedLayer):
    """``nn.Flatten()`` of each member: channel-grouped maps become member-first features."""

    def forward(self, x: Tensor) -> Tensor:
        layout = resolve_layout(x, self.ctx, _BOTH)
        if layout is Layout.MEMBER_FIRST or x.dim() == 2:
            return self.ctx.tag(x, layout)
        out = x.reshape(x.shape[0], self.n_members, -1).transpose(0, 1)
        return self.ctx.tag(out, Layout.MEMBER_FIRST)


class GroupedSoftmax(_GroupedLayer):
    """Softmax or log-softmax over each member's class (channel) axis."""

    def __init__(self, ctx: LayoutContext, log: bool) -> None:
        super().__init__(ctx)
        self.log = log

    def forward(self, x: Tensor) -> Tensor:
        layout = resolve_layout(x, self.ctx, _BOTH)
        fn = torch.log_softmax if self.log else torch.softmax
        if layout is Layout.MEMBER_FIRST:
            return self.ctx.tag(fn(x, dim=-1), layout)
        shape = x.shape
        per_member = x.reshape(shape[0], self.n_members, shape[1] // self.n_members, *shape[2:])
        return self.ctx.tag(fn(per_member, dim=2).reshape(shape), layout)


class GroupedDropout(_GroupedLayer):
    """Dropout with each member's masks drawn from the member's own generator.

    Without generators (see :meth:`GroupedNetwork.set_generators`) the masks come
    from torch's global generator, as with ``nn.Dropout``.
    """

    def __init__(self, ctx: LayoutContext, p: float, channelwise: bool) -> None:
        super().__init__(ctx)
        self.p = float(p)
        self.channelwise = channelwise
        self.generators: Sequence[torch.Generator] | None = None

    def forward(self, x: Tensor) -> Tensor:
        layout = resolve_layout(x, self.ctx, _BOTH if not self.channelwise else _CHANNELS)
        if not self.training or self.p == 0.0:
            return self.ctx.tag(x, layout)
        if self.p == 1.0:
            return self.ctx.tag(x * 0.0, layout)
        m = self.n_members
        keep = 1.0 - self.p
        gens = self.generators if self.generators is not None else [None] * m
        if layout is Layout.MEMBER_FIRST:  # (M, B, F)
            mask = torch.empty_like(x)
            parts = [mask[k] for k in range(m)]
        else:
            # The mask takes the input's memory layout (channels-last included), so the
            # product runs on matching strides; member k's part is its channel group.
            if self.channelwise:
                shape = (*x.shape[:2], *[1] * (x.dim() - 2))
                mask = torch.empty(shape, device=x.device, dtype=x.dtype)
            else:
                shape = x.shape
                mask = torch.empty_like(x)
            grouped = mask.view(shape[0], m, shape[1] // m, *shape[2:])
            parts = [grouped[:, k] for k in range(m)]
        for part, g in zip(parts, gens):
            if part.is_contiguous():
                part.bernoulli_(keep, generator=g)
            else:
                # Drawn in the member's own (contiguous) layout: some CPU kernels fill
                # in memory order, and a channels-last part would get another mask.
                own = torch.empty(part.shape, device=part.device, dtype=part.dtype)
                part.copy_(own.bernoulli_(keep, generator=g))
        return self.ctx.tag(x * mask.div_(keep), layout)

    def extra_repr(self) -> str:
        return f"n_members={self.n_members}, p={self.p}, channelwise={self.channelwise}"


# ----------------------------------------------------------------- the layer registry
Converter = Callable[[nn.Module, LayoutContext], nn.Module]


@dataclass(frozen=True)
class LayerRule:
    """How one layer type becomes its grouped counterpart.

    Attributes
    ----------
    convert : callable
        ``convert(layer, ctx) -> module``: the grouped layer for ``ctx.n_members``
        members (weights uninitialised: they are copied from the members), or raises
        :class:`GroupingError` for a configuration that cannot be grouped.
    accepts : tuple of Layout
        The input layouts the grouped layer handles.
    """

    convert: Converter
    accepts: tuple[Layout, ...]


GROUPED_LAYERS: dict[type[nn.Module], LayerRule] = {}


def register_grouped_layer(layer_type: type[nn.Module], convert: Converter,
                           accepts: tuple[Layout, ...]) -> None:
    """Teach the grouped form a layer type (exact type; subclasses need their own entry).

    A grouped layer is accepted only after the numerical checks of
    :func:`check_grouped`, so a wrong conversion is refused, never used.

    Parameters
    ----------
    layer_type : type
        The member's layer class.
    convert : callable
        ``convert(layer, ctx) -> module``, see :class:`LayerRule`.
    accepts : tuple of Layout
        The input layouts the grouped layer handles.
    """
    GROUPED_LAYERS[layer_type] = LayerRule(convert, tuple(accepts))


def _pass_through(accepts: tuple[Layout, ...]) -> Converter:
    def convert(layer: nn.Module, ctx: LayoutContext) -> nn.Module:
        if getattr(layer, "return_indices", False):
            raise GroupingError(f"{type(layer).__name__} with return_indices cannot be grouped")
        return PassThrough(copy.deepcopy(layer), ctx, accepts)

    return convert


class _ChannelsConv:
    """Convolution over channel-grouped maps, ``groups`` times ``M``."""

    ctx: LayoutContext

    def forward(self, x: Tensor) -> Tensor:
        resolve_layout(x, self.ctx, _CHANNELS)
        return self.ctx.tag(super().forward(x), Layout.CHANNELS)  # type: ignore[misc]


class GroupedConv1d(_ChannelsConv, nn.Conv1d):
    """``M`` ``Conv1d`` layers as one convolution with ``groups=M * groups``."""


class GroupedConv2d(_ChannelsConv, nn.Conv2d):
    """``M`` ``Conv2d`` layers as one convolution with ``groups=M * groups``."""


def _grouped_conv(layer: nn.Module, ctx: LayoutContext) -> nn.Module:
    m = ctx.n_members
    assert isinstance(layer, (nn.Conv1d, nn.Conv2d))
    cls = GroupedConv1d if isinstance(layer, nn.Conv1d) else GroupedConv2d
    conv = cls(
        m * layer.in_channels, m * layer.out_channels, layer.kernel_size,
        stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
        groups=m * layer.groups, bias=layer.bias is not None, padding_mode=layer.padding_mode,
    )
    conv.ctx = ctx
    return conv


def _grouped_batchnorm(layer: nn.Module, ctx: LayoutContext) -> nn.Module:
    assert isinstance(layer, nn.modules.batchnorm._BatchNorm)
    return GroupedBatchNorm(ctx, ctx.n_members * layer.num_features, eps=layer.eps,
                            momentum=layer.momentum, affine=layer.affine,
                            track_running_stats=layer.track_running_stats)


def _grouped_flatten(layer: nn.Module, ctx: LayoutContext) -> nn.Module:
    assert isinstance(layer, nn.Flatten)
    if layer.start_dim != 1 or layer.end_dim != -1:
        raise GroupingError("only nn.Flatten(start_dim=1, end_dim=-1) can be grouped")
    return GroupedFlatten(ctx)


def _grouped_softmax(layer: nn.Module, ctx: LayoutContext) -> nn.Module:
    assert isinstance(layer, (nn.Softmax, nn.LogSoftmax))
    if layer.dim not in (1, -1):
        raise GroupingError(f"{type(layer).__name__}(dim={layer.dim}) cannot be grouped")
    return GroupedSoftmax(ctx, log=type(layer) is nn.LogSoftmax)


def _refuse(why: str) -> Converter:
    def convert(layer: nn.Module, ctx: LayoutContext) -> nn.Module:
        raise GroupingError(why)

    return convert


for _type in _ELEMENTWISE:
    register_grouped_layer(_type, _pass_through(_BOTH), _BOTH)
for _type in _PER_CHANNEL:
    register_grouped_layer(_type, _pass_through(_CHANNELS), _CHANNELS)
register_grouped_layer(nn.Conv1d, _grouped_conv, _CHANNELS)
register_grouped_layer(nn.Conv2d, _grouped_conv, _CHANNELS)
register_grouped_layer(
    nn.Linear,
    lambda layer, ctx: GroupedLinear(ctx, layer.in_features, layer.out_features,
                                     layer.bias is not None),
    _BOTH,
)
register_grouped_layer(nn.BatchNorm1d, _grouped_batchnorm, _BOTH)
register_grouped_layer(nn.BatchNorm2d, _grouped_batchnorm, _CHANNELS)
register_grouped_layer(nn.GroupNorm, lambda layer, ctx: GroupedGroupNorm(ctx, layer), _BOTH)
register_grouped_layer(nn.LayerNorm, lambda layer, ctx: GroupedLayerNorm(ctx, layer), _BOTH)
register_grouped_layer(nn.Dropout, lambda layer, ctx: GroupedDropout(ctx, layer.p, False),
                       _BOTH)
register_grouped_layer(nn.Dropout2d, lambda layer, ctx: GroupedDropout(ctx, layer.p, True),
                       _CHANNELS)
register_grouped_layer(nn.Flatten, _grouped_flatten, _BOTH)
register_grouped_layer(nn.Softmax, _grouped_softmax, _BOTH)
register_grouped_layer(nn.LogSoftmax, _grouped_softmax, _BOTH)
register_grouped_layer(
    nn.PReLU, _refuse("nn.PReLU shares its slope across channels and cannot be grouped"), ()
)


def _own_state(module: nn.Module) -> list[str]:
    return [name for name, _ in (*module.named_parameters(recurse=False),
                                 *module.named_buffers(recurse=False))]


def _convert(module: nn.Module, ctx: LayoutContext) -> nn.Module:
    rule = GROUPED_LAYERS.get(type(module))
    if rule is not None:
        return rule.convert(module, ctx)
    own = _own_state(module)
    if own:
        raise GroupingError(
            f"{type(module).__name__} holds its own parameters or buffers "
            f"({', '.join(own)}) and is not a layer that can be grouped"
        )
    # A module of unknown type without parameters of its own is kept, its children
    # converted: the numerical checks decide whether its forward respects the layouts.
    for name, child in module.named_children():
        setattr(module, name, _convert(child, ctx))
    return module


def _check_same_structure(modules: Sequence[nn.Module]) -> None:
    first = modules[0]
    n_all = len(list(first.named_modules(remove_duplicate=False)))
    if n_all != len(list(first.named_modules())):
        raise GroupingError("the network reuses a submodule (tied weights)")
    n_params = len(list(first.named_parameters(remove_duplicate=False)))
    if n_params != len(list(first.named_parameters())):
        raise GroupingError("the network shares parameters between layers")
    shapes = {k: (v.shape, v.dtype, v.device) for k, v in first.state_dict().items()}
    for other in modules[1:]:
        if type(other) is not type(first):
            raise GroupingError("the members are modules of different types")
        other_shapes = {k: (v.shape, v.dtype, v.device) for k, v in other.state_dict().items()}
        if other_shapes != shapes:
            raise GroupingError("the members differ in their parameters' names or shapes")


class GroupedNetwork(nn.Module):
    """``M`` member networks evaluated as one grouped network.

    Built by :func:`group_modules`. ``forward`` takes each member's own batch,
    stacked on a leading member axis, and returns each member's output the same way.

    Parameters
    ----------
    body : torch.nn.Module
        The converted network (a copy of the first member with grouped layers).
    n_members : int
        Number of members ``M``.
    channels_last : bool, default=False
        Lay 4-D inputs out channels-last (faster convolutions on recent GPUs).
    ctx : LayoutContext or None, default=None
        The conversion's layout context; ``None`` starts a fresh one for ``M`` members.

    Notes
    -----
    ``body.state_dict()`` has the members' keys; each tensor is the members'
    tensors stacked (``grouped.reshape(M, *member.shape)[m]`` is member ``m``'s),
    except counters such as BatchNorm's ``num_batches_tracked``, which all members
    share because they take the same number of steps.
    """

    def __init__(self, body: nn.Module, n_members: int, channels_last: bool = False,
                 ctx: LayoutContext | None = None) -> None:
        super().__init__()
        self.body = body
        self.n_members = int(n_members)
        self.channels_last = bool(channels_last)
        self.ctx = ctx if ctx is not None else LayoutContext(n_members)

    def set_generators(self, generators: Sequence[torch.Generator] | None) -> None:
        """Draw member ``m``'s dropout masks from ``generators[m]``.

        Parameters
        ----------
        generators : sequence of torch.Generator or None
            One generator per member; ``None`` uses torch's global generator.
        """
        if generators is not None and len(generators) != self.n_members:
            raise ValueError(f"need {self.n_members} generators, got {len(generators)}")
        for layer in self.body.modules():
            if isinstance(layer, GroupedDropout):
                layer.generators = generators

    def set_training_seeds(self, seeds: Sequence[int] | None) -> None:
        """Draw member ``m``'s dropout masks from a generator seeded by ``seeds[m]``.

        On the CPU the masks equal those ``nn.Dropout`` draws from torch's global
        generator seeded the same way (the sequential engine's stream); CUDA's fused
        dropout kernel draws differently, so there the masks depend on the member's
        seed alone but are not the sequential engine's.

        Parameters
        ----------
        seeds : sequence of int or None
            One training seed per member; ``None`` returns to torch's global generator.
        """
        if seeds is None:
            self.set_generators(None)
            return
        first = next(iter(self.body.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
        gen_device = device if device.type == "cuda" else torch.device("cpu")
        self.set_generators([torch.Generator(device=gen_device).manual_seed(int(s))
                             for s in seeds])

    def named_member_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Pair each member parameter name with the grouped parameter holding it.

        Returns
        -------
        list of (str, torch.nn.Parameter)
            ``(member parameter name, grouped parameter)`` pairs.
        """
        return list(self.body.named_parameters())

    def group_input(self, x: Tensor) -> Tensor:
        """Lay member batches ``(M, B, ...)`` out as the network's input.

        Feature vectors stay member-first ``(M, B, F)``; sequences ``(C, L)`` and
        images ``(C, H, W)`` become channel-grouped ``(B, M*C, ...)``.

        Parameters
        ----------
        x : torch.Tensor of shape (M, B, ...)
            Member ``m``'s batch in ``x[m]``.

        Returns
        -------
        torch.Tensor
            The grouped input.
        """
        if x.shape[0] != self.n_members:
            raise ValueError(f"expected {self.n_members} member batches, got {x.shape[0]}")
        if x.dim() == 3:
            return self.ctx.tag(x, Layout.MEMBER_FIRST)
        if x.dim() == 5 and self.channels_last:
            m, b, c, height, width = x.shape
            # One copy straight into channels-last order (B, H, W, M*C).
            h = x.permute(1, 3, 4, 0, 2).reshape(b, height, width, m * c)
            return self.ctx.tag(h.permute(0, 3, 1, 2), Layout.CHANNELS)
        if x.dim() in (4, 5):
            m, b, c = x.shape[:3]
            return self.ctx.tag(x.transpose(0, 1).reshape(b, m * c, *x.shape[3:]),
                                Layout.CHANNELS)
        raise GroupingError(
            f"samples of shape {tuple(x.shape[2:])} cannot be grouped: only feature vectors "
            "(F,), sequences (C, L) and images (C, H, W) can"
        )

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[1]
        with self.ctx.forward(b):
            out = self.body(self.group_input(x))
            layout = resolve_layout(out, self.ctx)
        if layout is Layout.MEMBER_FIRST:
            return out
        if out.dim() == 2:
            return out.view(b, self.n_members, -1).transpose(0, 1)
        raise GroupingError(f"unexpected grouped output of shape {tuple(out.shape)}")

    @torch.no_grad()
    def load_members(self, modules: Sequence[nn.Module]) -> None:
        """Copy the members' parameters and buffers into the grouped network.

        Parameters
        ----------
        modules : sequence of torch.nn.Module
            The members, in member order.
        """
        member_states = [mod.state_dict() for mod in modules]
        for key, grouped in self.body.state_dict().items():
            tensors = [state[key] for state in member_states]
            numel = tensors[0].numel()
            if grouped.numel() == self.n_members * numel:
                grouped.copy_(torch.stack(tensors).reshape(grouped.shape))
            elif grouped.numel() == numel:
                grouped.copy_(tensors[0].reshape(grouped.shape))
            else:
                raise GroupingError(f"cannot stack {key}: {tuple(tensors[0].shape)}")

    @torch.no_grad()
    def write_members(self, modules: Sequence[nn.Module]) -> None:
        """Copy the grouped parameters and buffers back into each member, in place.

        Parameters
        ----------
        modules : sequence of torch.nn.Module
            The members, in member order.
        """
        grouped_state = self.body.state_dict()
        for m, module in enumerate(modules):
            for key, target in module.state_dict().items():
                source = grouped_state[key]
                if source.numel() == self.n_members * target.numel():
                    target.copy_(source.reshape(self.n_members, *target.shape)[m])
                else:
                    target.copy_(source.reshape(target.shape))

    def member_slice(self, tensor: Tensor, m: int, member_shape: torch.Size) -> Tensor:
        """Member ``m``'s part of a grouped tensor (or the shared tensor itself).

        Parameters
        ----------
        tensor : torch.Tensor
            A grouped parameter, buffer or optimizer state.
        m : int
            Member index.
        member_shape : torch.Size
            Shape of the tensor in one member.

        Returns
        -------
        torch.Tensor
            A view of shape ``member_shape``.
        """
        if tensor.numel() == self.n_members * member_shape.numel():
            return tensor.reshape(self.n_members, *member_shape)[m]
        return tensor.reshape(member_shape)


def group_modules(
    modules: Sequence[nn.Module], *, channels_last: bool = False, sequence_maps: bool = False
) -> GroupedNetwork:
    """Stack member networks into one :class:`GroupedNetwork`.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        The members: identical architectures, any weights. They are not modified.
    channels_last : bool, default=False
        Lay 4-D activations and convolution weights out channels-last.
    sequence_maps : bool, default=False
        Whether the inputs are sequences ``(C, L)``, whose channel-grouped maps
        ``(B, M*C, L)`` have the rank of member-first features (see
        :mod:`~ensemblekit.engine._layout`).

    Returns
    -------
    grouped : GroupedNetwork
        On the members' device, in the first member's training mode.

    Raises
    ------
    GroupingError
        When a layer cannot be grouped (the message names it).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> members = [nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)) for _ in range(2)]
    >>> grouped = group_modules(members).eval()
    >>> x = torch.randn(2, 5, 4)               # member m's batch is x[m]
    >>> out = grouped(x)
    >>> out.shape
    torch.Size([2, 5, 3])
    >>> bool(torch.allclose(out[1], members[1](x[1]), atol=1e-6))
    True
    """
    modules = list(modules)
    if not modules:
        raise ValueError("need at least one member")
    _check_same_structure(modules)
    ctx = LayoutContext(len(modules), sequence_maps=sequence_maps)
    body = _convert(copy.deepcopy(modules[0]), ctx)
    device = next(iter(modules[0].state_dict().values()), torch.empty(0)).device
    grouped = GroupedNetwork(body, len(modules), channels_last=channels_last,
                             ctx=ctx).to(device)
    grouped.load_members(modules)
    if channels_last:
        grouped = grouped.to(memory_format=torch.channels_last)
    grouped.train(modules[0].training)
    return grouped


@contextmanager
def _full_fp32() -> Iterator[None]:
    """Disable TF32 convolutions and matrix products (on by default for cuDNN)."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = cudnn.allow_tf32, matmul.allow_tf32
        cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cudnn.allow_tf32, matmul.allow_tf32 = saved


def check_grouped(
    network: nn.Module,
    modules: Sequence[nn.Module],
    sample_shape: Sequence[int],
    *,
    n_samples: int = 3,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    training: bool = False,
) -> None:
    """Check that a stacked network computes each member's own forward pass.

    Compares outputs in evaluation mode on random inputs, a different batch per
    member (so that any mixing of members shows), in full float32 (TF32 off, so
    that GPU rounding does not hide or fake a difference).

    With ``training=True`` it also runs one training step on copies of the network
    and of the members (training mode, forward and backward, a batch size unlike
    the number of members and not 1) and requires, for every member:

    * the same outputs and the same parameter gradients as the member's own
      training step on its own batch: operations over the batch axis that run only
      in training (batch means, batch-size-dependent scaling, custom
      normalisations) must act per member;
    * no draw from torch's global generators: every random number a training
      forward pass draws must come from the member's own stream (see
      :meth:`GroupedNetwork.set_training_seeds`), or the members would depend on
      which members share their pass. ``nn.Dropout`` and ``nn.Dropout2d`` are
      switched off for the comparison (their grouped masks come from the members'
      generators by construction); any other draw is compared with the member's
      forward pass under the same seed.

    Parameters
    ----------
    network : torch.nn.Module
        The stacked network (:class:`GroupedNetwork` or :class:`VmapNetwork`).
    modules : sequence of torch.nn.Module
        The members it was built from.
    sample_shape : sequence of int
        Shape of one input row, without the batch axis.
    n_samples : int, default=3
        Rows per member batch.
    rtol, atol : float, default=1e-4, 1e-5
        Tolerances of the comparison, as in :func:`torch.allclose`.
    training : bool, default=False
        Also compare one training step (outputs and parameter gradients), see above.

    Raises
    ------
    GroupingError
        When the outputs or gradients differ, the stacked forward or backward pass
        fails, or the training forward pass draws from torch's global generators.
    """
    modules = list(modules)
    first = next(iter(modules[0].state_dict().values()), None)
    device = first.device if first is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(len(modules), n_samples, *sample_shape, generator=gen).to(device)
    modes = [mod.training for mod in modules]
    was_training = network.training
    try:
        network.eval()
        for mod in modules:
            mod.eval()
        with torch.no_grad(), _full_fp32():
            try:
                stacked = network(x)
            except Exception as exc:  # any failure means the layout was not respected
                raise GroupingError(f"the grouped forward pass failed: {exc}") from exc
            for m, mod in enumerate(modules):
                ref = mod(x[m])
                _compare(stacked[m], ref, rtol, atol, "outputs", "evaluation")
    finally:
        network.train(was_training)
        for mod, mode in zip(modules, modes):
            mod.train(mode)
    if training:
        _check_training_step(network, modules, sample_shape, rtol, atol)


def _compare(got: Tensor, ref: object, rtol: float, atol: float, what: str,
             mode: str) -> None:
    if not isinstance(ref, Tensor) or got.shape != ref.shape:
        raise GroupingError(f"the stacked {what} do not have the members' shape in {mode} mode")
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    if not torch.allclose(got.float(), ref.float(), rtol=rtol, atol=atol * max(1.0, scale)):
        raise GroupingError(
            f"the stacked network does not reproduce the members' {what} in {mode} mode "
            "(a layer or an operation in a forward method mixes channels or samples)"
        )


def _switch_off_grouped_dropout(module: nn.Module) -> None:
    for layer in module.modules():
        if type(layer) in (nn.Dropout, nn.Dropout2d, GroupedDropout):
            layer.p = 0.0


def _check_training_step(
    network: nn.Module,
    modules: Sequence[nn.Module],
    sample_shape: Sequence[int],
    rtol: float,
    atol: float,
) -> None:
    """The training-mode part of :func:`check_grouped` (on copies: nothing is changed)."""
    from ._randomness import MemberStream, global_rng_state, same_rng_state

    n_members = len(modules)
    members = [copy.deepcopy(mod).train() for mod in modules]
    stacked_net = copy.deepcopy(network).train()
    for part in [*members, stacked_net, *getattr(stacked_net, "_template", [])]:
        _switch_off_grouped_dropout(part)
    first = next(iter(modules[0].state_dict().values()), None)
    device = first.device if first is not None else torch.device("cpu")
    # A batch size equal to neither the number of members nor 1, so that an operation
    # over the wrong axis, or one that depends on the batch size, shows.
    batch = 3 if n_members != 3 else 4
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n_members, batch, *sample_shape, generator=gen).to(device)
    seeds = [1000 + m for m in range(n_members)]
    stacked_net.set_training_seeds(seeds)
    with _full_fp32():
        before = global_rng_state(device)
        try:
            out = stacked_net(x)
            weights = torch.randn(out.shape, generator=gen).to(device)
            (out.float() * weights).sum().backward()
        except Exception as exc:
            raise GroupingError(f"the stacked training step failed: {exc}") from exc
        if not same_rng_state(before, global_rng_state(device)):
            raise GroupingError(
                "the training forward pass draws random numbers from torch's global "
                "generator (functional dropout or noise in a forward method), which one "
                "stacked pass cannot split by member"
            )
        stacked_params = dict(stacked_net.named_member_parameters())
        for m, member in enumerate(members):
            with MemberStream(seeds[m], device).active():
                ref = member(x[m])
            _compare(out[m].detach(), ref.detach(), rtol, atol, "outputs", "training")
            (ref.float() * weights[m]).sum().backward()
            for name, p in member.named_parameters():
                sp = stacked_params.get(name)
                if p.grad is None and (sp is None or sp.grad is None):
                    continue
                if p.grad is None or sp is None or sp.grad is None:
                    raise GroupingError(
                        f"the stacked training step does not give {name} a gradient as "
                        "the members do"
                    )
                got = stacked_net.member_slice(sp.grad, m, p.shape)
                _compare(got, p.grad, 1e-3, 1e-4, f"gradients ({name})", "training")
