"""Parameter checks shared by the estimators, with scikit-learn style messages."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import torch


def check_option(name: str, value: Any, options: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``options``, else raise a ValueError listing them."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}.")
    return value


def check_int(name: str, value: Any, *, min_value: int = 1) -> int:
    """Return ``value`` as an int if it is an integer of at least ``min_value``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {min_value}, got {value!r}.")
    if value < min_value:
        raise ValueError(f"{name} must be an integer >= {min_value}, got {value!r}.")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    low: float = 0.0,
    high: float = float("inf"),
    low_inclusive: bool = False,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as a float if it lies in the stated interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    if not (above and below):
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must lie in {left}{low}, {high}{right}, got {value!r}.")
    return value


def available_devices() -> list[str]:
    """Torch devices usable on this machine, e.g. ``['cpu', 'cuda:0']``.

    Examples
    --------
    >>> available_devices()[0]
    'cpu'
    """
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: Any) -> str:
    """Turn the ``device`` parameter into a torch device string.

    ``"auto"`` picks CUDA when it is available and the CPU otherwise.

    Raises
    ------
    ValueError
        When ``device`` is not a torch device, or names one this machine does not
        have (the message lists the available devices).

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto' or a torch device such as 'cpu' or 'cuda:0', got {device!r}."
        ) from exc
    available = available_devices()
    if parsed.type == "cpu":
        return str(parsed)
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            missing = "CUDA is not available"
        elif parsed.index is not None and parsed.index >= count:
            missing = f"this machine has {count} CUDA device(s)"
        else:
            return str(parsed)
    elif parsed.type == "mps" and "mps" in available:
        return str(parsed)
    elif parsed.type != "mps" and _backend_available(parsed.type):
        return str(parsed)
    else:
        missing = f"no {parsed.type} device is available"
    raise ValueError(
        f"device={device!r} was requested but {missing}; available devices: {available} "
        "(or 'auto')."
    )


def _backend_available(kind: str) -> bool:
    backend = getattr(torch, kind, None)
    is_available = getattr(backend, "is_available", None)
    try:
        return bool(callable(is_available) and is_available())
    except Exception:
        return False
