"""Regression losses of a member network, one value per member when members are stacked.

A criterion here works on one member's outputs of shape ``(batch, n_outputs)`` (the
sequential engine, through skorch) and offers :meth:`member_losses` for the stacked
outputs ``(n_members, batch, n_outputs)`` of the vectorised engine; both compute the
same mean over the batch, so the engines train the same members.

Targets have ``n_targets`` columns, or one more holding each row's weight (a weighted
fit, see :func:`~ensemblekit.engine.weighted_targets`): the loss is then the weighted
mean over rows, ``sum_i w_i l_i / sum_i w_i``, of the per-row losses ``l_i`` (each the
mean over targets).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: Variance floor added after the softplus, in units of the (standardised) target squared.
DEFAULT_MIN_VARIANCE = 1e-6


def split_mean_variance(
    outputs: Tensor, min_variance: float = DEFAULT_MIN_VARIANCE
) -> tuple[Tensor, Tensor]:
    """Mean and variance from the raw outputs of a Gaussian head.

    The last axis holds ``2 * n_targets`` values: the means, then the raw variances,
    which become ``softplus(raw) + min_variance`` (positive, with a floor that keeps
    the likelihood bounded), as in Lakshminarayanan et al. (2017).

    Parameters
    ----------
    outputs : torch.Tensor of shape (..., 2 * n_targets)
        Module outputs.
    min_variance : float, default=1e-6
        Variance floor.

    Returns
    -------
    mean : torch.Tensor of shape (..., n_targets)
        The first half of the outputs.
    variance : torch.Tensor of shape (..., n_targets)
        Softplus of the second half, plus ``min_variance``.

    Examples
    --------
    >>> mean, var = split_mean_variance(torch.tensor([[1.0, 0.0]]), min_variance=0.0)
    >>> mean.tolist(), round(var.item(), 6)  # softplus(0) = log 2
    ([[1.0]], 0.693147)
    """
    width = outputs.shape[-1]
    if width % 2:
        raise ValueError(
            f"A Gaussian head returns 2 * n_targets outputs (means, then variances), got {width}."
        )
    mean, raw = outputs.split(width // 2, dim=-1)
    return mean, F.softplus(raw) + min_variance


def _row_losses(per_element: Tensor, weights: Tensor | None) -> Tensor:
    """Mean over the trailing (row, target) axes: weighted over rows when weights are given."""
    rows = per_element.mean(dim=-1)
    if weights is None:
        return rows.mean(dim=-1)
    weights = weights.to(rows.dtype)
    return (rows * weights).sum(dim=-1) / weights.sum(dim=-1)


def _targets_and_weights(target: Tensor, n_targets: int) -> tuple[Tensor, Tensor | None]:
    target = target.reshape(*target.shape[:-1], -1) if target.dim() > 1 else target[:, None]
    if target.shape[-1] == n_targets + 1:
        return target[..., :n_targets], target[..., n_targets]
    return target, None


class GaussianNLLCriterion(nn.Module):
    r"""Gaussian negative log-likelihood of a mean-and-variance head.

    With :math:`\mu, \sigma^2` from :func:`split_mean_variance`, the loss is the mean
    over rows and targets of

    .. math:: \tfrac12 \log \sigma^2 + \frac{(y - \mu)^2}{2 \sigma^2},

    the negative log-density of :math:`N(\mu, \sigma^2)` without its constant
    :math:`\tfrac12\log 2\pi` (Lakshminarayanan, Pritzel & Blundell, "Simple and
    Scalable Predictive Uncertainty Estimation using Deep Ensembles", NeurIPS 2017,
    Eq. 1). This is :func:`torch.nn.functional.gaussian_nll_loss` with
    ``full=False`` applied to that mean and variance.

    Parameters
    ----------
    min_variance : float, default=1e-6
        Floor added to the softplus of the raw variance.

    Examples
    --------
    >>> crit = GaussianNLLCriterion(min_variance=0.0)
    >>> raw = torch.log(torch.expm1(torch.tensor(1.0)))  # softplus(raw) = 1
    >>> out = torch.stack([torch.tensor(0.0), raw])[None]  # mean 0, variance 1
    >>> round(crit(out, torch.tensor([[2.0]])).item(), 6)  # (2 - 0)^2 / 2
    2.0
    """

    def __init__(self, min_variance: float = DEFAULT_MIN_VARIANCE) -> None:
        super().__init__()
        self.min_variance = float(min_variance)

    def forward(self, outputs: Tensor, target: Tensor) -> Tensor:
        mean, var = split_mean_variance(outputs, self.min_variance)
        target, weights = _targets_and_weights(target, mean.shape[-1])
        target = target.reshape(mean.shape).to(mean.dtype)
        return _row_losses(0.5 * (torch.log(var) + (target - mean) ** 2 / var), weights)

    def member_losses(self, outputs: Tensor, target: Tensor) -> Tensor:
        """Each member's loss from stacked outputs, for the vectorised engine.

        Parameters
        ----------
        outputs : torch.Tensor of shape (n_members, batch, 2 * n_targets)
            Raw outputs of the stacked members.
        target : torch.Tensor of shape (n_members, batch, n_targets)
            Each member's targets, with a last weight column ``(..., n_targets + 1)``
            in a weighted fit.

        Returns
        -------
        torch.Tensor of shape (n_members,)
            The loss :meth:`forward` gives each member on its own batch.
        """
        return self.forward(outputs, target)


class SquaredErrorCriterion(nn.Module):
    """Mean squared error, with the per-member form the vectorised engine uses.

    Without weights, :class:`torch.nn.MSELoss` (mean over rows and targets).

    Examples
    --------
    >>> SquaredErrorCriterion()(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [0.0]]))
    tensor(5.)
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, outputs: Tensor, target: Tensor) -> Tensor:
        target, weights = _targets_and_weights(target, outputs.shape[-1])
        target = target.reshape(outputs.shape).to(outputs.dtype)
        return _row_losses((outputs - target) ** 2, weights)

    def member_losses(self, outputs: Tensor, target: Tensor) -> Tensor:
        """Each member's loss from stacked outputs, for the vectorised engine.

        Parameters
        ----------
        outputs : torch.Tensor of shape (n_members, batch, n_targets)
            Predicted means of the stacked members.
        target : torch.Tensor of shape (n_members, batch, n_targets)
            Each member's targets, with a last weight column ``(..., n_targets + 1)``
            in a weighted fit.

        Returns
        -------
        torch.Tensor of shape (n_members,)
            The loss :meth:`forward` gives each member on its own batch.
        """
        return self.forward(outputs, target)
