"""The vectorised training loop: all members trained in one batched pass.

The members' networks are stacked into one :class:`~ensemblekit.engine.GroupedNetwork`
(or, for layers that cannot be grouped, a :class:`~ensemblekit.engine.VmapNetwork`).
Each training step gathers every member's own batch (the indices the sequential
engine would use), runs one forward and one backward pass for all of them, and
applies the members' optimizer to the stacked parameters. The loss is the sum of the
members' losses, so each member receives exactly its own gradient; elementwise
optimizers then update each member exactly as they would alone.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skorch import NeuralNet
from torch import Tensor, nn

from .._stacklevel import external_stacklevel
from ._augment import Augment, augment_seed
from ._checkpoints import checkpoint_callback
from ._grouped import GroupedNetwork, GroupingError, check_grouped
from ._monitor import MonitorCallback, monitor_callback
from ._progress import Progress
from ._randomness import derive_seed, seeded_torch
from ._schedule import Schedule, base_lr, scheduled_lr
from ._sequential import continued_train_seed, initialize_member, module_device, train_seed
from ._stacking import _build_optimizer, _write_optimizer_state, stack_members
from ._vmap import VmapNetwork
from ._weights import SampleWeightedLoss, split_targets, weighted_targets

__all__ = ["fit_vectorized"]

_VMAP_STREAM = 14


@torch.no_grad()
def _read_optimizer_state(
    stacked: GroupedNetwork | VmapNetwork,
    optimizer: torch.optim.Optimizer,
    nets: Sequence[NeuralNet],
) -> None:
    """Stack the member optimizers' states into the stacked optimizer (continued training).

    The inverse of :func:`_write_optimizer_state`. Scalar entries (Adam's step count)
    must agree across members.
    """
    owns = [dict(net.module_.named_parameters()) for net in nets]
    for name, sp in stacked.named_member_parameters():
        states = [net.optimizer_.state.get(own[name]) for net, own in zip(nets, owns)]
        if not any(states):
            continue
        if not all(states):
            raise GroupingError(f"only some members have optimizer state for {name}")
        stacked_state: dict[str, Any] = {}
        for key, first in states[0].items():
            values = [state[key] for state in states]
            shape = owns[0][name].shape
            if isinstance(first, Tensor) and first.dim() > 0 and first.numel() == shape.numel():
                buf = torch.zeros(sp.shape, dtype=first.dtype, device=sp.device)
                parts = buf.view(len(nets), *shape)
                for m, value in enumerate(values):
                    parts[m].copy_(value.reshape(shape))
                stacked_state[key] = buf.reshape(sp.shape)
            else:
                if any(not _same_value(first, value) for value in values[1:]):
                    raise GroupingError(f"the members' optimizer states differ in {key!r}")
                stacked_state[key] = first.clone() if isinstance(first, Tensor) else first
        optimizer.state[sp] = stacked_state


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and bool(torch.equal(a.cpu(), b.cpu()))
    return a == b


def _monitor_epoch(
    stacked: GroupedNetwork | VmapNetwork,
    optimizer: torch.optim.Optimizer,
    modules: Sequence[nn.Module],
    monitors: Sequence[MonitorCallback | None],
    active: list[bool],
    frozen: dict[int, tuple[dict[str, dict[str, Any]], list[float]]],
    postfix: dict[str, str],
) -> None:
    """Score the running members on their validation rows; freeze those that stop.

    A member that stops keeps the state it has now: its optimizer state and
    learning rates are saved here and put back at the end, whatever later stacked
    steps did to its slice, and its weights become those of its best epoch.
    """
    stacked.write_members(modules)
    scores = []
    for k, mon in enumerate(monitors):
        if mon is None or not active[k]:
            continue
        if mon.monitor.end_epoch(modules[k]):
            active[k] = False
            frozen[k] = (_member_optimizer_state(stacked, optimizer, k, modules[k]),
                         [group["lr"] for group in optimizer.param_groups])
        scores.append(mon.monitor.scores[-1])
    if scores:
        postfix["valid"] = f"{float(np.mean(scores)):.4f}"


@torch.no_grad()
def _member_optimizer_state(
    stacked: GroupedNetwork | VmapNetwork,
    optimizer: torch.optim.Optimizer,
    m: int,
    module: nn.Module,
) -> dict[str, dict[str, Any]]:
    """Member ``m``'s slice of the stacked optimizer state, by parameter name."""
    shapes = {name: p.shape for name, p in module.named_parameters()}
    out: dict[str, dict[str, Any]] = {}
    for name, sp in stacked.named_member_parameters():
        state = optimizer.state.get(sp)
        if not state:
            continue
        member_state: dict[str, Any] = {}
        for key, value in state.items():
            if isinstance(value, Tensor) and value.numel() == sp.numel() and value.dim() > 0:
                member_state[key] = stacked.member_slice(value, m, shapes[name]).clone()
            elif isinstance(value, Tensor):
                member_state[key] = value.clone()
            else:
                member_state[key] = value
        out[name] = member_state
    return out


def _finish_monitored(
    nets: Sequence[NeuralNet],
    monitors: Sequence[MonitorCallback | None],
    frozen: dict[int, tuple[dict[str, dict[str, Any]], list[float]]],
) -> None:
    """Stopped members get their saved optimizer state; every member its best weights."""
    for k, (states, lrs) in frozen.items():
        net = nets[k]
        params = dict(net.module_.named_parameters())
        for name, state in states.items():
            net.optimizer_.state[params[name]] = state
        for group, lr in zip(net.optimizer_.param_groups, lrs):
            group["lr"] = lr
    for net, mon in zip(nets, monitors):
        if mon is not None:
            mon.monitor.restore(net.module_)



def _member_losses(nets: Sequence[NeuralNet]) -> Callable[[Tensor, Tensor], Tensor]:
    """A function of (outputs (M, B, C), targets (M, B, ...)) returning each member's loss."""
    crit = nets[0].criterion_
    weighted = type(crit) is SampleWeightedLoss and not crit.log_input
    if weighted:
        crit = crit.loss
    fast = (
        type(crit) is nn.CrossEntropyLoss
        and crit.weight is None
        and (crit.reduction == "mean" or weighted)
        and all(type(net.criterion_) is type(nets[0].criterion_) for net in nets)
    )
    if fast:
        smoothing = float(crit.label_smoothing)

        def cross_entropy(out: Tensor, yb: Tensor) -> Tensor:
            labels, weights = split_targets(yb)
            m, b = labels.shape
            per_sample = nn.functional.cross_entropy(
                out.reshape(m * b, -1), labels.reshape(-1), reduction="none",
                label_smoothing=smoothing,
            ).view(m, b)
            if weights is None:
                return per_sample.mean(dim=1)
            weights = weights.to(per_sample.dtype)
            return (per_sample * weights).sum(dim=1) / weights.sum(dim=1)

        return cross_entropy

    # Regression criteria (``_losses.py``) compute every member's loss at once.
    if callable(getattr(crit, "member_losses", None)) and all(
        type(net.criterion_) is type(crit) for net in nets
    ):
        return crit.member_losses

    def generic(out: Tensor, yb: Tensor) -> Tensor:
        return torch.stack([
            net.get_loss(out[m], yb[m], training=True) for m, net in enumerate(nets)
        ])

    return generic


def _target_dtype(y: np.ndarray) -> torch.dtype:
    """Class indices stay int64; regression targets train in float32."""
    return torch.float32 if np.issubdtype(np.asarray(y).dtype, np.floating) else torch.int64


@dataclass
class _Config:
    max_epochs: int
    batch_size: int
    drop_last: bool
    bootstrap: bool
    device: torch.device
    augment: Augment | None
    precision: str
    channels_last: bool
    lr_schedule: Schedule | None = None
    bootstrap_weights: Tensor | None = None
    replacement: bool = False


def _loader_config(net: NeuralNet, n_samples: int) -> tuple[int, bool, bool]:
    args = net.get_params_for("iterator_train")
    batch_size = int(args.get("batch_size", net.batch_size))
    if batch_size == -1:
        batch_size = n_samples
    sampler = args.get("sampler")
    bootstrap = bool(getattr(sampler, "bootstrap", False))
    return batch_size, bool(args.get("drop_last", False)), bootstrap


def _train_group(
    nets: Sequence[NeuralNet],
    seeds: Sequence[int],
    X: Tensor,
    y: Tensor,
    cfg: _Config,
    progress: Progress | None,
) -> str:
    """Train one group of members together, grouped if possible, else with ``vmap``.

    A grouped network that passed its checks but fails while training is replaced
    by the ``vmap`` form, starting again from the members' initial state (restored:
    checkpoints may have written them); a ``vmap`` form that fails raises
    :class:`GroupingError`.
    """
    modules = [net.module_ for net in nets]
    sample_shape = tuple(X.shape[1:])
    stacked, form = stack_members(modules, sample_shape, channels_last=cfg.channels_last,
                                  training=True)
    initial = [copy.deepcopy(mod.state_dict()) for mod in modules]
    try:
        return _train_stacked(stacked, form, nets, seeds, X, y, cfg, progress)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        if not isinstance(stacked, GroupedNetwork):
            raise GroupingError(f"training failed in the {form} form: {exc}") from exc
        why = f"the grouped form failed in training: {exc}"
    for mod, state in zip(modules, initial):
        mod.load_state_dict(state)
    try:
        stacked = VmapNetwork(modules)
        check_grouped(stacked, modules, sample_shape, training=True)
        return _train_stacked(stacked, f"vmap ({why})", nets, seeds, X, y, cfg, progress)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        raise GroupingError(f"{why}; the vmap form failed too: {exc}") from exc


def _train_stacked(
    stacked: GroupedNetwork | VmapNetwork,
    form: str,
    nets: Sequence[NeuralNet],
    seeds: Sequence[int],
    X: Tensor,
    y: Tensor,
    cfg: _Config,
    progress: Progress | None,
) -> str:
    modules = [net.module_ for net in nets]
    sample_shape = tuple(X.shape[1:])
    stacked.train()
    optimizer = _build_optimizer(stacked, nets[0])
    # Continued training starts from the members' epochs and optimizer state.
    firsts = [len(net.history) for net in nets]
    if any(firsts):
        if len(set(firsts)) > 1:
            raise GroupingError("the members have trained different numbers of epochs")
        _read_optimizer_state(stacked, optimizer, nets)
    first = firsts[0]
    losses_of = _member_losses(nets)
    device = cfg.device
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    # Every training-time draw of member m comes from its own stream, seeded as the
    # sequential engine seeds torch's global generator for it.
    stacked.set_training_seeds([continued_train_seed(int(s), first) for s in seeds])
    aug_gens = [torch.Generator(device=gen_device).manual_seed(augment_seed(s)) for s in seeds]
    # Each member's sampler says which rows it draws in each epoch (its own order,
    # bootstrap resample and training rows), exactly as in the sequential engine.
    samplers = [net.get_params_for("iterator_train")["sampler"] for net in nets]
    n = len(samplers[0])
    if any(len(sampler) != n for sampler in samplers):
        raise GroupingError("the members train on different numbers of rows")
    m = len(nets)
    stop = n - n % cfg.batch_size if cfg.drop_last else n
    monitors = [monitor_callback(net) for net in nets]
    for mon in monitors:
        if mon is not None:
            mon.monitor.reset()
    active = [True] * m
    n_run = [0] * m
    frozen: dict[int, tuple[dict[str, dict[str, Any]], list[float]]] = {}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=cfg.precision == "bf16")
    records: list[tuple[list[float], int, float]] = []
    # Continued training scales the groups' initial rates (kept as "initial_lr"), not
    # the rates an earlier call's schedule left.
    base_lrs = ([base_lr(group) for group in optimizer.param_groups]
                if cfg.lr_schedule is not None else [])
    recorders = [checkpoint_callback(net) for net in nets]
    hooks = [[cb for _, cb in net.callbacks_ if callable(getattr(cb, "on_stacked_epoch_end",
                                                                  None))]
             for net in nets]
    # The checks refuse forms that draw from torch's global generator in training; this
    # keeps anything they cannot see (a draw in only some steps) reproducible at least.
    with seeded_torch(derive_seed(train_seed(seeds[0]), _VMAP_STREAM, m)):
        for epoch in range(cfg.max_epochs):
            start_time = time.perf_counter()
            if cfg.lr_schedule is not None:
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = scheduled_lr(base, cfg.lr_schedule, first + epoch)
            # Hooks see the epoch counted over the member's history (continued
            # training goes on from it), and only while the member runs: a stopped
            # member's callbacks see no later epoch, as in the sequential engine.
            for hook in (h for k, member in enumerate(hooks) if active[k] for h in member):
                begin = getattr(hook, "on_stacked_epoch_begin", None)
                if callable(begin):
                    begin(first + epoch, optimizer.param_groups)
            order = torch.stack([sampler.indices(first + epoch)
                                 for sampler in samplers]).to(device)
            total = torch.zeros(m, device=device)
            n_batches = 0
            for start in range(0, stop, cfg.batch_size):
                idx = order[:, start : start + cfg.batch_size]
                b = idx.shape[1]
                xb = X.index_select(0, idx.reshape(-1)).view(m, b, *sample_shape)
                if cfg.augment is not None:
                    xb = torch.stack([cfg.augment(xb[k], aug_gens[k]) for k in range(m)])
                yb = y[idx]
                with autocast:
                    out = stacked(xb)
                losses = losses_of(out.float(), yb)
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()
                optimizer.step()
                total += losses.detach() * b
                n_batches += 1
            seen = max(stop, 1)
            epoch_losses = (total / seen).tolist()
            records.append((epoch_losses, n_batches, time.perf_counter() - start_time))
            running = [k for k in range(m) if active[k]]
            for k in running:
                n_run[k] += 1
            wanted = any(r is not None and r.wants(epoch) for r in recorders)
            if wanted or any(hooks):
                stacked.write_members(modules)  # trajectories see what the members hold
            if wanted:
                for recorder, module in zip(recorders, modules):
                    if recorder is not None:
                        recorder.record(epoch, module)
            for k in running:
                for hook in hooks[k]:
                    hook.on_stacked_epoch_end(first + epoch, modules[k])
            postfix = {"loss": f"{float(np.mean([epoch_losses[k] for k in running])):.4f}"}
            if any(mon is not None for mon in monitors):
                _monitor_epoch(stacked, optimizer, modules, monitors, active, frozen, postfix)
            if progress is not None:
                progress.advance(len(running), **postfix)
            if not any(active):
                break
    stacked.write_members(modules)
    _write_optimizer_state(stacked, optimizer, nets)
    for net in nets:
        # The member optimizers end where the stacked one did (scheduled learning rates).
        for own, stacked_group in zip(net.optimizer_.param_groups, optimizer.param_groups):
            own["lr"] = stacked_group["lr"]
            if "initial_lr" in stacked_group:
                own["initial_lr"] = stacked_group["initial_lr"]
    _finish_monitored(nets, monitors, frozen)
    for k, net in enumerate(nets):
        scores = monitors[k].monitor.scores if monitors[k] is not None else None
        for i, (epoch_losses, n_batches, duration) in enumerate(records[: n_run[k]]):
            net.history.new_epoch()
            net.history.record("epoch", len(net.history))
            net.history.record("train_loss", epoch_losses[k])
            net.history.record("train_batch_count", n_batches)
            net.history.record("dur", duration)
            if scores is not None:
                key = monitors[k].monitor.key
                net.history.record(key, scores[i])
                net.history.record(f"{key}_best", monitors[k].monitor.improved[i])
    if getattr(stacked, "member_by_member", False):
        form += (" [training draws random numbers: each member's forward pass runs "
                 "under its own stream]")
    return form


def fit_vectorized(
    nets: Sequence[NeuralNet],
    X: np.ndarray,
    y: np.ndarray,
    seeds: Sequence[int],
    progress: Progress | None = None,
    *,
    max_members_per_pass: int | None = None,
    augment: Augment | None = None,
    precision: str = "fp32",
    channels_last: bool | None = None,
    lr_schedule: Schedule | None = None,
    initialize: bool = True,
    sample_weight: np.ndarray | None = None,
    epochs: int | None = None,
) -> str:
    """Train member nets together, in one batched pass per step.

    Each member is initialised with :func:`initialize_member`, sees the batches
    the sequential engine would give it (:func:`epoch_indices`, last partial batch
    included), draws its dropout masks and augmentations from its own generators,
    and ends with its trained parameters, buffers, optimizer state and a training
    history in its own ``module_`` / ``optimizer_`` / ``history``.

    Parameters
    ----------
    nets : sequence of skorch.NeuralNet
        Configured, uninitialised member nets (see :func:`vectorization_blocker`).
    X : ndarray of shape (n_samples, ...)
        Training inputs, float32: feature vectors or (C, H, W) images.
    y : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Encoded integer targets, or float regression targets.
    seeds : sequence of int
        One seed per member.
    progress : Progress, optional
        Advanced by the number of members after each epoch.
    max_members_per_pass : int, optional
        Train at most this many members at once (``None``: all). On CUDA, a pass
        that runs out of memory is retried with half as many members.
    augment : callable, optional
        ``augment(x_batch, generator) -> x_batch``, applied on the device to each
        member's batch with the member's own generator.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"`` runs forward passes under bfloat16 autocast.
    channels_last : bool, optional
        Channels-last layout for image inputs; ``None`` uses it for every image
        input (grouped convolutions run faster channels-last on GPUs and CPUs alike).
    lr_schedule : callable, optional
        ``lr_schedule(epoch) -> multiplier`` of each parameter group's initial
        learning rate, applied at the start of every epoch (zero-based).
    initialize : bool, default=True
        Build each member from its seed first; ``False`` when the caller already
        did so with :func:`initialize_member`.

    Notes
    -----
    A member net's skorch callback that defines ``on_stacked_epoch_end(epoch,
    module)`` (and optionally ``on_stacked_epoch_begin(epoch, param_groups)``) does
    not block this engine: it is called at the end (start) of every zero-based epoch
    (counted over the member's history, as skorch counts it) with the member's module
    holding its current weights (with the stacked optimizer's parameter groups), as
    skorch would call it on the member net; a member stopped early sees no later
    epoch. SWAG moment collection works this way.
    sample_weight : ndarray of shape (n_samples,), optional
        Per-row loss weights, as in :func:`fit_sequential`.

    epochs : int, optional
        Epochs to run (default: the nets' ``max_epochs``). Members that have trained
        already (a non-empty history) continue: their data order and random draws go
        on from their epoch count, their optimizer state is carried over.

    Returns
    -------
    form : str
        How the members were stacked (``"grouped"`` or the vmap fallback and why).
    """
    if not nets:
        return "grouped"
    if initialize:
        for net, seed in zip(nets, seeds):
            initialize_member(net, int(seed))
    device = module_device(nets[0].module_)
    batch_size, drop_last, bootstrap = _loader_config(nets[0], len(X))
    if channels_last is None:
        channels_last = X.ndim == 4
    cfg = _Config(
        max_epochs=int(nets[0].max_epochs if epochs is None else epochs),
        batch_size=batch_size,
        drop_last=drop_last,
        bootstrap=bootstrap,
        device=device,
        augment=augment,
        precision=precision,
        channels_last=bool(channels_last) and X.ndim == 4,
        lr_schedule=lr_schedule,
        bootstrap_weights=getattr(nets[0].get_params_for("iterator_train").get("sampler"),
                                  "weights", None),
        replacement=bool(getattr(nets[0].get_params_for("iterator_train").get("sampler"),
                                 "replacement", False)),
    )
    Xd = torch.as_tensor(X).to(device)
    if sample_weight is None:
        yd = torch.as_tensor(y, dtype=_target_dtype(y)).to(device)
    else:
        yd = torch.as_tensor(weighted_targets(y, sample_weight)).to(device)
    size = len(nets) if max_members_per_pass is None else min(max_members_per_pass, len(nets))
    forms = []
    start = 0
    while start < len(nets):
        group = slice(start, start + size)
        try:
            forms.append(_train_group(nets[group], seeds[group], Xd, yd, cfg, progress))
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            size = (size + 1) // 2
            warnings.warn(
                f"Out of GPU memory; training {size} members per pass instead.",
                UserWarning,
                stacklevel=external_stacklevel(),
            )
            continue
        start += size
    n_passes = len(forms)
    return f"{forms[0]}, {size} members per pass" + (f" ({n_passes} passes)" if n_passes > 1
                                                       else "")
