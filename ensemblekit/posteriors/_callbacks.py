"""skorch callbacks that record what the posteriors are built from during training."""

from __future__ import annotations

from typing import Any

import torch
from skorch.callbacks import Callback

from ._swag import SWAGMoments
from ._vector import flatten_parameters


def _epoch(net: Any) -> int:
    # skorch appends the history row of an epoch before the callbacks see it.
    return len(net.history) - 1


class SWAGCollector(Callback):
    """Collect SWAG moments during the SWA phase of training.

    From epoch ``swa_start`` (zero-based) on, the optimizer's learning rate is set
    to ``swa_lr`` at the start of every epoch (when given), and at the end of every
    ``swa_freq``-th epoch the parameters are added to :attr:`moments`.

    Parameters
    ----------
    swa_start : int
        First epoch of the SWA phase, zero-based.
    swa_freq : int, default=1
        Collect every ``swa_freq`` epochs.
    swa_lr : float or None, default=None
        Constant learning rate of the SWA phase; ``None`` keeps the optimizer's.
    max_rank : int, default=20
        Number of deviation columns kept.

    Attributes
    ----------
    moments : SWAGMoments
        The collected moments (reset when training starts).
    """

    def __init__(
        self, swa_start: int, swa_freq: int = 1, swa_lr: float | None = None, max_rank: int = 20
    ) -> None:
        self.swa_start = swa_start
        self.swa_freq = swa_freq
        self.swa_lr = swa_lr
        self.max_rank = max_rank

    def initialize(self) -> SWAGCollector:
        self.moments = SWAGMoments(max_rank=self.max_rank)
        return self

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        self.on_stacked_epoch_begin(_epoch(net), net.optimizer_.param_groups)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self.on_stacked_epoch_end(_epoch(net), net.module_)

    # The vectorised engine calls these two with the stacked optimizer's groups and
    # the member's module as it stands after each epoch (zero-based).
    def on_stacked_epoch_begin(self, epoch: int, param_groups: list[dict[str, Any]]) -> None:
        """Set the SWA learning rate from ``swa_start`` on."""
        if self.swa_lr is not None and epoch >= self.swa_start:
            for group in param_groups:
                group["lr"] = self.swa_lr

    def on_stacked_epoch_end(self, epoch: int, module: torch.nn.Module) -> None:
        """Collect the parameters every ``swa_freq`` epochs from ``swa_start`` on."""
        if epoch >= self.swa_start and (epoch - self.swa_start) % self.swa_freq == 0:
            self.moments.collect(flatten_parameters(module))


class CheckpointCollector(Callback):
    """Keep the flat parameter vector at the end of every epoch from ``start`` on.

    Epochs are counted over the net's whole history, so training continued later
    (``partial_fit``) records its epochs after those of the first fit.

    Parameters
    ----------
    start : int
        First epoch recorded, zero-based.
    keep : int or None, default=None
        Keep only the ``keep`` most recent checkpoints (a sliding window over the
        trajectory); ``None`` keeps all of them.

    Attributes
    ----------
    checkpoints : list of torch.Tensor of shape (n_parameters,)
        One float32 CPU vector per recorded epoch (reset when training starts).
    epochs : list of int
        The zero-based epoch of each checkpoint.

    Examples
    --------
    >>> collector = CheckpointCollector(start=1, keep=2).initialize()
    >>> layer = torch.nn.Linear(1, 1)
    >>> for epoch in range(4):
    ...     collector.on_stacked_epoch_end(epoch, layer)
    >>> collector.epochs, len(collector.checkpoints)
    ([2, 3], 2)
    """

    def __init__(self, start: int, keep: int | None = None) -> None:
        self.start = start
        self.keep = keep

    def initialize(self) -> CheckpointCollector:
        self.checkpoints: list[torch.Tensor] = []
        self.epochs: list[int] = []
        return self

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self.on_stacked_epoch_end(_epoch(net), net.module_)

    # The vectorised engine calls this with the member's module as it stands after
    # each epoch (zero-based, counted over the member's history).
    def on_stacked_epoch_end(self, epoch: int, module: torch.nn.Module) -> None:
        """Record the parameters after ``epoch`` if it is ``start`` or later."""
        if epoch < self.start:
            return
        self.checkpoints.append(flatten_parameters(module).float().cpu())
        self.epochs.append(int(epoch))
        keep = getattr(self, "keep", None)
        if keep is not None and len(self.checkpoints) > keep:
            del self.checkpoints[:-keep], self.epochs[:-keep]
