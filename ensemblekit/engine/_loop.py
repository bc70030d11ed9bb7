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

import numpy as np
import torch
from skorch import NeuralNet
from torch import Tensor, nn

from ._augment import Augment, augment_seed
from ._checkpoints import checkpoint_callback
from ._grouped import GroupedNetwork, GroupingError, check_grouped
from ._progress import Progress
from ._randomness import derive_seed, epoch_indices, seeded_torch
from ._schedule import Schedule, scheduled_lr
from ._sequential import initialize_member, module_device, train_seed
from ._stacking import _build_optimizer, _write_optimizer_state, stack_members
from ._vmap import VmapNetwork
from ._weights import SampleWeightedLoss, split_targets, weighted_targets

__all__ = ["fit_vectorized"]

_VMAP_STREAM = 14


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
    losses_of = _member_losses(nets)
    device = cfg.device
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    # Every training-time draw of member m comes from its own stream, seeded as the
    # sequential engine seeds torch's global generator for it.
    stacked.set_training_seeds([train_seed(int(s)) for s in seeds])
    aug_gens = [torch.Generator(device=gen_device).manual_seed(augment_seed(s)) for s in seeds]
    n = X.shape[0]
    m = len(nets)
    stop = n - n % cfg.batch_size if cfg.drop_last else n
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=cfg.precision == "bf16")
    records: list[tuple[list[float], int, float]] = []
    base_lrs = [group["lr"] for group in optimizer.param_groups]
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
                    group["lr"] = scheduled_lr(base, cfg.lr_schedule, epoch)
            for hook in (h for member in hooks for h in member):
                begin = getattr(hook, "on_stacked_epoch_begin", None)
                if callable(begin):
                    begin(epoch, optimizer.param_groups)
            order = torch.stack([
                epoch_indices(int(s), epoch, n, cfg.bootstrap, cfg.bootstrap_weights,
                              replacement=cfg.replacement)
                for s in seeds
            ]).to(device)
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
            if progress is not None:
                progress.advance(m, loss=f"{float(np.mean(epoch_losses)):.4f}")
            wanted = any(r is not None and r.wants(epoch) for r in recorders)
            if wanted or any(hooks):
                stacked.write_members(modules)  # trajectories see what the members hold
            if wanted:
                for recorder, module in zip(recorders, modules):
                    if recorder is not None:
                        recorder.record(epoch, module)
            for member_hooks, module in zip(hooks, modules):
                for hook in member_hooks:
                    hook.on_stacked_epoch_end(epoch, module)
    stacked.write_members(modules)
    _write_optimizer_state(stacked, optimizer, nets)
    for net in nets:
        # The member optimizers end where the stacked one did (scheduled learning rates).
        for own, stacked_group in zip(net.optimizer_.param_groups, optimizer.param_groups):
            own["lr"] = stacked_group["lr"]
    for k, net in enumerate(nets):
        for epoch_losses, n_batches, duration in records:
            net.history.new_epoch()
            net.history.record("epoch", len(net.history))
            net.history.record("train_loss", epoch_losses[k])
            net.history.record("train_batch_count", n_batches)
            net.history.record("dur", duration)
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
    with the member's module holding its current weights (with the stacked
    optimizer's parameter groups), as skorch would call it on the member net. SWAG
    moment collection works this way.
    sample_weight : ndarray of shape (n_samples,), optional
        Per-row loss weights, as in :func:`fit_sequential`.

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
        max_epochs=int(nets[0].max_epochs),
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
                stacklevel=2,
            )
            continue
        start += size
    n_passes = len(forms)
    return f"{forms[0]}, {size} members per pass" + (f" ({n_passes} passes)" if n_passes > 1
                                                       else "")
