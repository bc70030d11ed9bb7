"""Per-member randomness: seeds, data order and seeded construction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Sampler

MAX_SEED = int(np.iinfo(np.int32).max)


def draw_member_seeds(random_state: int | np.random.RandomState | None, n: int) -> np.ndarray:
    """Draw ``n`` integer member seeds from ``random_state``.

    The first ``k`` seeds do not depend on ``n``, so growing an ensemble with
    ``warm_start`` gives the members a full fit would have given.

    Parameters
    ----------
    random_state : int, numpy.random.RandomState or None
        Source of the seeds, as scikit-learn's ``check_random_state`` accepts it.
    n : int
        Number of seeds.

    Returns
    -------
    ndarray of shape (n,)
        Integer seeds, one per member.

    Examples
    --------
    >>> draw_member_seeds(0, 3).tolist() == draw_member_seeds(0, 5)[:3].tolist()
    True
    """
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    return rng.randint(MAX_SEED, size=n).astype(np.int64)


def derive_seed(seed: int, *keys: int) -> int:
    """Derive an independent 63-bit seed from ``seed`` and integer ``keys``.

    Parameters
    ----------
    seed : int
        The parent seed.
    *keys : int
        Integers naming the stream (for instance a member or an epoch index).

    Returns
    -------
    int
        A seed in ``[0, 2**63)``; different keys give independent streams.
    """
    state = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


# Stream identifiers, so that data order and bootstrap resamples never share a stream.
_ORDER_STREAM = 1
_BOOTSTRAP_STREAM = 2


def bootstrap_indices(seed: int, n_samples: int) -> torch.Tensor:
    """Indices of a member's bootstrap resample (with replacement, size ``n_samples``)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, _BOOTSTRAP_STREAM))
    return torch.randint(n_samples, (n_samples,), generator=gen)


def epoch_indices(seed: int, epoch: int, n_samples: int, bootstrap: bool = False) -> torch.Tensor:
    """Training order of one member in one epoch.

    Each member shuffles its data with its own generator, derived from its seed and
    the epoch number, so every engine reproduces the same order without sharing state.

    Parameters
    ----------
    seed : int
        The member's seed.
    epoch : int
        Zero-based epoch number.
    n_samples : int
        Number of training samples.
    bootstrap : bool, default=False
        Whether the member trains on a bootstrap resample of the data.

    Returns
    -------
    indices : torch.Tensor of shape (n_samples,)
        Row indices into the training data, on the CPU.

    Examples
    --------
    >>> a = epoch_indices(7, 0, 5)
    >>> sorted(a.tolist())
    [0, 1, 2, 3, 4]
    >>> bool((a == epoch_indices(7, 0, 5)).all())
    True
    """
    gen = torch.Generator().manual_seed(derive_seed(seed, _ORDER_STREAM, epoch))
    order = torch.randperm(n_samples, generator=gen)
    if bootstrap:
        return bootstrap_indices(seed, n_samples)[order]
    return order


class MemberSampler(Sampler[int]):
    """A ``DataLoader`` sampler yielding one member's order, epoch after epoch.

    Parameters
    ----------
    n_samples : int
        Number of training samples.
    seed : int
        The member's seed.
    bootstrap : bool, default=False
        Whether to draw a bootstrap resample.
    """

    def __init__(self, n_samples: int, seed: int, bootstrap: bool = False) -> None:
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self.bootstrap = bool(bootstrap)
        self.epoch = 0

    def reset(self) -> None:
        """Start again from the first epoch."""
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        indices = epoch_indices(self.seed, self.epoch, self.n_samples, self.bootstrap)
        self.epoch += 1
        return iter(indices.tolist())

    def __len__(self) -> int:
        return self.n_samples


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded by ``seed``, restoring it afterwards.

    PyTorch layers draw their initial weights and dropout masks from the global
    generator; forking it confines the seed to the block, so the caller's random
    stream is left exactly as it was.

    Parameters
    ----------
    seed : int
        Seed of torch's global generator inside the block.

    Yields
    ------
    None
        Control to the block.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
