"""Which engine trains a set of members: feasibility, fallbacks, the entry point."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from skorch import NeuralNet, NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import Callback
from skorch.dataset import Dataset

from .._stacklevel import external_stacklevel
from ._augment import Augment, AugmentCallback
from ._checkpoints import CheckpointCallback
from ._grouped import GroupingError
from ._loop import fit_vectorized
from ._monitor import MonitorCallback, StopCallback
from ._progress import Progress, ProgressCallback
from ._randomness import MemberSampler
from ._schedule import LRScheduleCallback, Schedule
from ._sequential import fit_sequential, initialize_member
from ._stacking import stack_members

__all__ = [
    "ELEMENTWISE_OPTIMIZERS",
    "ENGINES",
    "PRECISIONS",
    "EngineChoice",
    "train_members",
    "vectorization_blocker",
]

ENGINES = ("auto", "sequential", "vectorized")
PRECISIONS = ("fp32", "bf16")

#: Optimizers whose update of each parameter element depends on that element alone
#: (and on the step count): they update stacked members exactly as separate ones.
ELEMENTWISE_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
    torch.optim.Adadelta,
    torch.optim.Rprop,
    torch.optim.ASGD,
)

# DataLoader arguments that do not change which rows form a batch.
_HARMLESS_ITERATOR_ARGS = (
    "sampler", "batch_size", "drop_last", "num_workers", "pin_memory",
    "persistent_workers", "prefetch_factor", "timeout", "generator",
)


@dataclass(frozen=True)
class EngineChoice:
    """Which engine trained a set of members, and why.

    Parameters
    ----------
    engine : {"sequential", "vectorized"}
        The engine that ran.
    reason : str
        A human-readable explanation (the stacked form used, or why the
        vectorised engine was not possible).
    """

    engine: str
    reason: str


def _user_callbacks(net: NeuralNet) -> list[str]:
    names = []
    for entry in net.callbacks or []:
        name, cb = entry if isinstance(entry, tuple) else (type(entry).__name__, entry)
        if isinstance(cb, (ProgressCallback, AugmentCallback, LRScheduleCallback,
                           CheckpointCallback, MonitorCallback, StopCallback)):
            continue
        if callable(getattr(cb, "on_stacked_epoch_end", None)):
            continue  # it declares what it does per epoch (see fit_vectorized)
        names.append(str(name))
    return names


def vectorization_blocker(net: NeuralNet) -> str | None:
    """Why a member net cannot be trained by the vectorised engine (``None`` if it can).

    Looks only at the net's configuration (callbacks, optimizer, data loading,
    overridden training steps); the module itself is checked by
    :func:`stack_members`.

    Parameters
    ----------
    net : skorch.NeuralNet
        A member net.

    Returns
    -------
    str or None
        The reason, or ``None`` when nothing in the configuration stands in the way.

    Examples
    --------
    >>> from skorch import NeuralNetClassifier
    >>> from skorch.callbacks import LRScheduler
    >>> from ensemblekit.models import MLP
    >>> net = NeuralNetClassifier(MLP, callbacks=[LRScheduler()])
    >>> vectorization_blocker(net)
    'skorch callbacks (LRScheduler) only run in the sequential engine'
    """
    callbacks = _user_callbacks(net)
    if callbacks:
        return f"skorch callbacks ({', '.join(callbacks)}) only run in the sequential engine"
    optimizer = net.optimizer
    if not (isinstance(optimizer, type) and optimizer in ELEMENTWISE_OPTIMIZERS):
        name = getattr(optimizer, "__name__", repr(optimizer))
        return (f"optimizer {name} is not known to update each parameter element "
                "independently")
    iterator_args = net.get_params_for("iterator_train")
    extra = sorted(set(iterator_args) - set(_HARMLESS_ITERATOR_ARGS))
    if extra:
        return f"iterator_train__{extra[0]} changes how batches are formed"
    if not isinstance(iterator_args.get("sampler"), MemberSampler):
        return "the members do not draw their data order from a MemberSampler"
    if net.dataset is not Dataset or net.get_params_for("dataset"):
        return "a custom skorch dataset is used"
    reference = NeuralNetRegressor if isinstance(net, NeuralNetRegressor) else NeuralNetClassifier
    for method in ("train_step", "train_step_single", "infer", "get_loss", "fit_loop",
                   "run_single_epoch"):
        if getattr(type(net), method) is not getattr(reference, method):
            return f"the member net overrides {method}"
    return None


def train_members(
    nets: Sequence[NeuralNet],
    X: np.ndarray,
    y: np.ndarray,
    seeds: Sequence[int],
    progress: Progress | None = None,
    *,
    engine: str = "auto",
    max_members_per_pass: int | None = None,
    augment: Augment | None = None,
    precision: str = "fp32",
    lr_schedule: Schedule | None = None,
    sample_weight: np.ndarray | None = None,
    initialize: bool = True,
    epochs: int | None = None,
) -> EngineChoice:
    """Train member nets with the requested engine, falling back where needed.

    ``"auto"`` uses the vectorised engine when the members allow it and the
    sequential engine otherwise; ``"vectorized"`` raises a ValueError when it is
    not possible. This is the entry point estimators use.

    Parameters
    ----------
    nets : sequence of skorch.NeuralNet
        The member nets, as in :func:`fit_vectorized`.
    X : ndarray of shape (n_samples, ...)
        Training inputs, as in :func:`fit_vectorized`.
    y : ndarray of shape (n_samples,)
        Training targets, as in :func:`fit_vectorized`.
    seeds : sequence of int
        One seed per member, as in :func:`fit_vectorized`.
    progress : Progress or None, default=None
        Progress bar advanced once per member-epoch.
    engine : {"auto", "sequential", "vectorized"}, default="auto"
        The engine to use.
    max_members_per_pass : int or None, default=None
        As in :func:`fit_vectorized`.
    augment : callable or None, default=None
        As in :func:`fit_vectorized`; also applied by the sequential engine (through
        :class:`AugmentCallback`).
    precision : {"fp32", "bf16"}, default="fp32"
        As in :func:`fit_vectorized`; the sequential engine ignores it.
    lr_schedule : callable or None, default=None
        As in :func:`fit_vectorized`; also applied by the sequential engine (through
        :class:`LRScheduleCallback`).
    sample_weight : ndarray of shape (n_samples,) or None, default=None
        As in :func:`fit_vectorized`; also applied by the sequential engine.

    initialize : bool, default=True
        ``False`` continues training fitted members (see :func:`fit_vectorized`);
        members with different epoch counts (stopped apart by early stopping) are
        trained in groups of one epoch count, each group in the engine it allows.
    epochs : int, optional
        Epochs to run (default: the nets' ``max_epochs``).

    Returns
    -------
    choice : EngineChoice
        The engine that ran and why.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}.")
    if not initialize and len({len(net.history) for net in nets}) > 1:
        # Continued members that stopped at different epochs (early stopping): those
        # of one epoch count train together, as the vectorised engine steps members
        # of one epoch and optimizer step count.
        groups: dict[int, list[int]] = {}
        for k, net in enumerate(nets):
            groups.setdefault(len(net.history), []).append(k)
        choices = [
            train_members(
                [nets[k] for k in members], X, y, [int(seeds[k]) for k in members],
                progress, engine=engine, max_members_per_pass=max_members_per_pass,
                augment=augment, precision=precision, lr_schedule=lr_schedule,
                sample_weight=sample_weight, initialize=False, epochs=epochs,
            )
            for _, members in sorted(groups.items())
        ]
        fallback = next((c for c in choices if c.engine != "vectorized"), None)
        return choices[0] if fallback is None else fallback
    reason = "requested"
    if engine != "sequential":
        blocker = next((b for b in map(vectorization_blocker, nets) if b), None)
        if blocker is None and nets:
            for net, seed in zip(nets, seeds):
                if initialize:
                    initialize_member(net, int(seed))
            probe = [net.module_ for net in nets[: max_members_per_pass or len(nets)]]
            try:
                stack_members(probe, X.shape[1:], training=True)
            except GroupingError as exc:
                blocker = str(exc)
        if blocker is None:
            try:
                form = fit_vectorized(
                    nets, X, y, seeds, progress, max_members_per_pass=max_members_per_pass,
                    augment=augment, precision=precision, lr_schedule=lr_schedule,
                    initialize=False,  # the members were built from their seeds for the probe
                    sample_weight=sample_weight, epochs=epochs,
                )
            except GroupingError as exc:
                # fit_sequential builds every member again from its seed.
                blocker = f"the vectorised engine failed in training ({exc})"
            else:
                if engine == "vectorized" and form.startswith("vmap"):
                    warnings.warn(f"The vectorised engine runs with {form}.", UserWarning,
                                  stacklevel=external_stacklevel())
                return EngineChoice("vectorized", form)
        if engine == "vectorized":
            raise ValueError(
                f"engine='vectorized' cannot train these members: {blocker}. "
                "Use engine='sequential' (or 'auto', which falls back to it)."
            )
        reason = blocker
    if augment is not None:
        for net, seed in zip(nets, seeds):
            _attach_callback(net, "ensemblekit_augment", AugmentCallback(augment, int(seed)))
    if lr_schedule is not None:
        for net in nets:
            _attach_callback(net, "ensemblekit_lr_schedule", LRScheduleCallback(lr_schedule))
    fit_sequential(nets, X, y, seeds, progress, sample_weight, initialize=initialize,
                   epochs=epochs)
    return EngineChoice("sequential", reason)


def _attach_callback(net: NeuralNet, name: str, callback: Callback) -> None:
    """Give ``net`` the callback ``name`` once, replacing an earlier one of that name.

    An initialised net (continued training) gets it in its live callbacks too:
    skorch builds those only when it initialises the net.
    """
    entries = list(net.callbacks or [])
    kept = [e for e in entries if not (isinstance(e, tuple) and e[0] == name)]
    net.callbacks = [*kept, (name, callback)]
    if getattr(net, "initialized_", False):
        live = [(n, cb) for n, cb in net.callbacks_ if n != name]
        net.callbacks_ = [*live, (name, callback.initialize())]
