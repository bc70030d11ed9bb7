"""Stacking members into one network, and moving optimizer state between the two."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from skorch import NeuralNet
from torch import Tensor, nn

from ._grouped import GroupedNetwork, GroupingError, check_grouped, group_modules
from ._vmap import VmapNetwork

__all__ = ["stack_members"]


def stack_members(
    modules: Sequence[nn.Module],
    sample_shape: Sequence[int],
    *,
    allow_vmap: bool = True,
    channels_last: bool = False,
    training: bool = False,
) -> tuple[GroupedNetwork | VmapNetwork, str]:
    """Stack member modules into one network, grouped if possible, else with ``vmap``.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        The members. They are not modified.
    sample_shape : sequence of int
        Shape of one input sample, used for the numerical check.
    allow_vmap : bool, default=True
        Fall back to :class:`VmapNetwork` when grouping fails.
    channels_last : bool, default=False
        Channels-last layout for a grouped network on image inputs.
    training : bool, default=False
        Also check a training step (training-mode outputs, gradients, and random
        draws taken from each member's own stream, see :func:`check_grouped`):
        required before training the stacked network, not for evaluating it.

    Returns
    -------
    network : GroupedNetwork or VmapNetwork
        The stacked members, checked against their own forward passes.
    form : str
        ``"grouped"`` or ``"vmap (...why grouping failed...)"``.

    Raises
    ------
    GroupingError
        When neither form reproduces the members.

    Examples
    --------
    >>> from ensemblekit.models import MLP
    >>> net, form = stack_members([MLP(4, 3), MLP(4, 3)], (4,))
    >>> form
    'grouped'
    """
    modules = list(modules)
    if len(tuple(sample_shape)) not in (1, 2, 3):
        why = (f"samples of shape {tuple(sample_shape)} are neither feature vectors, "
               "(C, L) sequences nor (C, H, W) images")
    else:
        try:
            grouped = group_modules(modules, channels_last=channels_last,
                                    sequence_maps=len(tuple(sample_shape)) == 2)
            check_grouped(grouped, modules, sample_shape, training=training)
            return grouped, "grouped"
        except GroupingError as exc:
            why = str(exc)
    if not allow_vmap:
        raise GroupingError(f"cannot group the members: {why}")
    try:
        stacked = VmapNetwork(modules)
        check_grouped(stacked, modules, sample_shape, training=training)
    except GroupingError as exc:
        raise GroupingError(f"cannot group the members ({why}) nor vmap them ({exc})") from exc
    except Exception as exc:
        raise GroupingError(f"cannot group the members ({why}) nor vmap them ({exc})") from exc
    return stacked, f"vmap (cannot group: {why})"


def _build_optimizer(
    stacked: GroupedNetwork | VmapNetwork, net: NeuralNet
) -> torch.optim.Optimizer:
    """The member net's optimizer (class, groups, hyperparameters) on stacked parameters."""
    member_opt = net.optimizer_
    name_of = {id(p): name for name, p in net.module_.named_parameters()}
    stacked_params = dict(stacked.named_member_parameters())
    groups = []
    used: set[str] = set()
    for group in member_opt.param_groups:
        names = []
        for p in group["params"]:
            if id(p) not in name_of:
                raise GroupingError("the optimizer updates parameters outside the module")
            names.append(name_of[id(p)])
        used.update(names)
        hyper = {k: v for k, v in group.items() if k != "params"}
        groups.append({"params": [stacked_params[n] for n in names], **hyper})
    for name, p in stacked_params.items():
        if name not in used:
            p.requires_grad_(False)
    defaults = dict(member_opt.defaults)
    # Stacked parameters are few and large: the multi-tensor implementation saves a
    # kernel launch per parameter and step (it computes the same elementwise update).
    if defaults.get("foreach", False) is None and not defaults.get("fused"):
        defaults["foreach"] = True
        for group in groups:
            if group.get("foreach", False) is None:
                group["foreach"] = True
    try:
        return type(member_opt)(groups, **defaults)
    except TypeError:
        return type(member_opt)(groups)


@torch.no_grad()
def _write_optimizer_state(
    stacked: GroupedNetwork | VmapNetwork,
    optimizer: torch.optim.Optimizer,
    nets: Sequence[NeuralNet],
) -> None:
    """Give each member net's optimizer its slice of the stacked optimizer state."""
    for m, net in enumerate(nets):
        own = dict(net.module_.named_parameters())
        for name, sp in stacked.named_member_parameters():
            state = optimizer.state.get(sp)
            if not state:
                continue
            target = own[name]
            member_state: dict[str, Any] = {}
            for key, value in state.items():
                if isinstance(value, Tensor) and value.numel() == sp.numel() and value.dim() > 0:
                    member_state[key] = stacked.member_slice(value, m, target.shape).clone()
                elif isinstance(value, Tensor):
                    member_state[key] = value.clone()
                else:
                    member_state[key] = value
            net.optimizer_.state[target] = member_state
