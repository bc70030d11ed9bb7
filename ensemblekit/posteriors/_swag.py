"""SWAG: running moments of the SGD iterates and Gaussian samples around their mean."""

from __future__ import annotations

from collections import deque
from typing import Literal

import torch

Covariance = Literal["diagonal", "lowrank"]
COVARIANCES: tuple[str, ...] = ("diagonal", "lowrank")


class SWAGMoments:
    r"""First and second moments of parameter vectors, plus the last deviations.

    After :meth:`collect` has seen iterates :math:`\theta_1, \dots, \theta_n`,

    * :attr:`mean` is :math:`\bar\theta = \frac1n \sum_i \theta_i` (the SWA solution),
    * :attr:`variance` is :math:`\frac1n \sum_i \theta_i^2 - \bar\theta^2`, the
      per-parameter population variance, clamped at ``min_variance``,
    * :attr:`deviations` stacks, for the last ``K' = min(n, max_rank)`` iterates,
      :math:`\theta_i - \bar\theta_i`, where :math:`\bar\theta_i` is the running
      mean *after* adding :math:`\theta_i` (as in SWAG).

    Moments are kept in float64 so that long collections do not drift.

    Parameters
    ----------
    max_rank : int, default=20
        Maximum number ``K`` of deviation columns kept (the oldest is dropped).
    min_variance : float, default=1e-30
        Floor of the diagonal variance; rounding can make the difference of
        moments slightly negative.

    Attributes
    ----------
    n_collected : int
        Number of iterates seen.
    mean : torch.Tensor of shape (n_parameters,)
        SWA mean, float64.
    sq_mean : torch.Tensor of shape (n_parameters,)
        Mean of the squared iterates, float64.

    Examples
    --------
    >>> import torch
    >>> moments = SWAGMoments(max_rank=2)
    >>> for value in (1.0, 2.0, 6.0):
    ...     moments.collect(torch.tensor([value, -value]))
    >>> moments.mean.tolist(), moments.variance.tolist()
    ([3.0, -3.0], [4.666..., 4.666...])
    >>> moments.rank, tuple(moments.deviations.shape)
    (2, (2, 2))
    """

    def __init__(self, max_rank: int = 20, min_variance: float = 1e-30) -> None:
        if max_rank < 1:
            raise ValueError(f"max_rank must be >= 1, got {max_rank!r}.")
        self.max_rank = int(max_rank)
        self.min_variance = float(min_variance)
        self.n_collected = 0
        self.mean: torch.Tensor | None = None
        self.sq_mean: torch.Tensor | None = None
        self._deviations: deque[torch.Tensor] = deque(maxlen=self.max_rank)

    def collect(self, theta: torch.Tensor) -> None:
        """Add one iterate (a flat parameter vector) to the moments.

        Parameters
        ----------
        theta : torch.Tensor of shape (n_parameters,)
            The current parameters; copied to the CPU in float64.
        """
        theta = theta.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
        if self.mean is None or self.sq_mean is None:
            self.mean = torch.zeros_like(theta)
            self.sq_mean = torch.zeros_like(theta)
        elif theta.numel() != self.mean.numel():
            raise ValueError(
                f"Expected a vector of {self.mean.numel()} parameters, got {theta.numel()}."
            )
        self.n_collected += 1
        self.mean += (theta - self.mean) / self.n_collected
        self.sq_mean += (theta * theta - self.sq_mean) / self.n_collected
        self._deviations.append((theta - self.mean).to(torch.float32))

    def _check_collected(self) -> None:
        if self.mean is None:
            raise ValueError("No parameter vector has been collected yet.")

    @property
    def variance(self) -> torch.Tensor:
        """Per-parameter variance of the collected iterates, shape (n_parameters,)."""
        self._check_collected()
        return (self.sq_mean - self.mean**2).clamp_min(self.min_variance)

    @property
    def rank(self) -> int:
        """Number ``K'`` of deviation columns actually held (at most ``max_rank``)."""
        return len(self._deviations)

    @property
    def deviations(self) -> torch.Tensor:
        """Deviation matrix ``D`` stored by rows, shape (K', n_parameters), float32."""
        self._check_collected()
        return torch.stack(list(self._deviations))

    def covariance(self, covariance: Covariance = "lowrank", scale: float = 1.0) -> torch.Tensor:
        """Dense covariance of the sampling distribution (for small vectors and tests).

        ``scale * diag(variance)`` for ``"diagonal"``;
        ``scale * (diag(variance) / 2 + D^T D / (2 (K' - 1)))`` for ``"lowrank"``.

        Parameters
        ----------
        covariance : {"diagonal", "lowrank"}, default="lowrank"
            Which SWAG covariance.
        scale : float, default=1.0
            Multiplier of the covariance.

        Returns
        -------
        cov : torch.Tensor of shape (n_parameters, n_parameters), float64
            The covariance matrix :meth:`sample` draws from.
        """
        _check_covariance(covariance)
        cov = torch.diag(self.variance)
        if covariance == "lowrank":
            k = self._check_lowrank()
            dev = self.deviations.to(torch.float64)
            cov = cov / 2 + dev.T @ dev / (2 * (k - 1))
        return scale * cov

    def _check_lowrank(self) -> int:
        k = self.rank
        if k < 2:
            raise ValueError(
                "The low-rank SWAG covariance needs at least 2 collected deviations, got "
                f"{k}; collect more iterates or use covariance='diagonal'."
            )
        return k

    def sample(
        self,
        n_samples: int,
        generator: torch.Generator,
        covariance: Covariance = "lowrank",
        scale: float = 0.5,
    ) -> torch.Tensor:
        r"""Draw parameter vectors from the SWAG Gaussian.

        With :math:`z_1 \sim N(0, I_P)` and :math:`z_2 \sim N(0, I_{K'})`,

        * ``"diagonal"``: :math:`\theta = \bar\theta + \sqrt{s}\, \sigma \odot z_1`;
        * ``"lowrank"``: :math:`\theta = \bar\theta + \sqrt{s}\,\big(\tfrac{1}{\sqrt2}
          \sigma \odot z_1 + \tfrac{1}{\sqrt{2(K'-1)}} D^\top z_2\big)`,

        where :math:`\sigma` is the square root of :attr:`variance`, ``s`` is ``scale``
        (a multiplier of the covariance) and ``K'`` is the number of deviations
        actually collected, not ``max_rank``.

        Parameters
        ----------
        n_samples : int
            Number of vectors to draw.
        generator : torch.Generator
            CPU generator of all the draws; the global RNG is not touched.
        covariance : {"diagonal", "lowrank"}, default="lowrank"
            Which SWAG covariance to sample from.
        scale : float, default=0.5
            Multiplier of the covariance.

        Returns
        -------
        theta : torch.Tensor of shape (n_samples, n_parameters), float32
            One sampled parameter vector per row.
        """
        self._check_collected()
        _check_covariance(covariance)
        mean = self.mean
        std = self.variance.sqrt()
        z1 = torch.randn(n_samples, mean.numel(), generator=generator, dtype=torch.float64)
        if covariance == "diagonal":
            noise = std * z1
        else:
            k = self._check_lowrank()
            z2 = torch.randn(n_samples, k, generator=generator, dtype=torch.float64)
            dev = self.deviations.to(torch.float64)
            noise = std * z1 / 2**0.5 + (z2 @ dev) / (2 * (k - 1)) ** 0.5
        return (mean + scale**0.5 * noise).to(torch.float32)


def _check_covariance(covariance: str) -> None:
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {list(COVARIANCES)}, got {covariance!r}.")
