"""Parameters that fix the fitted members: partial_fit refuses to run after they change.

``partial_fit`` continues the members built by the first fit, so a parameter that went
into building or training them (the network, its optimizer and learning rate, the
number of members, the seeds, the method's settings) cannot change between calls
without being silently ignored. The estimators record a fingerprint of those parameters
at the end of every fit and compare it at each ``partial_fit`` call.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

#: Parameters free to change between partial_fit calls: they do not apply to partial_fit
#: (early stopping, checkpoints, warm start, max_epochs), do not change the members
#: (verbosity, worker processes, prediction batches, engine grouping and precision, whose
#: engines give the same members), or are read again at every call (class_weight).
FREE_BETWEEN_CALLS = frozenset({
    "verbose", "n_jobs", "devices", "predict_batch_size", "max_epochs", "early_stopping",
    "validation_fraction", "n_iter_no_change", "tol", "validation_split", "memory",
    "checkpoint_dir", "checkpoint_epochs", "warm_start", "max_members_per_pass", "engine",
    "precision", "class_weight",
})


def _fingerprint(value: Any) -> Any:
    """A comparable, picklable stand-in for a parameter value."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return repr(value)
    if isinstance(value, type):
        return f"class {value.__module__}.{value.__qualname__}"
    if isinstance(value, (np.ndarray, torch.Tensor)):
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        array = np.ascontiguousarray(array)
        digest = hashlib.sha1(array.tobytes()).hexdigest()
        return f"array {array.shape} {array.dtype} {digest}"
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_fingerprint(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _fingerprint(v)) for k, v in value.items())))
    if isinstance(value, torch.nn.Module):
        state = tuple((k, _fingerprint(v)) for k, v in value.state_dict().items())
        return (f"module {type(value).__qualname__}", repr(value), state)
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if type(value).__repr__ is object.__repr__:
        # Only the address would tell two such objects apart, and copies or pickling
        # change it: the type is what can be compared.
        return kind
    return f"{kind} {value!r}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def member_params(estimator: Any) -> dict[str, tuple[Any, str]]:
    """Fingerprint and short text of every parameter that fixes the fitted members."""
    return {name: (_fingerprint(value), _short(value))
            for name, value in estimator.get_params(deep=False).items()
            if name not in FREE_BETWEEN_CALLS}


def check_unchanged(estimator: Any, recorded: dict[str, tuple[Any, str]] | None) -> None:
    """Raise when a parameter that fixes the members changed since they were fitted.

    Raises
    ------
    ValueError
        Naming each changed parameter with its value at fit and its value now.
    """
    if recorded is None:
        return
    now = member_params(estimator)
    changed = [
        f"{name} ({recorded[name][1] if name in recorded else 'unset'} -> "
        f"{now[name][1] if name in now else 'unset'})"
        for name in sorted(set(recorded) | set(now))
        if recorded.get(name, (None,))[0] != now.get(name, (None,))[0]
    ]
    if changed:
        raise ValueError(
            f"partial_fit continues the members of the first fit, but "
            f"{'this parameter has' if len(changed) == 1 else 'these parameters have'} "
            f"changed since: {', '.join(changed)}. Call fit to train new members with the "
            "new values, or set them back."
        )
