"""Prediction: every member evaluated in one grouped pass, the grouped network cached."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ._grouped import GroupedNetwork, GroupingError
from ._sequential import module_device, predict_logits_sequential
from ._stacking import stack_members

__all__ = ["MemberPredictor", "predict_member_logits"]

#: On the CPU, rows per grouped pass are chosen so that the widest activation of all
#: members together stays near this size (bytes). Activations that fit the cache, and
#: that the C allocator does not hand back to the system (to fault them in again on the
#: next call, as it does with blocks of a few MiB), made 1,000 rows through 5 MLPs
#: about twice as fast as a single pass, on a 2-core AMD EPYC; 1 MiB measured faster
#: than 512 KiB there (two 500-row passes instead of four of 250), and 2 MiB (one pass)
#: slower again.
_CPU_PASS_BYTES = 1 << 20
#: ... but never fewer rows than this (wide convolutional maps).
_CPU_MIN_ROWS = 64


def _member_tensors(modules: Sequence[nn.Module]) -> list[torch.Tensor]:
    return [t for mod in modules for t in (*mod.parameters(), *mod.buffers())]


def _weights_key(tensors: Sequence[torch.Tensor]) -> tuple[tuple[int, int], ...]:
    """Changes whenever one of the tensors is modified in place or moved."""
    return tuple((t._version, t.data_ptr()) for t in tensors)


class MemberPredictor:
    """Evaluates a set of member modules, all members in one grouped pass per chunk.

    The grouped network (or the decision that the members cannot be grouped) is
    built and checked on the first call and reused by later calls with the same
    members, as long as none of their parameters or buffers has changed: the
    members are held through weak references and each parameter's and buffer's
    version counter and storage are compared, so a warm start, another set of
    posterior samples, further training of a member, ``load_state_dict`` or a move
    to another device builds it again. (Writes through ``.data`` bypass version
    counters: call :meth:`invalidate` after them.) The cache is never pickled: an
    unpickled predictor builds it on its first call.

    Rows go through in passes of at most ``batch_size``; on the CPU the passes are
    smaller (equal-sized, at least 64 rows) when all members' widest activation over
    ``batch_size`` rows would exceed 1 MiB, as it is measured when the grouped network
    is built: cache-sized activations are faster there.

    Parameters
    ----------
    max_members_per_pass : int, optional
        Members evaluated at once (``None``: all).

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.models import MLP
    >>> from ensemblekit.engine import predict_logits_sequential
    >>> members = [MLP(4, 3), MLP(4, 3)]
    >>> X = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    >>> predictor = MemberPredictor()
    >>> a = predictor(members, X, batch_size=4)
    >>> b = predictor(members, X, batch_size=4)     # reuses the grouped network
    >>> c = predict_logits_sequential(members, X, batch_size=4)
    >>> a.shape, bool(np.allclose(a, c, atol=1e-5)), predictor.n_builds
    ((2, 10, 3), True, 1)
    """

    def __init__(self, max_members_per_pass: int | None = None) -> None:
        self.max_members_per_pass = max_members_per_pass
        self._clear()

    def _clear(self) -> None:
        self._refs: list[weakref.ref[nn.Module]] = []
        self._tensors: list[torch.Tensor] = []
        self._key: tuple[Any, ...] | None = None
        self._parts: list[tuple[list[int], GroupedNetwork | None]] = []
        #: Per part: bytes of its widest grouped activation per row (0: unknown).
        self._row_bytes: list[int] = []
        self._device = torch.device("cpu")
        #: How many times the grouped network was built (for tests and benchmarks).
        self.n_builds = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"max_members_per_pass": self.max_members_per_pass, "n_builds": 0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_members_per_pass = state.get("max_members_per_pass")
        self._clear()

    def invalidate(self) -> None:
        """Drop the cached grouped network (the next call builds it again)."""
        n_builds = self.n_builds
        self._clear()
        self.n_builds = n_builds

    def _same_members(self, modules: Sequence[nn.Module]) -> bool:
        return len(modules) == len(self._refs) and all(
            ref() is mod for ref, mod in zip(self._refs, modules)
        )

    def _build(self, modules: list[nn.Module], sample_shape: tuple[int, ...]) -> None:
        self._parts = []
        self._row_bytes = []
        devices = {module_device(mod) for mod in modules}
        self._device = next(iter(devices))
        groupable = len(modules) >= 2 and len(devices) == 1 and len(sample_shape) in (1, 2, 3)
        size = len(modules) if self.max_members_per_pass is None else self.max_members_per_pass
        for first in range(0, len(modules), max(1, size)):
            index = list(range(first, min(first + size, len(modules))))
            grouped = None
            row_bytes = 0
            if groupable and len(index) >= 2:
                try:
                    grouped, _ = stack_members(
                        [modules[i] for i in index], sample_shape, allow_vmap=False,
                        channels_last=len(sample_shape) == 3, training=False,
                    )
                    grouped.eval()
                    grouped.requires_grad_(False)
                    row_bytes = _check_shared_input(grouped, [modules[i] for i in index],
                                                    sample_shape)
                except GroupingError:
                    grouped = None
            self._parts.append((index, grouped))
            self._row_bytes.append(row_bytes)
        self._refs = [weakref.ref(mod) for mod in modules]
        self._tensors = _member_tensors(modules)
        self.n_builds += 1

    def __call__(self, modules: Sequence[nn.Module], X: np.ndarray,
                 batch_size: int) -> np.ndarray:
        """Logits of every member, in chunks of ``batch_size`` rows.

        Parameters
        ----------
        modules : sequence of torch.nn.Module
            The members (evaluated in eval mode).
        X : ndarray of shape (n_samples, ...)
            Inputs, float32.
        batch_size : int
            Rows per chunk.

        Returns
        -------
        logits : ndarray of shape (n_members, n_samples, n_classes), float32
            Member ``m``'s logits in row ``m``.
        """
        modules = list(modules)
        if len(X) == 0 or len(modules) < 2:
            return predict_logits_sequential(modules, X, batch_size)
        sample_shape = tuple(X.shape[1:])
        key = self._key
        if (key is None or key[0] != sample_shape or not self._same_members(modules)
                or key[1] != _weights_key(self._tensors)):
            self._build(modules, sample_shape)
            self._key = (sample_shape, _weights_key(self._tensors))
        parts = self._parts
        if len(parts) == 1 and parts[0][1] is not None:
            return _grouped_logits(parts[0][1], self._device, X,
                                   self._rows_per_pass(0, batch_size))
        out: np.ndarray | None = None
        for p, (index, grouped) in enumerate(parts):
            if grouped is None:
                part = predict_logits_sequential([modules[i] for i in index], X, batch_size)
            else:
                part = _grouped_logits(grouped, self._device, X,
                                       self._rows_per_pass(p, batch_size))
            if out is None:
                out = np.empty((len(modules), *part.shape[1:]), dtype=np.float32)
            out[index[0] : index[-1] + 1] = part
        assert out is not None
        return out

    def _rows_per_pass(self, part: int, batch_size: int) -> int:
        """Rows per grouped pass: ``batch_size``, fewer on the CPU for wide activations."""
        row_bytes = self._row_bytes[part]
        if self._device.type != "cpu" or row_bytes <= 0:
            return batch_size
        return max(1, min(batch_size, max(_CPU_MIN_ROWS, _CPU_PASS_BYTES // row_bytes)))


def _check_shared_input(grouped: GroupedNetwork, members: Sequence[nn.Module],
                        sample_shape: tuple[int, ...]) -> int:
    """Prediction feeds every member the same rows: check that path too.

    Returns
    -------
    row_bytes : int
        Bytes per input row of the widest activation of the grouped pass.
    """
    device = module_device(members[0])
    n_rows = 5
    x = torch.randn(n_rows, *sample_shape,
                    generator=torch.Generator().manual_seed(2)).to(device)
    widest = [0]

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            widest[0] = max(widest[0], output.numel() * output.element_size())

    hooks = [mod.register_forward_hook(record) for mod in grouped.modules()]
    try:
        with torch.inference_mode():
            out = grouped(x.unsqueeze(0).expand(len(members), *x.shape))
    finally:
        for hook in hooks:
            hook.remove()
    with torch.inference_mode():
        for m, member in enumerate(members):
            was_training = member.training
            member.eval()
            ref = member(x)
            member.train(was_training)
            scale = max(1.0, float(ref.abs().max()))
            if out[m].shape != ref.shape or not torch.allclose(
                out[m].float(), ref.float(), rtol=1e-4, atol=1e-5 * scale
            ):
                raise GroupingError("the grouped network does not reproduce the members on "
                                    "shared inputs")
    return -(-widest[0] // n_rows)


def _grouped_logits(grouped: GroupedNetwork, device: torch.device, X: np.ndarray,
                    rows: int) -> np.ndarray:
    """Logits of every member of ``grouped`` on ``X``, in equal passes of at most ``rows``."""
    m = grouped.n_members
    n = len(X)
    n_passes = -(-n // rows)
    rows = -(-n // n_passes)
    cpu = device.type == "cpu"
    with torch.inference_mode():
        if n_passes == 1:
            x = torch.from_numpy(X) if cpu else torch.as_tensor(X, device=device)
            logits = grouped(x.unsqueeze(0).expand(m, *x.shape)).float()
            return np.ascontiguousarray(logits.cpu().numpy())
        out: np.ndarray | None = None
        for start in range(0, n, rows):
            x = torch.from_numpy(X[start : start + rows])
            if not cpu:
                x = x.to(device)
            logits = grouped(x.unsqueeze(0).expand(m, *x.shape)).float().cpu().numpy()
            if out is None:
                out = np.empty((m, n, logits.shape[2]), dtype=np.float32)
            out[:, start : start + logits.shape[1]] = logits
    assert out is not None
    return out


def predict_member_logits(
    modules: Sequence[nn.Module],
    X: np.ndarray,
    batch_size: int,
    *,
    max_members_per_pass: int | None = None,
) -> np.ndarray:
    """Compute the logits of every member, all members in one grouped pass per chunk.

    Falls back to :func:`predict_logits_sequential` when the members cannot be
    grouped (or there is a single member). Builds the grouped network for this call
    only; estimators keep a :class:`MemberPredictor` instead.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        The members, on one device; evaluated in eval mode.
    X : ndarray of shape (n_samples, ...)
        Inputs, float32.
    batch_size : int
        Rows per chunk.
    max_members_per_pass : int, optional
        Members evaluated at once (``None``: all).

    Returns
    -------
    logits : ndarray of shape (n_members, n_samples, n_classes), float32
        Member ``m``'s logits in row ``m``.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.models import MLP
    >>> from ensemblekit.engine import predict_logits_sequential
    >>> members = [MLP(4, 3), MLP(4, 3)]
    >>> X = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    >>> a = predict_member_logits(members, X, batch_size=4)
    >>> b = predict_logits_sequential(members, X, batch_size=4)
    >>> a.shape, bool(np.allclose(a, b, atol=1e-5))
    ((2, 10, 3), True)
    """
    return MemberPredictor(max_members_per_pass)(modules, X, batch_size)
