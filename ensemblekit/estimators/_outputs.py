"""What a member module returns, and how its outputs become class probabilities.

The estimators follow skorch's conventions for the criterion:

* :class:`torch.nn.CrossEntropyLoss` (the default): the module returns logits;
* :class:`torch.nn.NLLLoss`: the module returns probabilities (it ends in
  ``nn.Softmax``; skorch's ``NeuralNetClassifier`` takes their log for the loss), or
  log-probabilities (it ends in ``nn.LogSoftmax``; their log is not taken again).

The kind is read from the outputs of a freshly built member on a few training rows,
so a softmax applied in a custom ``forward`` is found as well as a final layer.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from scipy.special import log_softmax, logsumexp
from torch import nn

OutputKind = Literal["logits", "proba", "log_proba"]
OUTPUT_KINDS: tuple[str, ...] = ("logits", "proba", "log_proba")

# Outputs in float32 sum to one within a few ulps per class; this leaves room for
# wide outputs and for modules that compute their softmax in lower precision.
_SUM_TOL = 1e-3

_DESCRIPTION = {
    "logits": "logits",
    "proba": "probabilities (non-negative rows summing to 1, e.g. a final nn.Softmax)",
    "log_proba": "log-probabilities (rows whose exponentials sum to 1, e.g. a final "
                 "nn.LogSoftmax)",
}


def outputs_kind(outputs: np.ndarray) -> OutputKind:
    """Classify module outputs of shape (n_rows, n_classes) by their values.

    Returns ``"proba"`` when every row is a probability vector, ``"log_proba"`` when
    every row is the log of one, ``"logits"`` otherwise.

    Examples
    --------
    >>> outputs_kind(np.array([[0.2, 0.8], [0.5, 0.5]]))
    'proba'
    >>> outputs_kind(np.log(np.array([[0.2, 0.8]])))
    'log_proba'
    >>> outputs_kind(np.array([[0.3, -1.2]]))
    'logits'
    """
    z = np.asarray(outputs, dtype=np.float64)
    if np.isfinite(z).all() and z.min() >= -_SUM_TOL and z.max() <= 1 + _SUM_TOL:
        if np.abs(z.sum(axis=1) - 1.0).max() <= _SUM_TOL:
            return "proba"
    if not np.isnan(z).any() and z.max() <= _SUM_TOL:
        with np.errstate(divide="ignore", invalid="ignore"):
            lse = logsumexp(z, axis=1)
        if np.isfinite(lse).all() and np.abs(lse).max() <= _SUM_TOL:
            return "log_proba"
    return "logits"


def resolve_output_kind(criterion: nn.Module, outputs: np.ndarray, module_name: str) -> OutputKind:
    """The output kind of a member module, checked against its criterion.

    Parameters
    ----------
    criterion : torch.nn.Module
        The member's instantiated criterion.
    outputs : ndarray of shape (n_rows, n_classes)
        The freshly built module's outputs on a few training rows (eval mode).
    module_name : str
        Used in error messages.

    Returns
    -------
    kind : {"logits", "proba", "log_proba"}
        ``"logits"`` for :class:`~torch.nn.CrossEntropyLoss` (log-probabilities are
        valid logits: their softmax is the distribution they encode) and for other
        criteria with logit outputs; ``"proba"`` or ``"log_proba"`` for
        :class:`~torch.nn.NLLLoss`, and for other criteria whose module returns them.

    Raises
    ------
    ValueError
        When the criterion and the outputs disagree: probabilities under
        ``CrossEntropyLoss`` (a second softmax), or logits under ``NLLLoss``.
    """
    found = outputs_kind(outputs)
    crit = type(criterion).__name__
    if isinstance(criterion, nn.CrossEntropyLoss):
        if found == "proba":
            raise ValueError(
                f"criterion {crit} expects the module to return logits, but {module_name} "
                f"returns {_DESCRIPTION['proba']}: {crit} would apply a second softmax. "
                "Return logits (drop the final softmax), or use criterion=torch.nn.NLLLoss, "
                "which takes probabilities as in skorch."
            )
        return "logits"
    if isinstance(criterion, nn.NLLLoss):
        if found == "logits":
            raise ValueError(
                f"criterion {crit} expects the module to return probabilities (ending in "
                "nn.Softmax, skorch's convention) or log-probabilities (ending in "
                f"nn.LogSoftmax), but the outputs of {module_name} on the training rows are "
                "neither (rows that are not distributions). For logits use "
                "criterion=torch.nn.CrossEntropyLoss."
            )
        return found
    return found


class LogProbaCriterion(nn.Module):
    """A criterion applied to log-probabilities as they are.

    skorch's ``NeuralNetClassifier`` takes the log of the module output before any
    :class:`~torch.nn.NLLLoss` (it expects probabilities); a module that already
    returns log-probabilities gets its loss through this wrapper instead.

    Parameters
    ----------
    loss : type or torch.nn.Module
        The criterion class (built with ``**kwargs``) or instance.
    **kwargs : dict
        Constructor arguments of ``loss`` (e.g. ``weight``).

    Examples
    --------
    >>> logp = torch.log_softmax(torch.tensor([[1.0, 2.0]]), dim=1)
    >>> crit = LogProbaCriterion(nn.NLLLoss)
    >>> bool(torch.isclose(crit(logp, torch.tensor([1])), -logp[0, 1]))
    True
    """

    def __init__(self, loss: Any = nn.NLLLoss, **kwargs: Any) -> None:
        super().__init__()
        self.loss = loss(**kwargs) if isinstance(loss, type) else loss

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return self.loss(y_pred, y_true)


def softmax_rows(outputs: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis: probabilities from logits or log-probabilities."""
    return torch.softmax(outputs, dim=-1)


def predict_nonlinearity(kind: str) -> Any:
    """skorch ``predict_nonlinearity`` turning a member's outputs into probabilities."""
    return None if kind == "proba" else softmax_rows


#: Outputs below this magnitude have a float64 exponential far from overflow (e^709) and
#: from the smallest normal number (e^-708).
_EXP_SAFE = 700.0


def outputs_to_proba(outputs: np.ndarray, kind: str) -> np.ndarray:
    """Probabilities (float64, rows summing to 1) from module outputs of any kind.

    Probability outputs are only renormalised (float32 rows sum to 1 within
    rounding); logits and log-probabilities go through a stable softmax.

    Examples
    --------
    >>> p = np.array([[0.25, 0.75]])
    >>> outputs_to_proba(p, "proba").tolist()
    [[0.25, 0.75]]
    >>> outputs_to_proba(np.log(p), "log_proba").round(6).tolist()
    [[0.25, 0.75]]
    """
    if kind == "proba":
        p = np.clip(np.asarray(outputs, dtype=np.float64), 0.0, None)
        return p / p.sum(axis=-1, keepdims=True)
    outputs = np.asarray(outputs)
    # The reductions over the (often short) class axis are done by torch: NumPy's are
    # several times slower there.
    if outputs.size and outputs.dtype == np.float32 and np.abs(outputs).max() < _EXP_SAFE:
        # exp of every output is a normal float64 (no overflow, no underflow to 0), so
        # the shift by the row maximum (one pass fewer) is not needed.
        z = np.exp(outputs, dtype=np.float64)
        z /= torch.from_numpy(z).sum(dim=-1, keepdim=True).numpy()
        return z
    z = np.array(outputs, dtype=np.float64)
    zt = torch.from_numpy(z)
    z -= zt.amax(dim=-1, keepdim=True).numpy()
    np.exp(z, out=z)
    z /= zt.sum(dim=-1, keepdim=True).numpy()
    return z


def outputs_to_log_proba(outputs: np.ndarray, kind: str) -> np.ndarray:
    """Log-probabilities (float64) from module outputs, without forming tiny probabilities.

    Examples
    --------
    >>> outputs_to_log_proba(np.array([[0.0, -1000.0]]), "logits").tolist()
    [[0.0, -1000.0]]
    """
    if kind == "proba":
        p = np.clip(np.asarray(outputs, dtype=np.float64), 0.0, None)
        with np.errstate(divide="ignore"):
            return np.log(p) - np.log(p.sum(axis=-1, keepdims=True))
    return log_softmax(np.asarray(outputs, dtype=np.float64), axis=-1)
