"""Data augmentation on the training device, drawn from each member's own generator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from skorch.callbacks import Callback
from torch import Tensor

from ._randomness import derive_seed

__all__ = ["Augment", "AugmentCallback", "augment_seed"]

_AUGMENT_STREAM = 13

Augment = Callable[[Tensor, torch.Generator], Tensor]


def augment_seed(seed: int) -> int:
    """Seed of a member's data-augmentation draws.

    Parameters
    ----------
    seed : int
        The member's seed.

    Returns
    -------
    int
        A seed independent of the member's initialisation and training seeds.
    """
    return derive_seed(seed, _AUGMENT_STREAM)


class AugmentCallback(Callback):
    """Apply an augmentation to each training batch in place (a skorch callback).

    Gives the sequential engine the ``augment`` hook of the vectorised engine: the
    draws come from a generator seeded with :func:`augment_seed`, so on the CPU both
    engines augment each member's batches identically.

    Parameters
    ----------
    augment : callable
        ``augment(x_batch, generator) -> x_batch``.
    seed : int
        The member's seed.
    """

    def __init__(self, augment: Augment, seed: int) -> None:
        self.augment = augment
        self.seed = seed

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self.generator_ = torch.Generator().manual_seed(augment_seed(self.seed))

    def on_batch_begin(self, net: Any, batch: Any = None, training: bool = False,
                       **kwargs: Any) -> None:
        if training and isinstance(batch, (tuple, list)) and isinstance(batch[0], Tensor):
            xb = batch[0]
            xb.copy_(self.augment(xb, self.generator_).to(xb.dtype))
