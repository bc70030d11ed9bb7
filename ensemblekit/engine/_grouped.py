"""Grouped networks: M independent copies of a network evaluated as one wide network.

A network built from standard layers becomes, for ``M`` members, one network whose
convolutions have ``groups=M`` (times their own groups) and ``M`` times the channels,
whose BatchNorm and GroupNorm layers are ``M`` times wider and whose linear layers are
batched matrix products over a member axis. No weight is shared between members and
every normalisation statistic is per channel, hence per member, so the grouped network
computes exactly what the ``M`` networks compute separately, in one pass.

Two layouts carry member activations through the network:

* *channel-grouped* ``(B, M * C, ...)``: member ``m`` owns channels
  ``m * C`` to ``(m + 1) * C`` (images, and flattened feature maps);
* *member-first* ``(M, B, F)``: features of member ``m`` at index ``m`` (the output of
  a batched linear layer).

Every grouped layer accepts both where that makes sense; operations that act on each
element or each channel alone (activations, pooling, residual additions) need no
conversion, so modules with their own ``forward`` built from such operations work
unchanged. A conversion is accepted only after a numerical check against the members'
own forward passes (:func:`check_grouped`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "GroupedNetwork",
    "GroupingError",
    "check_grouped",
    "group_modules",
]


class GroupingError(ValueError):
    """Raised when members cannot be stacked into one grouped network."""


# Layers that act on each element, or on each channel and its spatial neighbourhood
# alone: they are correct on the channel-grouped layout as they are.
_PASS_THROUGH: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.ZeroPad2d,
    nn.ConstantPad2d,
)


def _to_member_first(x: Tensor, m: int) -> Tensor:
    """A feature tensor in the member-first layout ``(M, B, F)``."""
    if x.dim() == 3:
        return x
    if x.dim() == 2:
        return x.view(x.shape[0], m, -1).transpose(0, 1)
    raise GroupingError(f"expected features of shape (M, B, F) or (B, M*F), got {tuple(x.shape)}")


class GroupedLinear(nn.Module):
    """``M`` linear layers as one batched matrix product over the member axis.

    ``weight`` has shape ``(M, out_features, in_features)`` and ``bias``
    ``(M, out_features)``: member ``m``'s layer is ``weight[m]``, ``bias[m]``.
    """

    def __init__(self, n_members: int, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.n_members = n_members
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(n_members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n_members, out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = _to_member_first(x, self.n_members)
        weight_t = self.weight.transpose(1, 2)
        if self.bias is None:
            return torch.bmm(x, weight_t.to(x.dtype))
        return torch.baddbmm(self.bias.unsqueeze(1).to(x.dtype), x, weight_t.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"n_members={self.n_members}, in_features={self.in_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class GroupedBatchNorm(nn.BatchNorm2d):
    """``M`` BatchNorm layers as one layer ``M`` times wider.

    Accepts the channel-grouped layout (2-D or 4-D) and the member-first layout.
    """

    def __init__(self, n_members: int, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.n_members = n_members

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 4):
            raise GroupingError(f"expected a 2-D or 4-D input, got {input.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            m, b, f = x.shape
            out = super().forward(x.transpose(0, 1).reshape(b, m * f))
            return out.view(b, m, f).transpose(0, 1)
        return super().forward(x)


class GroupedLayerNorm(nn.Module):
    """``M`` LayerNorm layers over the last (feature) axis."""

    def __init__(self, n_members: int, layer: nn.LayerNorm) -> None:
        super().__init__()
        if len(layer.normalized_shape) != 1:
            raise GroupingError("LayerNorm over more than the feature axis cannot be grouped")
        self.n_members = n_members
        self.normalized_shape = tuple(layer.normalized_shape)
        self.eps = layer.eps
        width = self.normalized_shape[0]
        affine = layer.weight is not None
        self.weight = nn.Parameter(torch.empty(n_members, width)) if affine else None
        has_bias = getattr(layer, "bias", None) is not None
        self.bias = nn.Parameter(torch.empty(n_members, width)) if has_bias else None

    def forward(self, x: Tensor) -> Tensor:
        channel_grouped = x.dim() == 2
        h = _to_member_first(x, self.n_members)
        h = F.layer_norm(h, self.normalized_shape, eps=self.eps)
        if self.weight is not None:
            h = h * self.weight.unsqueeze(1)
        if self.bias is not None:
            h = h + self.bias.unsqueeze(1)
        if channel_grouped:
            return h.transpose(0, 1).reshape(x.shape)
        return h


class GroupedFlatten(nn.Module):
    """``nn.Flatten()`` of each member: channel-grouped maps become member-first features."""

    def __init__(self, n_members: int) -> None:
        super().__init__()
        self.n_members = n_members

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() <= 3:
            return x
        return x.reshape(x.shape[0], self.n_members, -1).transpose(0, 1)


class GroupedSoftmax(nn.Module):
    """Softmax or log-softmax over each member's class (channel) axis."""

    def __init__(self, n_members: int, log: bool) -> None:
        super().__init__()
        self.n_members = n_members
        self.log = log

    def forward(self, x: Tensor) -> Tensor:
        fn = torch.log_softmax if self.log else torch.softmax
        if x.dim() == 3:
            return fn(x, dim=-1)
        shape = x.shape
        per_member = x.reshape(shape[0], self.n_members, shape[1] // self.n_members, *shape[2:])
        return fn(per_member, dim=2).reshape(shape)


class GroupedDropout(nn.Module):
    """Dropout with each member's masks drawn from the member's own generator.

    Without generators (see :meth:`GroupedNetwork.set_generators`) the masks come
    from torch's global generator, as with ``nn.Dropout``.
    """

    def __init__(self, n_members: int, p: float, channelwise: bool) -> None:
        super().__init__()
        self.n_members = n_members
        self.p = float(p)
        self.channelwise = channelwise
        self.generators: Sequence[torch.Generator] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        m = self.n_members
        keep = 1.0 - self.p
        gens = self.generators if self.generators is not None else [None] * m
        if x.dim() == 3:  # member-first (M, B, F)
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
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"n_members={self.n_members}, p={self.p}, channelwise={self.channelwise}"


def _group_leaf(layer: nn.Module, m: int) -> nn.Module:
    """The grouped counterpart of one layer of a member (uninitialised weights)."""
    if isinstance(layer, nn.Conv2d) and type(layer) is nn.Conv2d:
        return nn.Conv2d(
            m * layer.in_channels,
            m * layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=m * layer.groups,
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
        )
    if type(layer) is nn.Linear:
        return GroupedLinear(m, layer.in_features, layer.out_features, layer.bias is not None)
    if type(layer) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return GroupedBatchNorm(
            m,
            m * layer.num_features,
            eps=layer.eps,
            momentum=layer.momentum,
            affine=layer.affine,
            track_running_stats=layer.track_running_stats,
        )
    if type(layer) is nn.GroupNorm:
        return nn.GroupNorm(
            m * layer.num_groups, m * layer.num_channels, eps=layer.eps, affine=layer.affine
        )
    if type(layer) is nn.LayerNorm:
        return GroupedLayerNorm(m, layer)
    if type(layer) in (nn.Dropout, nn.Dropout2d):
        return GroupedDropout(m, layer.p, channelwise=type(layer) is nn.Dropout2d)
    if type(layer) is nn.Flatten:
        if layer.start_dim != 1 or layer.end_dim != -1:
            raise GroupingError("only nn.Flatten(start_dim=1, end_dim=-1) can be grouped")
        return GroupedFlatten(m)
    if type(layer) in (nn.Softmax, nn.LogSoftmax):
        if layer.dim not in (1, -1):
            raise GroupingError(f"{type(layer).__name__}(dim={layer.dim}) cannot be grouped")
        return GroupedSoftmax(m, log=type(layer) is nn.LogSoftmax)
    if isinstance(layer, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) and layer.return_indices:
        raise GroupingError(f"{type(layer).__name__} with return_indices cannot be grouped")
    if type(layer) in _PASS_THROUGH:
        return copy.deepcopy(layer)
    if type(layer) is nn.PReLU:
        raise GroupingError("nn.PReLU shares its slope across channels and cannot be grouped")
    own = list(layer.named_parameters(recurse=False)) + list(layer.named_buffers(recurse=False))
    if own:
        raise GroupingError(
            f"{type(layer).__name__} holds its own parameters or buffers "
            f"({', '.join(name for name, _ in own)}) and is not a layer that can be grouped"
        )
    # A parameter-free layer of unknown type is kept as it is: the numerical check
    # decides whether it respects the member layout.
    return copy.deepcopy(layer)


def _convert(module: nn.Module, m: int) -> nn.Module:
    children = list(module.named_children())
    if not children or type(module) in _PASS_THROUGH:
        return _group_leaf(module, m)
    known_leaf = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm,
                  nn.LayerNorm, nn.Dropout, nn.Dropout2d, nn.Flatten)
    if isinstance(module, known_leaf):
        return _group_leaf(module, m)
    own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
    if own:
        raise GroupingError(
            f"{type(module).__name__} holds its own parameters or buffers "
            f"({', '.join(name for name, _ in own)}), which cannot be grouped"
        )
    for name, child in children:
        setattr(module, name, _convert(child, m))
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

    Notes
    -----
    ``body.state_dict()`` has the members' keys; each tensor is the members'
    tensors stacked (``grouped.reshape(M, *member.shape)[m]`` is member ``m``'s),
    except counters such as BatchNorm's ``num_batches_tracked``, which all members
    share because they take the same number of steps.
    """

    def __init__(self, body: nn.Module, n_members: int, channels_last: bool = False) -> None:
        super().__init__()
        self.body = body
        self.n_members = int(n_members)
        self.channels_last = bool(channels_last)

    def set_generators(self, generators: Sequence[torch.Generator] | None) -> None:
        """Draw member ``m``'s dropout masks from ``generators[m]`` (``None``: global RNG)."""
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
        """``(member parameter name, grouped parameter)`` pairs."""
        return list(self.body.named_parameters())

    def group_input(self, x: Tensor) -> Tensor:
        """Lay member batches ``(M, B, *sample)`` out as the network's input."""
        if x.shape[0] != self.n_members:
            raise ValueError(f"expected {self.n_members} member batches, got {x.shape[0]}")
        if x.dim() == 3:
            return x
        if x.dim() == 5:
            m, b, c, height, width = x.shape
            if self.channels_last:
                # One copy straight into channels-last order (B, H, W, M*C).
                h = x.permute(1, 3, 4, 0, 2).reshape(b, height, width, m * c)
                return h.permute(0, 3, 1, 2)
            return x.transpose(0, 1).reshape(b, m * c, height, width)
        raise GroupingError(
            f"samples of shape {tuple(x.shape[2:])} cannot be grouped: only feature vectors "
            "(F,) and images (C, H, W) can"
        )

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[1]
        out = self.body(self.group_input(x))
        if out.dim() == 3 and out.shape[0] == self.n_members and out.shape[1] == b:
            return out
        if out.dim() == 2 and out.shape[0] == b:
            return out.view(b, self.n_members, -1).transpose(0, 1)
        raise GroupingError(f"unexpected grouped output of shape {tuple(out.shape)}")

    @torch.no_grad()
    def load_members(self, modules: Sequence[nn.Module]) -> None:
        """Copy the members' parameters and buffers into the grouped network."""
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
        """Copy the grouped parameters and buffers back into each member, in place."""
        grouped_state = self.body.state_dict()
        for m, module in enumerate(modules):
            for key, target in module.state_dict().items():
                source = grouped_state[key]
                if source.numel() == self.n_members * target.numel():
                    target.copy_(source.reshape(self.n_members, *target.shape)[m])
                else:
                    target.copy_(source.reshape(target.shape))

    def member_slice(self, tensor: Tensor, m: int, member_shape: torch.Size) -> Tensor:
        """Member ``m``'s part of a grouped tensor (or the shared tensor itself)."""
        if tensor.numel() == self.n_members * member_shape.numel():
            return tensor.reshape(self.n_members, *member_shape)[m]
        return tensor.reshape(member_shape)


def group_modules(
    modules: Sequence[nn.Module], *, channels_last: bool = False
) -> GroupedNetwork:
    """Stack member networks into one :class:`GroupedNetwork`.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        The members: identical architectures, any weights. They are not modified.
    channels_last : bool, default=False
        Lay 4-D activations and convolution weights out channels-last.

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
    body = _convert(copy.deepcopy(modules[0]), len(modules))
    device = next(iter(modules[0].state_dict().values()), torch.empty(0)).device
    grouped = GroupedNetwork(body, len(modules), channels_last=channels_last).to(device)
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
