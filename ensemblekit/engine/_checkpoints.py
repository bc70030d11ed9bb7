"""Training trajectories: flat parameter vectors of every member after chosen epochs.

Both engines record through :class:`CheckpointCallback`: the sequential engine runs it
as a skorch callback at the end of each epoch, the vectorised engine calls
:meth:`CheckpointCallback.record` after writing the stacked parameters back into the
members. Each record goes into a shared :class:`CheckpointStore`, an array of shape
``(n_members, n_checkpoints, n_params)`` in memory or memory-mapped to a ``.npy`` file.
"""

from __future__ import annotations

import numbers
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parameters_to_vector

__all__ = [
    "CheckpointCallback",
    "CheckpointStore",
    "checkpoint_callback",
    "resolve_checkpoint_epochs",
]


def resolve_checkpoint_epochs(value: Any, max_epochs: int) -> np.ndarray | None:
    """Zero-based indices of the epochs after which parameters are recorded.

    Parameters
    ----------
    value : None, "all", int or sequence of int
        ``None``: no checkpoints. ``"all"``: after every epoch. An int ``k``: after
        every ``k``-th epoch (epochs ``k-1, 2k-1, ...``, zero-based, so the last epoch
        is included when ``k`` divides ``max_epochs``). A sequence: those zero-based
        epoch indices, each in ``[0, max_epochs - 1]``, without duplicates.
    max_epochs : int
        Number of training epochs.

    Returns
    -------
    epochs : ndarray of int64, sorted, or None
        The zero-based epochs to record; None when nothing is recorded.

    Raises
    ------
    ValueError
        For any other value, an epoch outside ``[0, max_epochs - 1]``, an empty or
        duplicated list, or ``k`` outside ``[1, max_epochs]``.

    Examples
    --------
    >>> resolve_checkpoint_epochs(3, 10).tolist()
    [2, 5, 8]
    >>> resolve_checkpoint_epochs("all", 3).tolist()
    [0, 1, 2]
    >>> resolve_checkpoint_epochs([4, 0], 5).tolist()
    [0, 4]
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value != "all":
            raise ValueError(
                "checkpoint_epochs must be None, 'all', a positive int k (every k-th epoch) "
                f"or a list of epoch indices, got {value!r}."
            )
        return np.arange(max_epochs, dtype=np.int64)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        k = int(value)
        if not 1 <= k <= max_epochs:
            raise ValueError(
                f"checkpoint_epochs={k} (every k-th epoch) must lie in [1, max_epochs="
                f"{max_epochs}]."
            )
        return np.arange(k - 1, max_epochs, k, dtype=np.int64)
    if isinstance(value, (bool, float, dict, set)) or not isinstance(
        value, (Sequence, np.ndarray)
    ):
        raise ValueError(
            "checkpoint_epochs must be None, 'all', a positive int k (every k-th epoch) "
            f"or a list of epoch indices, got {value!r}."
        )
    items = list(value)
    if not items:
        raise ValueError("checkpoint_epochs must not be an empty list.")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise ValueError(
                f"checkpoint_epochs must list integer epoch indices, got {item!r}."
            )
    epochs = np.array([int(item) for item in items], dtype=np.int64)
    bad = epochs[(epochs < 0) | (epochs >= max_epochs)]
    if bad.size:
        raise ValueError(
            f"checkpoint_epochs contains epoch {int(bad[0])}, but epochs are zero-based and "
            f"must lie in [0, max_epochs - 1] = [0, {max_epochs - 1}]."
        )
    if len(np.unique(epochs)) != len(epochs):
        raise ValueError(f"checkpoint_epochs contains duplicates: {epochs.tolist()}.")
    return np.sort(epochs)


def batchnorm_buffers(module: nn.Module) -> list[torch.Tensor]:
    """Running means and variances of the BatchNorm layers, in registration order."""
    out = []
    for layer in module.modules():
        if isinstance(layer, _BatchNorm) and layer.track_running_stats:
            out += [layer.running_mean, layer.running_var]
    return out


class CheckpointStore:
    """Checkpoints of several members, filled epoch by epoch.

    Parameters
    ----------
    n_members : int
        Number of members recorded.
    epochs : ndarray of int
        Sorted zero-based epochs recorded.
    directory : str or path-like or None, default=None
        Folder for memory-mapped ``.npy`` files (created if missing); ``None`` keeps
        the arrays in memory.

    Attributes
    ----------
    params : ndarray of shape (n_members, n_checkpoints, n_params), float32, or None
        Flat parameters (all weights and biases, in the module's registration order);
        allocated at the first record.
    buffers : ndarray of shape (n_members, n_checkpoints, n_buffer_values), float32
        BatchNorm running means and variances (``n_buffer_values = 0`` without
        BatchNorm).
    filled : ndarray of shape (n_members, n_checkpoints), bool
        Which entries were recorded.
    """

    def __init__(self, n_members: int, epochs: np.ndarray, directory: Any = None) -> None:
        self.n_members = int(n_members)
        self.epochs = np.asarray(epochs, dtype=np.int64)
        self.directory = directory
        self.params: np.ndarray | None = None
        self.buffers: np.ndarray | None = None
        self.filled = np.zeros((self.n_members, len(self.epochs)), dtype=bool)

    def _allocate(self, shape: tuple[int, ...], name: str) -> np.ndarray:
        # NaN marks checkpoints never recorded (training stopped early).
        if self.directory is None:
            return np.full(shape, np.nan, dtype=np.float32)
        os.makedirs(self.directory, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".npy", dir=self.directory)
        os.close(handle)
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        array[:] = np.nan
        return array

    def allocate(self, n_params: int, n_buffers: int) -> None:
        """Create the arrays (done by the first :meth:`record`).

        Parameters
        ----------
        n_params : int
            Length of one flat parameter vector.
        n_buffers : int
            Length of one flat vector of BatchNorm statistics.
        """
        k = len(self.epochs)
        self.params = self._allocate((self.n_members, k, n_params), "checkpoints")
        self.buffers = self._allocate((self.n_members, k, n_buffers), "checkpoint-buffers")

    def allocate_like(self, module: nn.Module) -> None:
        """Create the arrays for ``module``'s sizes if no record has done so.

        Parameters
        ----------
        module : torch.nn.Module
            A network of the recorded architecture.
        """
        if self.params is None:
            n_params = sum(p.numel() for p in module.parameters())
            self.allocate(n_params, sum(b.numel() for b in batchnorm_buffers(module)))

    def position(self, epoch: int) -> int | None:
        """Column of ``epoch`` in the arrays, or None when it is not recorded.

        Parameters
        ----------
        epoch : int
            Zero-based epoch.

        Returns
        -------
        int or None
            The column index.
        """
        pos = int(np.searchsorted(self.epochs, epoch))
        if pos < len(self.epochs) and self.epochs[pos] == epoch:
            return pos
        return None

    @torch.no_grad()
    def record(self, member: int, epoch: int, module: nn.Module) -> None:
        """Store ``module``'s parameters as member ``member``'s checkpoint of ``epoch``.

        Parameters
        ----------
        member : int
            Member index.
        epoch : int
            Zero-based epoch; epochs that are not recorded are ignored.
        module : torch.nn.Module
            The member's network.
        """
        pos = self.position(epoch)
        if pos is None:
            return
        theta = parameters_to_vector(module.parameters()).detach().float().cpu().numpy()
        buffers = batchnorm_buffers(module)
        stats = (
            torch.cat([b.detach().reshape(-1).float().cpu() for b in buffers]).numpy()
            if buffers else np.zeros(0, dtype=np.float32)
        )
        if self.params is None:
            self.allocate(theta.size, stats.size)
        assert self.params is not None and self.buffers is not None
        self.params[member, pos] = theta
        self.buffers[member, pos] = stats
        self.filled[member, pos] = True

    def flush(self) -> None:
        """Write memory-mapped arrays to disk."""
        for array in (self.params, self.buffers):
            if isinstance(array, np.memmap):
                array.flush()


class CheckpointCallback(Callback):
    """Record a member's flat parameters at the end of chosen epochs.

    The sequential engine runs it as a skorch callback; the vectorised engine calls
    :meth:`record` itself after writing the stacked parameters back into the members,
    so both engines record the same vectors.

    Parameters
    ----------
    store : CheckpointStore
        Where the vectors go (not pickled with the callback).
    member : int
        Row of this member in the store.
    """

    def __init__(self, store: CheckpointStore | None, member: int) -> None:
        self.store = store
        self.member = member

    def wants(self, epoch: int) -> bool:
        """Whether ``epoch`` (zero-based) is recorded.

        Parameters
        ----------
        epoch : int
            Zero-based epoch.

        Returns
        -------
        bool
            True when the epoch's checkpoint is kept.
        """
        return self.store is not None and self.store.position(epoch) is not None

    def record(self, epoch: int, module: nn.Module) -> None:
        """Store ``module``'s parameters as the checkpoint of ``epoch``.

        Parameters
        ----------
        epoch : int
            Zero-based epoch; epochs that are not recorded are ignored.
        module : torch.nn.Module
            This member's network.
        """
        if self.store is not None:
            self.store.record(self.member, epoch, module)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        # skorch appends the epoch's history row before the callbacks run.
        self.record(len(net.history) - 1, net.module_)

    def __getstate__(self) -> dict[str, Any]:
        # The store belongs to the estimator (``checkpoints_``), not to each member.
        state = dict(self.__dict__)
        state["store"] = None
        return state


def checkpoint_callback(net: Any) -> CheckpointCallback | None:
    """The initialised :class:`CheckpointCallback` of a skorch net, if it has one."""
    for _, cb in getattr(net, "callbacks_", None) or []:
        if isinstance(cb, CheckpointCallback):
            return cb
    return None
