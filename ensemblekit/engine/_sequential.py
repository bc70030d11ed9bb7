"""Sequential engine: one skorch net per member, trained one after the other."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from skorch import NeuralNet
from torch import nn

from ._progress import Progress
from ._randomness import derive_seed, seeded_torch
from ._weights import weighted_targets

# Stream identifiers: initial weights and training-time draws (dropout) never share a stream.
_INIT_STREAM = 11
_TRAIN_STREAM = 12


def init_seed(seed: int) -> int:
    """Seed of a member's initial weights.

    Parameters
    ----------
    seed : int
        The member's seed.

    Returns
    -------
    int
        The seed torch's generator gets while the member's weights are drawn.
    """
    return derive_seed(seed, _INIT_STREAM)


def train_seed(seed: int) -> int:
    """Seed of a member's training-time draws (dropout masks).

    Parameters
    ----------
    seed : int
        The member's seed.

    Returns
    -------
    int
        The seed torch's generator gets while the member trains.
    """
    return derive_seed(seed, _TRAIN_STREAM)


def continued_train_seed(seed: int, first_epoch: int) -> int:
    """Seed of a member's training-time draws in a run starting at ``first_epoch``.

    A fresh fit draws from :func:`train_seed`; training continued later (one more
    epoch by ``partial_fit``) starts a stream of its own, the same in every engine.
    """
    base = train_seed(seed)
    return base if first_epoch == 0 else derive_seed(base, int(first_epoch))


def initialize_member(net: NeuralNet, seed: int) -> NeuralNet:
    """Build a member's module, criterion and optimizer from its seed.

    Every engine initialises members through this function, so the same seed
    gives the same starting weights whichever engine trains them.

    Parameters
    ----------
    net : skorch.NeuralNet
        The member net, not yet initialised.
    seed : int
        The member's seed.

    Returns
    -------
    skorch.NeuralNet
        ``net`` itself, initialised.
    """
    with seeded_torch(init_seed(seed)):
        net.initialize()
    return net


class ModuleCopy:
    """Factory returning a freshly initialised copy of a module instance.

    Given to skorch as the ``module`` of each member, so that a user's instance is
    never trained in place and each member draws its own initial weights.

    Parameters
    ----------
    module : torch.nn.Module
        The template; it is deep-copied and never modified.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self) -> nn.Module:
        clone = copy.deepcopy(self.module)
        reset_module_parameters(clone)
        return clone


def reset_module_parameters(module: nn.Module) -> None:
    """Re-draw every parameter of ``module`` with its own initialisation scheme.

    The top-level ``reset_parameters`` wins when the module defines one (networks
    with a custom initialisation); otherwise each layer resets itself.

    Parameters
    ----------
    module : torch.nn.Module
        The module, changed in place; draws come from torch's global generator.
    """
    top = getattr(module, "reset_parameters", None)
    if callable(top):
        top()
        return
    for layer in module.modules():
        if layer is not module and callable(getattr(layer, "reset_parameters", None)):
            layer.reset_parameters()


def fit_sequential(
    nets: Sequence[NeuralNet],
    X: np.ndarray,
    y: np.ndarray,
    seeds: Sequence[int],
    progress: Progress | None = None,
    sample_weight: np.ndarray | None = None,
    *,
    initialize: bool = True,
    epochs: int | None = None,
) -> None:
    """Train each member net in turn, each under its own seed.

    Parameters
    ----------
    nets : sequence of skorch.NeuralNet
        Configured, uninitialised member nets; each carries its own data sampler.
    X : ndarray
        Training inputs, float32.
    y : ndarray of shape (n_samples,)
        Encoded integer targets.
    seeds : sequence of int
        One seed per member: it fixes initialisation and dropout masks.
    progress : Progress, optional
        Advanced once per member-epoch by a callback the net carries.
    sample_weight : ndarray of shape (n_samples,), optional
        Per-row loss weights; the nets' criterion must then be a
        :class:`~ensemblekit.engine.SampleWeightedLoss`.
    initialize : bool, default=True
        Build each member from its seed first; ``False`` continues training fitted
        members (their data order and random draws go on from the epochs already
        in their history).
    epochs : int, optional
        Epochs to run (default: each net's ``max_epochs``).
    """
    if sample_weight is not None:
        y = weighted_targets(y, sample_weight)
    for net, seed in zip(nets, seeds):
        sampler = net.get_params_for("iterator_train").get("sampler")
        first = 0 if initialize else len(net.history)
        if sampler is not None and hasattr(sampler, "reset"):
            sampler.reset()
            sampler.epoch = first
        # A DataLoader draws a worker base seed from torch's global generator each epoch;
        # its own generator keeps the member's training stream for the forward passes
        # alone, the stream every stacked form reproduces.
        net.iterator_train__generator = torch.Generator()
        if initialize:
            initialize_member(net, seed)
        try:
            with seeded_torch(continued_train_seed(seed, first)):
                net.partial_fit(X, y, **({} if epochs is None else {"epochs": int(epochs)}))
        finally:
            # Only training needs it, and torch < 2.4 cannot pickle a Generator, which
            # would make the fitted member unpicklable.
            del net.iterator_train__generator


def module_device(module: nn.Module) -> torch.device:
    """Device holding a module's first parameter (CPU for parameter-free modules).

    Parameters
    ----------
    module : torch.nn.Module
        Any module.

    Returns
    -------
    torch.device
        The device of its first parameter.
    """
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


def predict_logits_sequential(
    modules: Sequence[nn.Module], X: np.ndarray, batch_size: int
) -> np.ndarray:
    """Compute the logits of every member, one member at a time, in chunks of rows.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        The members; evaluated in eval mode on their own device.
    X : ndarray of shape (n_samples, ...)
        Inputs, float32.
    batch_size : int
        Rows per chunk.

    Returns
    -------
    logits : ndarray of shape (n_members, n_samples, n_classes), float32
        Member ``m``'s logits in row ``m``.
    """
    out: np.ndarray | None = None
    for m, module in enumerate(modules):
        module.eval()
        device = module_device(module)
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                xb = torch.as_tensor(X[start : start + batch_size], device=device)
                logits = module(xb).float().cpu().numpy()
                if out is None:
                    out = np.empty((len(modules), len(X), logits.shape[1]), dtype=np.float32)
                out[m, start : start + len(logits)] = logits
    assert out is not None
    return out
