"""Low-loss quadratic Bezier curves between two solutions (mode connectivity)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state
from torch import nn
from torch.func import functional_call

from ..engine import seeded_torch
from . import _access
from ._paths import _check_count, _data, evaluate_path


class BezierPoints:
    """Weight vectors of the quadratic Bezier curve at each ``t``, built when indexed."""

    def __init__(self, start: np.ndarray, bend: np.ndarray, end: np.ndarray,
                 t: np.ndarray) -> None:
        self.start, self.bend, self.end, self.t = start, bend, end, t

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, i: int) -> np.ndarray:
        t = float(self.t[i])
        return (1 - t) ** 2 * self.start + 2 * t * (1 - t) * self.bend + t**2 * self.end


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def _train_bend(
    module: nn.Module,
    start: torch.Tensor,
    end: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    max_epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    kind: str,
) -> tuple[torch.Tensor, list[float]]:
    names = [name for name, _ in module.named_parameters()]
    shapes = [p.shape for _, p in module.named_parameters()]
    sizes = [p.numel() for _, p in module.named_parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    bend = ((start + end) / 2).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([bend], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    def criterion(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Cross-entropy of the predicted distribution, whatever the module returns
        # (a log-softmax leaves log-probabilities unchanged).
        if kind == "proba":
            outputs = torch.log(outputs.clamp_min(torch.finfo(outputs.dtype).tiny))
        return nn.functional.cross_entropy(outputs, target)

    history = []
    module.train()
    with seeded_torch(seed):  # dropout masks, if any, from a stream fixed by the seed
        for _ in range(max_epochs):
            order = torch.randperm(len(X), generator=generator)
            total = 0.0
            for first in range(0, len(X), batch_size):
                idx = order[first : first + batch_size].to(X.device)
                t = torch.rand((), generator=generator).item()
                theta = (1 - t) ** 2 * start + 2 * t * (1 - t) * bend + t**2 * end
                params = {
                    name: chunk.view(shape)
                    for name, chunk, shape in zip(names, torch.split(theta, sizes), shapes)
                }
                loss = criterion(functional_call(module, params, (X[idx],)), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / len(X))
    return bend.detach(), history


def bezier_path(
    estimator: Any,
    X: Any,
    y: Any,
    start: Any = 0,
    end: Any = 1,
    n_points: int = 25,
    *,
    X_train: Any = None,
    y_train: Any = None,
    max_epochs: int = 20,
    lr: float = 1e-2,
    batch_size: int = 128,
    random_state: Any = None,
) -> Bunch:
    """Train a low-loss quadratic Bezier curve between two solutions and walk along it.

    The curve of Garipov et al. (2018), "Loss Surfaces, Mode Connectivity, and Fast
    Ensembling of DNNs", is

    .. math:: \\theta(t) = (1 - t)^2\\,\\theta_{start} + 2t(1 - t)\\,\\theta_{bend}
              + t^2\\,\\theta_{end}, \\quad t \\in [0, 1].

    The ends stay fixed; the bend starts at their midpoint and is trained with Adam
    to minimise :math:`\\mathbb{E}_{t \\sim U(0, 1)}\\,L(\\theta(t))`, one ``t`` drawn per
    mini-batch of ``(X_train, y_train)``, with BatchNorm layers in training mode.
    The curve is then evaluated at ``n_points`` evenly spaced ``t`` on ``(X, y)``,
    each point with its BatchNorm statistics recomputed on ``X_train``. A low loss
    all along the curve with a high disagreement with both ends in the middle shows
    a tunnel that connects the modes in weight space but not in function space.

    Parameters
    ----------
    estimator : fitted estimator
        Provides the architecture and the weights.
    X : array-like of shape (n_samples, ...)
        Evaluation inputs.
    y : array-like of shape (n_samples,)
        Evaluation labels.
    start, end : int, (int, int) or array-like of shape (n_params,), default=0, 1
        The ends, as in :func:`linear_path`.
    n_points : int, default=25
        Points evaluated along the curve, at least 2.
    X_train, y_train : array-like, default=None
        Rows the bend is trained on and the BatchNorm statistics are computed on;
        ``None`` uses ``X`` and ``y``.
    max_epochs : int, default=20
        Passes over the training rows.
    lr : float, default=1e-2
        Adam learning rate of the bend.
    batch_size : int, default=128
        Training mini-batch size.
    random_state : int, RandomState instance or None, default=None
        Fixes the batch order, the drawn ``t`` and dropout masks.

    Returns
    -------
    path : sklearn.utils.Bunch
        ``t``, ``loss``, ``accuracy``, ``disagreement_start``, ``disagreement_end``
        as in :func:`linear_path`; ``bend`` (n_params,), the trained bend;
        ``train_loss`` (max_epochs,), the mean training loss of each epoch.

    Raises
    ------
    ValueError
        As :func:`linear_path`, and for non-positive ``lr``, ``max_epochs`` or
        ``batch_size``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from ensemblekit import DeepEnsembleClassifier
    >>> from ensemblekit.landscape import bezier_path
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=3, random_state=0).fit(X, y)
    >>> curve = bezier_path(clf, X, y, 0, 1, n_points=5, max_epochs=2, random_state=0)
    >>> curve.loss.shape, curve.bend.shape == (sum(
    ...     p.numel() for p in clf.estimators_[0].module_.parameters()),)
    ((5,), True)
    """
    n_points = _check_count("n_points", n_points, 2)
    max_epochs = _check_count("max_epochs", max_epochs, 1)
    batch_size = _check_count("batch_size", batch_size, 1)
    lr = _check_positive("lr", lr)
    X, y_enc, refresh = _data(estimator, X, y, X_train)
    if X_train is None:
        if y_train is not None:
            raise ValueError("y_train was given without X_train.")
        y_fit = y_enc
    else:
        if y_train is None:
            raise ValueError("X_train was given without y_train.")
        y_fit = _access.encode_y(estimator, y_train, len(refresh), "y_train")
    a = _access.weight_vector(estimator, start, "start")
    b = _access.weight_vector(estimator, end, "end")
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    module = copy.deepcopy(_access.template(estimator))
    reference = next(module.parameters())
    as_tensor = lambda v: torch.as_tensor(v, dtype=reference.dtype,  # noqa: E731
                                          device=reference.device)
    bend, history = _train_bend(
        module, as_tensor(a), as_tensor(b), as_tensor(refresh),
        torch.as_tensor(y_fit, device=reference.device),
        max_epochs=max_epochs, lr=lr, batch_size=batch_size, seed=seed,
        kind=_access.output_kind(estimator),
    )
    bend_np = bend.double().cpu().numpy()
    t = np.linspace(0.0, 1.0, n_points)
    loss, accuracy, labels = evaluate_path(estimator, BezierPoints(a, bend_np, b, t), X, y_enc,
                                           refresh)
    return Bunch(
        t=t,
        loss=loss,
        accuracy=accuracy,
        disagreement_start=(labels != labels[0]).mean(axis=1),
        disagreement_end=(labels != labels[-1]).mean(axis=1),
        bend=bend_np,
        train_loss=np.asarray(history),
    )
