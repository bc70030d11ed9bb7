"""Evaluating many flat weight vectors of one architecture in grouped passes."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn.utils import vector_to_parameters

from ..engine import predict_member_logits
from ..posteriors import batchnorm_layers, refresh_batchnorm


def load_network(
    template: nn.Module,
    theta: np.ndarray,
    *,
    buffers: np.ndarray | None = None,
    X_refresh: np.ndarray | None = None,
    batch_size: int = 1024,
    network: nn.Module | None = None,
) -> nn.Module:
    """A copy of ``template`` holding ``theta``, its BatchNorm statistics set, in eval mode.

    ``buffers`` (running means and variances of every BatchNorm layer, concatenated
    in module order, as in ``checkpoint_buffers_``) are loaded when given; otherwise
    the statistics are recomputed on ``X_refresh`` with
    :func:`ensemblekit.posteriors.refresh_batchnorm`. ``network``, an earlier copy of
    ``template``, is overwritten instead of making a new copy.
    """
    if network is None:
        network = copy.deepcopy(template)
    reference = next(network.parameters())
    vector = torch.tensor(np.asarray(theta), dtype=reference.dtype, device=reference.device)
    with torch.no_grad():
        vector_to_parameters(vector, network.parameters())
        layers = batchnorm_layers(network)
        if buffers is not None and layers:
            flat = torch.as_tensor(np.asarray(buffers), dtype=torch.float32)
            offset = 0
            for layer in layers:
                for stat in (layer.running_mean, layer.running_var):
                    n = stat.numel()
                    stat.copy_(flat[offset : offset + n].view_as(stat))
                    offset += n
        elif layers:
            if X_refresh is None:
                raise ValueError("networks with BatchNorm need rows to refresh its statistics.")
            refresh_batchnorm(network, X_refresh, batch_size)
    return network.eval()


def evaluate_weights(
    template: nn.Module,
    thetas: np.ndarray,
    X: np.ndarray,
    *,
    buffers: np.ndarray | None = None,
    X_refresh: np.ndarray | None = None,
    batch_size: int = 1024,
    group_size: int = 16,
) -> np.ndarray:
    """Logits of the networks ``template`` takes with each weight vector.

    Up to ``group_size`` networks are built at a time and evaluated together by
    :func:`ensemblekit.engine.predict_member_logits` (one grouped forward pass per
    chunk of rows), so memory holds ``group_size`` copies at most.

    Parameters
    ----------
    template : torch.nn.Module
        The architecture; never modified.
    thetas : array-like of shape (n_vectors, n_params)
        Flat parameters, in ``module.parameters()`` order.
    X : ndarray of shape (n_samples, ...)
        Inputs, float32.
    buffers : array-like of shape (n_vectors, n_buffer_values), optional
        Recorded BatchNorm statistics of each vector; when absent they are
        recomputed on ``X_refresh``.
    X_refresh : ndarray, optional
        Rows the BatchNorm statistics are recomputed on.
    batch_size : int, default=1024
        Rows per forward pass.
    group_size : int, default=16
        Networks evaluated in one grouped pass.

    Returns
    -------
    logits : ndarray of shape (n_vectors, n_samples, n_classes), float32
    """
    n = len(thetas)
    out: np.ndarray | None = None
    # Copies are made once and overwritten group after group (copying dominates the
    # cost of small networks).
    pool = [copy.deepcopy(template) for _ in range(min(group_size, n))]
    for first in range(0, n, group_size):
        stop = min(n, first + group_size)
        networks = [
            load_network(
                template, thetas[i],
                buffers=None if buffers is None else buffers[i],
                X_refresh=X_refresh, batch_size=batch_size, network=pool[i - first],
            )
            for i in range(first, stop)
        ]
        logits = predict_member_logits(networks, X, batch_size)
        if out is None:
            out = np.empty((n, *logits.shape[1:]), dtype=np.float32)
        out[first:stop] = logits
    assert out is not None
    return out


def log_softmax(outputs: np.ndarray, kind: str = "logits") -> np.ndarray:
    """Log-probabilities (float64) from module outputs.

    ``kind`` is what the module returns (an estimator's ``output_kind_``): logits and
    log-probabilities go through a stable log-softmax, probabilities are logged.
    """
    z = np.asarray(outputs, dtype=np.float64)
    if kind == "proba":
        p = np.clip(z, 0.0, None)
        with np.errstate(divide="ignore"):
            return np.log(p) - np.log(p.sum(axis=-1, keepdims=True))
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def loss_and_accuracy(
    outputs: np.ndarray, y: np.ndarray, kind: str = "logits"
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy (nats) and accuracy of each network, from (V, N, C) outputs."""
    logp = log_softmax(outputs, kind)
    picked = np.take_along_axis(logp, y[None, :, None], axis=2)[..., 0]
    return -picked.mean(axis=1), (logp.argmax(axis=2) == y[None]).mean(axis=1)
