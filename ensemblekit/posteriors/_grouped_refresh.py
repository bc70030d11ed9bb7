"""BatchNorm refresh of many networks of one architecture in grouped passes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..engine import GroupedNetwork, GroupingError, group_modules, module_device
from ..engine._grouped import _full_fp32
from ._batchnorm import batchnorm_layers, refresh_batchnorm

#: Networks refreshed together by default on an accelerator. A grouped pass holds
#: this many networks' activations for the same rows (at most ``batch_size`` per
#: pass), as grouped prediction does for its members.
MAX_NETWORKS_PER_PASS = 8


def networks_per_pass(device: torch.device) -> int:
    """The default number of networks refreshed in one pass on ``device``.

    :data:`MAX_NETWORKS_PER_PASS` on accelerators, where one wide pass replaces
    many small kernel launches; 1 (one network per pass) on the CPU, where the
    grouped pass measured slower than refreshing each network alone
    (``benchmarks/results/refresh_cpu.md``: the per-network passes over the refresh
    rows already keep the cores busy, and grouping only adds copies).

    Parameters
    ----------
    device : torch.device
        Where the networks are.

    Returns
    -------
    int

    Examples
    --------
    >>> import torch
    >>> networks_per_pass(torch.device("cpu")), networks_per_pass(torch.device("cuda"))
    (1, 8)
    """
    return 1 if torch.device(device).type == "cpu" else MAX_NETWORKS_PER_PASS


class _SharedRows(nn.Module):
    """Feeds every member of a grouped network the same rows: ``(B, ...) -> (M, B, ...)``."""

    def __init__(self, grouped: GroupedNetwork) -> None:
        super().__init__()
        self.grouped = grouped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grouped(x.unsqueeze(0).expand(self.grouped.n_members, *x.shape))


def refresh_batchnorm_grouped(
    modules: Sequence[nn.Module],
    X: np.ndarray | torch.Tensor,
    batch_size: int,
    max_networks_per_pass: int | str | None = "auto",
) -> list[bool]:
    """Apply :func:`refresh_batchnorm` to each network, several networks per forward pass.

    Networks of one architecture are stacked, up to ``max_networks_per_pass`` at a
    time, into one :class:`~ensemblekit.engine.GroupedNetwork` (the engine's grouped
    form, see :data:`~ensemblekit.engine._grouped.GROUPED_LAYERS`), whose BatchNorm
    layers hold every member's channels side by side and so compute every member's
    per-channel statistics in the same pass. The grouped network is refreshed by
    :func:`refresh_batchnorm` itself, every member reading the same rows, and each
    member's slice of the new statistics is copied back: the result is that of
    :func:`refresh_batchnorm` on each network alone (up to float32 rounding of the
    grouped convolutions and matrix products), for any ``batch_size``.

    Networks the grouped form cannot represent (a layer outside the registry, a
    BatchNorm3d, tied weights, networks of different architectures or devices, inputs
    other than feature vectors, sequences or images) are refreshed one at a time
    instead, exactly as by :func:`refresh_batchnorm`; so are networks whose grouped
    pass does not reproduce their own on random rows (checked before any statistic
    is written), a group of one network, and every network when a grouped pass
    raises (out of memory included: a pass holds ``max_networks_per_pass`` times the
    activations of one network's pass, as grouped prediction does).

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        Networks to update in place (their weights, modes and momenta are kept).
    X : ndarray or torch.Tensor of shape (n_rows, ...)
        Refresh inputs, shared by all networks.
    batch_size : int
        Most rows per forward pass (per network), at least 1.
    max_networks_per_pass : int, None or "auto", default="auto"
        Most networks per grouped pass; ``None`` groups all of them, 1 refreshes
        each network alone, ``"auto"`` takes :func:`networks_per_pass` of the
        networks' device (one network per pass on the CPU).

    Returns
    -------
    updated : list of bool
        For each network, whether it has BatchNorm layers (False: nothing was run).

    Raises
    ------
    ValueError
        As :func:`refresh_batchnorm`, and if ``max_networks_per_pass`` is not
        ``"auto"``, None nor an integer >= 1.

    Examples
    --------
    >>> import copy, torch
    >>> from torch import nn
    >>> nets = [nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)) for _ in range(3)]
    >>> alone = copy.deepcopy(nets[2])
    >>> X = torch.randn(20, 2)
    >>> refresh_batchnorm_grouped(nets, X, batch_size=8, max_networks_per_pass=3)
    [True, True, True]
    >>> _ = refresh_batchnorm(alone, X, batch_size=8)
    >>> torch.allclose(nets[2][1].running_var, alone[1].running_var, rtol=1e-5)
    True
    """
    if max_networks_per_pass is not None and max_networks_per_pass != "auto" and (
        isinstance(max_networks_per_pass, bool)
        or not isinstance(max_networks_per_pass, (int, np.integer))
        or max_networks_per_pass < 1
    ):
        raise ValueError("max_networks_per_pass must be 'auto', None or an integer >= 1, "
                         f"got {max_networks_per_pass!r}.")
    modules = list(modules)
    updated = [bool(batchnorm_layers(module)) for module in modules]
    todo = [module for module, has_bn in zip(modules, updated) if has_bn]
    if max_networks_per_pass == "auto":
        size = networks_per_pass(module_device(todo[0])) if todo else 1
    elif max_networks_per_pass is None:
        size = len(todo)
    else:
        size = int(max_networks_per_pass)
    # Groups as equal as the bound allows (8 + 1 networks go as 5 + 4).
    n_groups = -(-len(todo) // max(1, size))
    bounds = np.linspace(0, len(todo), n_groups + 1).round().astype(int)
    sample_shape = tuple(X.shape[1:])
    groupable = len(sample_shape) in (1, 2, 3) and len(X) > 0 and not (
        isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1
    )
    for first, last in pairwise(bounds.tolist()):
        part = todo[first:last]
        if groupable and len(part) >= 2:
            try:
                _refresh_together(part, X, int(batch_size), sample_shape)
                continue
            except (GroupingError, ValueError, RuntimeError):
                # Not groupable (the same for every later part), or the grouped pass
                # failed: the one-network path gives the result, or the error.
                groupable = False
        for module in part:
            refresh_batchnorm(module, X, batch_size)
    return updated


def _refresh_together(modules: list[nn.Module], X: np.ndarray | torch.Tensor,
                      batch_size: int, sample_shape: tuple[int, ...]) -> None:
    """Refresh ``modules`` in grouped passes; raise (members untouched) if that fails."""
    if len({module_device(module) for module in modules}) != 1:
        raise GroupingError("the networks are on different devices")
    # Contiguous maps: torch's CPU BatchNorm sums channels-last maps in float32 in an
    # order that loses about four digits over a million values per channel.
    grouped = group_modules(modules, channels_last=False, sequence_maps=len(sample_shape) == 2)
    grouped.requires_grad_(False)
    _check_training_batchnorm(grouped, modules, sample_shape)
    refresh_batchnorm(_SharedRows(grouped), X, batch_size)
    _write_batchnorm_statistics(grouped, modules)


@contextmanager
def _batchnorm_training(module: nn.Module) -> Iterator[None]:
    """Only the BatchNorm layers in training mode; modes and statistics restored after."""
    layers = batchnorm_layers(module)
    modes = {layer: layer.training for layer in module.modules()}
    saved = [{k: v.clone() for k, v in layer.state_dict().items()} for layer in layers]
    try:
        module.eval()
        for layer in layers:
            layer.train()
        yield
    finally:
        for layer, state in zip(layers, saved):
            layer.load_state_dict(state)
        for layer, training in modes.items():
            layer.train(training)


def _check_training_batchnorm(grouped: GroupedNetwork, modules: Sequence[nn.Module],
                              sample_shape: tuple[int, ...]) -> None:
    """The refresh's own pass must reproduce the members' outputs, or raise GroupingError.

    The pass the refresh runs: every member reading the same rows, only BatchNorm
    layers in training mode (statistics of the batch), in full float32 (TF32 off).
    Running statistics and modes are restored afterwards.
    """
    device = module_device(modules[0])
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, *sample_shape, generator=gen).to(device)
    with torch.no_grad(), _full_fp32(), _batchnorm_training(grouped):
        try:
            out = _SharedRows(grouped)(x)
        except Exception as exc:  # any failure means a layer did not keep the layout
            raise GroupingError(f"the grouped forward pass failed: {exc}") from exc
        for m, member in enumerate(modules):
            with _batchnorm_training(member):
                ref = member(x)
            scale = max(1.0, float(ref.abs().max()))
            if out[m].shape != ref.shape or not torch.allclose(
                out[m].float(), ref.float(), rtol=1e-4, atol=1e-5 * scale
            ):
                raise GroupingError("the grouped network does not reproduce the members with "
                                    "BatchNorm in training mode")


@torch.no_grad()
def _write_batchnorm_statistics(grouped: GroupedNetwork, modules: Sequence[nn.Module]) -> None:
    """Copy each member's slice of the grouped BatchNorm buffers into the member."""
    grouped_state = grouped.body.state_dict()
    for m, module in enumerate(modules):
        for name, layer in module.named_modules():
            if not (isinstance(layer, _BatchNorm) and layer.track_running_stats):
                continue
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                target = getattr(layer, key)
                if target is not None:
                    source = grouped_state[f"{name}.{key}" if name else key]
                    target.copy_(grouped.member_slice(source, m, target.shape))
