"""A check of the member module on a few training rows, before any training.

Running the freshly built first member on a couple of rows turns the raw errors torch
raises deep inside a training loop (wrong channel count, channels-last images, a
flattened size that does not match) into one clear ``ValueError`` at ``fit``, checks
that the module returns one output per class, and tells what those outputs are
(logits, probabilities or log-probabilities).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from skorch import NeuralNet
from torch import nn

from .._stacklevel import external_stacklevel
from ..engine import derive_seed, initialize_member, module_device, seeded_torch
from ._outputs import OutputKind, resolve_output_kind

#: Training rows the probe evaluates.
PROBE_ROWS = 16
_PROBE_STREAM = 51

_LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def probe_member(net: NeuralNet, seed: int, X: np.ndarray, n_classes: int) -> OutputKind:
    """Build ``net`` from ``seed``, run it on a few rows of ``X`` and check its outputs.

    Parameters
    ----------
    net : skorch.NeuralNet
        A configured member net; it is initialised here and is meant to be thrown away.
    seed : int
        The member's seed (the probe leaves torch's global generator untouched).
    X : ndarray of shape (n_samples, ...)
        Training inputs, float32.
    n_classes : int
        Number of classes in ``y``.

    Returns
    -------
    kind : {"logits", "proba", "log_proba"}
        What the module returns, see
        :func:`~ensemblekit.estimators._outputs.resolve_output_kind`.

    Raises
    ------
    ValueError
        When the forward pass fails (with the input shape, what the module's first
        layer expects and a layout hint), when the module does not return a tensor
        of shape (n_rows, n_classes), or when its outputs contradict the criterion.
    """
    out = probe_outputs(net, seed, X, "n_classes", n_classes)
    name = type(net.module_).__name__
    if out.shape[1] != n_classes:
        raise ValueError(
            f"The module {name} returns {out.shape[1]} outputs per sample, but y has "
            f"{n_classes} classes: the output width must equal the number of classes "
            "(a module class with a num_classes argument gets it from the data unless "
            "module__num_classes is routed)."
        )
    return resolve_output_kind(net.criterion_, out.detach().float().cpu().numpy(), name)


def probe_outputs(
    net: NeuralNet, seed: int, X: np.ndarray, width_name: str, width: int
) -> torch.Tensor:
    """Build ``net`` from ``seed`` and return its eval-mode outputs on a few rows of ``X``.

    Raises a ``ValueError`` naming the problem when the forward pass fails or the
    outputs are not a tensor of shape ``(n_rows, width_name)``; the width itself is
    checked by the caller, whose message knows what it means.
    """
    _warn_if_channels_last(X)
    initialize_member(net, seed)
    module = net.module_
    name = type(module).__name__
    rows = X[: min(len(X), PROBE_ROWS)]
    was_training = module.training
    module.eval()
    try:
        with seeded_torch(derive_seed(seed, _PROBE_STREAM)), torch.no_grad():
            out = module(torch.as_tensor(rows, device=module_device(module)))
    except Exception as exc:
        raise ValueError(_forward_failure(module, X, rows.shape, exc)) from exc
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"The module {name} must return a tensor of shape (n_samples, {width_name}), "
            f"got {type(out).__name__}."
        )
    if out.dim() != 2 or out.shape[0] != len(rows):
        raise ValueError(
            f"The module {name} must return outputs of shape (n_samples, {width_name}) = "
            f"({len(rows)}, {width}) for {len(rows)} input rows, got {tuple(out.shape)}."
        )
    return out


def _first_weighted_layer(module: nn.Module) -> nn.Module | None:
    for layer in module.modules():
        if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
            return layer
    return None


def _forward_failure(
    module: nn.Module, X: np.ndarray, rows_shape: tuple[int, ...], exc: Exception
) -> str:
    name = type(module).__name__
    sample = tuple(X.shape[1:])
    parts = [
        f"The module {name} cannot process the training inputs: X has samples of shape "
        f"{sample} (a batch of shape {tuple(rows_shape)}) and its forward pass failed with "
        f"{type(exc).__name__}: {exc}"
    ]
    layer = _first_weighted_layer(module)
    if isinstance(layer, nn.modules.conv._ConvNd):
        spatial = len(layer.kernel_size)
        layout = _LAYOUTS.get(spatial, "(N, C, ...)")
        expected = layout.replace("C", str(layer.in_channels), 1)
        size = getattr(module, "input_size", None)
        if spatial == 2 and isinstance(size, int):
            expected = f"(N, {layer.in_channels}, {size}, {size})"
        message = (f"Its first layer, {type(layer).__name__}, expects inputs {expected} with "
                   f"{layer.in_channels} channels on axis 1")
        if X.ndim == spatial + 2 and X.shape[1] != layer.in_channels:
            message += f", but X has {X.shape[1]} there"
        parts.append(message)
    elif isinstance(layer, nn.Linear):
        parts.append(
            f"Its first layer, Linear, expects {layer.in_features} features on the last axis "
            f"(X has {int(np.prod(sample))} values per sample)"
        )
    if X.ndim == 4:
        hint = "Images must be (N, C, H, W), channels first"
        if _looks_channels_last(X):
            hint += (f"; X looks channels-last (N, H, W, C) with {X.shape[3]} channels: pass "
                     "X.transpose(0, 3, 1, 2)")
        parts.append(hint)
    return ". ".join(parts) + "."


def _looks_channels_last(X: np.ndarray) -> bool:
    # Images stored (N, H, W, C) with a usual channel count (1, 3 or 4); read as
    # (N, C, H, W) they would be images at most 4 pixels wide with more channels.
    return (X.ndim == 4 and X.shape[3] in (1, 3, 4) and X.shape[1] not in (1, 3, 4)
            and min(X.shape[1], X.shape[2]) > 4)


def _warn_if_channels_last(X: np.ndarray) -> None:
    if _looks_channels_last(X):
        warnings.warn(
            f"X has samples of shape {tuple(X.shape[1:])}, which looks like channels-last "
            f"(H, W, C) images; the networks take (C, H, W). If so, pass "
            "X.transpose(0, 3, 1, 2).",
            UserWarning,
            stacklevel=external_stacklevel(),
        )
