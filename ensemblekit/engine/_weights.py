"""Per-sample weights in the training loss.

Weighted training carries each row's weight next to its label: the target given to
a member is an array of shape (n_samples, 2) holding ``[label, weight]`` (see
:func:`weighted_targets`), so batches keep labels and weights together whatever
engine forms them, and :class:`SampleWeightedLoss` turns the per-sample losses of
a batch into their weighted mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


def weighted_targets(y: np.ndarray, sample_weight: np.ndarray) -> np.ndarray:
    """Pack targets with their weights into an array of rows ``[label, weight]``.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Encoded integer labels.
    sample_weight : ndarray of shape (n_samples,)
        Non-negative weights.

    Returns
    -------
    targets : ndarray of shape (n_samples, 2), float64
        Labels (exact in float64) in column 0, weights in column 1.

    Examples
    --------
    >>> weighted_targets(np.array([0, 2]), np.array([1.0, 0.5])).tolist()
    [[0.0, 1.0], [2.0, 0.5]]
    """
    return np.column_stack([np.asarray(y, dtype=np.float64),
                            np.asarray(sample_weight, dtype=np.float64)])


def split_targets(y_true: Tensor) -> tuple[Tensor, Tensor | None]:
    """Labels and weights of a batch of targets (weights ``None`` for plain labels)."""
    if y_true.is_floating_point() and y_true.dim() >= 2 and y_true.shape[-1] == 2:
        return y_true[..., 0].long(), y_true[..., 1]
    return y_true, None


class SampleWeightedLoss(nn.Module):
    """A criterion averaging per-sample losses with per-sample weights.

    For a batch with per-sample losses :math:`l_i` (the wrapped criterion with
    ``reduction="none"``) and weights :math:`w_i` it returns the weighted mean
    :math:`\\sum_i w_i l_i / \\sum_i w_i`, the normalisation of scikit-learn's
    weighted losses per batch: multiplying every weight by a constant changes
    nothing, and a row of weight 0 adds nothing. The targets are ``[label, weight]``
    rows (:func:`weighted_targets`); plain labels give the unweighted mean.

    Parameters
    ----------
    loss : type or torch.nn.Module, default=torch.nn.CrossEntropyLoss
        The criterion class (built with ``**kwargs``) or instance; it must accept
        ``reduction="none"`` (every loss of ``torch.nn`` does).
    log_input : bool, default=False
        Take the log of the module outputs first (probability outputs under
        :class:`~torch.nn.NLLLoss`, as skorch's ``NeuralNetClassifier`` does).
    **kwargs : dict
        Constructor arguments of ``loss`` (e.g. ``label_smoothing``).

    Examples
    --------
    >>> crit = SampleWeightedLoss()
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> target = torch.tensor([[0.0, 3.0], [0.0, 1.0]])
    >>> per = nn.functional.cross_entropy(logits, torch.tensor([0, 0]), reduction="none")
    >>> bool(torch.isclose(crit(logits, target), (3 * per[0] + per[1]) / 4))
    True
    """

    def __init__(self, loss: Any = nn.CrossEntropyLoss, log_input: bool = False,
                 **kwargs: Any) -> None:
        super().__init__()
        self.loss = loss(**kwargs) if isinstance(loss, type) else loss
        if not hasattr(self.loss, "reduction"):
            raise ValueError(
                f"sample_weight needs a criterion with a `reduction` argument (per-sample "
                f"losses), but {type(self.loss).__name__} has none."
            )
        self.loss.reduction = "none"
        self.log_input = bool(log_input)

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        labels, weights = split_targets(y_true)
        if self.log_input:
            y_pred = torch.log(y_pred + torch.finfo(y_pred.dtype).eps)
        per_sample = self.loss(y_pred, labels)
        if weights is None:
            return per_sample.mean()
        weights = weights.to(per_sample.dtype)
        return (per_sample * weights).sum() / weights.sum()
