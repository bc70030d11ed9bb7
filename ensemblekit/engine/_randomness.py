"""Per-member randomness: seeds, data order and seeded construction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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


def bootstrap_indices(
    seed: int, n_samples: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices of a member's bootstrap resample (with replacement, size ``n_samples``).

    With ``weights`` (non-negative, one per row) rows are drawn with probabilities
    proportional to them, as scikit-learn's ``BaggingClassifier`` draws with
    ``sample_weight``; the resample then carries the weights in its counts.
    """
    gen = torch.Generator().manual_seed(derive_seed(seed, _BOOTSTRAP_STREAM))
    if weights is not None:
        p = torch.as_tensor(weights, dtype=torch.float64)
        return torch.multinomial(p / p.sum(), n_samples, replacement=True, generator=gen)
    return torch.randint(n_samples, (n_samples,), generator=gen)


def epoch_indices(
    seed: int,
    epoch: int,
    n_samples: int,
    bootstrap: bool = False,
    weights: torch.Tensor | None = None,
    replacement: bool = False,
) -> torch.Tensor:
    """Training order of one member in one epoch.

    Each member shuffles its data with its own generator, derived from its seed and
    the epoch number, so every engine reproduces the same order without sharing state.
    With ``replacement``, each of the ``n_samples`` positions is instead drawn uniformly
    with replacement, so consecutive batches are independent draws, as in the code
    released with Fort, Hu & Lakshminarayanan (2019), which draws every batch with
    ``np.random.choice(N, batch_size)``.

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
    weights : torch.Tensor of shape (n_samples,), optional
        Bootstrap only: draw the resample with probabilities proportional to these
        row weights (see :func:`bootstrap_indices`).
    replacement : bool, default=False
        Draw the epoch's rows with replacement instead of permuting them.

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
    >>> len(epoch_indices(7, 0, 1000, replacement=True).unique()) < 1000
    True
    """
    gen = torch.Generator().manual_seed(derive_seed(seed, _ORDER_STREAM, epoch))
    if replacement:
        order = torch.randint(n_samples, (n_samples,), generator=gen)
    else:
        order = torch.randperm(n_samples, generator=gen)
    if bootstrap:
        return bootstrap_indices(seed, n_samples, weights)[order]
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
    weights : array-like of shape (n_samples,), optional
        Bootstrap only: row weights the resample is drawn in proportion to.
    rows : array-like of shape (n_samples,), optional
        The member's training rows (the others are held out, e.g. for validation):
        the sampler yields ``rows[i]`` for each drawn position ``i``.
    replacement : bool, default=False
        Whether each epoch's rows are drawn with replacement (see :func:`epoch_indices`).
    """

    def __init__(self, n_samples: int, seed: int, bootstrap: bool = False,
                 weights: Any = None, rows: Any = None, replacement: bool = False) -> None:
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self.bootstrap = bool(bootstrap)
        self.weights = None if weights is None else torch.as_tensor(weights,
                                                                    dtype=torch.float64)
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.int64)
        if self.rows is not None and len(self.rows) != self.n_samples:
            raise ValueError(f"rows holds {len(self.rows)} indices, expected {n_samples}")
        self.replacement = bool(replacement)
        self.epoch = 0

    def reset(self) -> None:
        """Start again from the first epoch."""
        self.epoch = 0

    def indices(self, epoch: int) -> torch.Tensor:
        """Return the rows drawn in one epoch, in order: what every engine trains on.

        Parameters
        ----------
        epoch : int
            Zero-based epoch number.

        Returns
        -------
        rows : torch.Tensor of shape (n_samples,)
            Row indices into the training data, on the CPU.
        """
        indices = epoch_indices(self.seed, epoch, self.n_samples, self.bootstrap,
                                getattr(self, "weights", None),
                                replacement=getattr(self, "replacement", False))
        rows = getattr(self, "rows", None)
        return indices if rows is None else rows[indices]

    def __iter__(self) -> Iterator[int]:
        indices = self.indices(self.epoch)
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


def global_rng_state(device: torch.device | None = None) -> list[torch.Tensor]:
    """Snapshot of torch's global generators: the CPU one and, on CUDA, the device's.

    Two equal snapshots taken around a block show that the block drew no random
    number from the global generators.
    """
    states = [torch.get_rng_state()]
    if device is not None and device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def same_rng_state(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    """Whether two snapshots of :func:`global_rng_state` are equal."""
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


class MemberStream:
    """A member's training-time random stream, as torch's global generators see it.

    The sequential engine trains a member with torch's global generators seeded by
    the member's training seed (CPU and CUDA alike, :func:`seeded_torch`); any draw
    a forward pass makes (``nn.Dropout``, ``F.dropout``, ``torch.randn_like``, an
    in-place ``normal_``) comes from that stream. A stacked form that runs a
    member's forward inside :meth:`active` continues the same stream, whatever
    other members share the pass.

    Parameters
    ----------
    seed : int
        The seed of the stream (a member's training seed).
    device : torch.device, optional
        The device the member trains on; a CUDA device gets its own stream too.

    Examples
    --------
    >>> a, b = MemberStream(5), MemberStream(5)
    >>> with a.active():
    ...     x = torch.rand(2)
    >>> with b.active():
    ...     y = torch.rand(2)
    >>> with a.active():
    ...     z = torch.rand(2)
    >>> bool(torch.equal(x, y)), bool(torch.equal(x, z))
    (True, False)
    """

    def __init__(self, seed: int, device: torch.device | None = None) -> None:
        self.cpu = torch.Generator().manual_seed(int(seed))
        self.device = device if device is not None and device.type == "cuda" else None
        self.cuda = (torch.Generator(device=self.device).manual_seed(int(seed))
                     if self.device is not None else None)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Run a block drawing from this stream through torch's global generators."""
        saved = global_rng_state(self.device)
        torch.set_rng_state(self.cpu.get_state())
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda.get_state(), self.device)
        try:
            yield
        finally:
            self.cpu.set_state(torch.get_rng_state())
            torch.set_rng_state(saved[0])
            if self.cuda is not None:
                self.cuda.set_state(torch.cuda.get_rng_state(self.device))
                torch.cuda.set_rng_state(saved[1], self.device)
