"""SWAG: running moments of the SGD iterates and Gaussian samples around their mean."""

from __future__ import annotations

from collections import deque
from typing import Literal

import torch

Covariance = Literal["diagonal", "lowrank"]
COVARIANCES: tuple[str, ...] = ("diagonal", "lowrank")
#: Covariance multiplier ``scale`` giving the published SWAG distributions (Maddox et
#: al., 2019): SWAG-Diagonal is N(mean, Sigma_diag), low-rank SWAG has covariance
#: (Sigma_diag + D D^T / (K - 1)) / 2.
DEFAULT_SCALES: dict[str, float] = {"diagonal": 1.0, "lowrank": 0.5}


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

    def covariance(
        self, covariance: Covariance = "lowrank", scale: float | None = None
    ) -> torch.Tensor:
        r"""Dense covariance of the sampling distribution (for small vectors and tests).

        With :math:`\Sigma_{diag}` = ``diag(variance)``, ``D`` the deviation matrix
        (:attr:`deviations`, one deviation per row) and ``K'`` its number of rows,

        * ``"diagonal"``: :math:`s\,\Sigma_{diag}`;
        * ``"lowrank"``: :math:`s\,\big(\Sigma_{diag} + D^\top D / (K' - 1)\big)`,

        where ``s`` is ``scale`` (default: 1 for ``"diagonal"`` and 1/2 for
        ``"lowrank"``, the distributions of Maddox et al., 2019). This is the covariance
        of :meth:`sample` called with the same arguments.

        Parameters
        ----------
        covariance : {"diagonal", "lowrank"}, default="lowrank"
            Which SWAG covariance.
        scale : float or None, default=None
            Multiplier ``s``; ``None`` means the published value of ``covariance``
            (1 for ``"diagonal"``, 1/2 for ``"lowrank"``).

        Returns
        -------
        cov : torch.Tensor of shape (n_parameters, n_parameters), float64
            The covariance matrix :meth:`sample` draws from.

        Raises
        ------
        ValueError
            If nothing was collected, ``covariance`` is unknown, ``scale`` is negative,
            or ``"lowrank"`` has fewer than 2 deviations.

        Examples
        --------
        >>> import torch
        >>> moments = SWAGMoments()
        >>> for value in (0.0, 2.0, 4.0):
        ...     moments.collect(torch.tensor([value]))
        >>> moments.covariance("diagonal").item()  # population variance of 0, 2, 4
        2.666...
        """
        s = _resolve_scale(covariance, scale)
        cov = torch.diag(self.variance)
        if covariance == "lowrank":
            k = self._check_lowrank()
            dev = self.deviations.to(torch.float64)
            cov = cov + dev.T @ dev / (k - 1)
        return s * cov

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
        scale: float | None = None,
    ) -> torch.Tensor:
        r"""Draw parameter vectors from the SWAG Gaussian.

        With :math:`z_1 \sim N(0, I_P)`, :math:`z_2 \sim N(0, I_{K'})`, :math:`\sigma`
        the square root of :attr:`variance` and ``s`` the ``scale``,

        * ``"diagonal"``: :math:`\theta = \bar\theta + \sqrt{s}\, \sigma \odot z_1`,
          i.e. :math:`N(\bar\theta, s\,\Sigma_{diag})`;
        * ``"lowrank"``: :math:`\theta = \bar\theta + \sqrt{s}\,\big(\sigma \odot z_1
          + D^\top z_2 / \sqrt{K'-1}\big)`, i.e.
          :math:`N\big(\bar\theta, s\,(\Sigma_{diag} + D^\top D/(K'-1))\big)`,

        where ``K'`` is the number of deviations actually collected, not ``max_rank``.
        The default ``s`` gives the distributions of Maddox et al. (2019), Sec. 3-4:
        SWAG-Diagonal :math:`N(\bar\theta, \Sigma_{diag})` (``s = 1``) and SWAG
        :math:`\bar\theta + \tfrac{1}{\sqrt2}\Sigma_{diag}^{1/2} z_1 +
        \tfrac{1}{\sqrt{2(K'-1)}} D^\top z_2` (``s = 1/2``). An explicit ``scale``
        multiplies the whole covariance, as the ``scale`` argument of the authors'
        reference code does. :meth:`covariance` gives the same matrix.

        Parameters
        ----------
        n_samples : int
            Number of vectors to draw.
        generator : torch.Generator
            CPU generator of all the draws; the global RNG is not touched.
        covariance : {"diagonal", "lowrank"}, default="lowrank"
            Which SWAG covariance to sample from.
        scale : float or None, default=None
            Multiplier ``s`` of the covariance; ``None`` means the published value of
            ``covariance`` (1 for ``"diagonal"``, 1/2 for ``"lowrank"``).

        Returns
        -------
        theta : torch.Tensor of shape (n_samples, n_parameters), float32
            One sampled parameter vector per row.

        Raises
        ------
        ValueError
            If nothing was collected, ``covariance`` is unknown, ``scale`` is negative,
            or ``"lowrank"`` has fewer than 2 deviations.

        References
        ----------
        W. Maddox, T. Garipov, P. Izmailov, D. Vetrov, A. G. Wilson. "A Simple
        Baseline for Bayesian Uncertainty in Deep Learning", NeurIPS 2019.

        Examples
        --------
        >>> import torch
        >>> moments = SWAGMoments()
        >>> for value in (0.0, 2.0, 4.0):
        ...     moments.collect(torch.tensor([value, -value]))
        >>> moments.sample(5, torch.Generator().manual_seed(0)).shape
        torch.Size([5, 2])
        """
        self._check_collected()
        s = _resolve_scale(covariance, scale)
        mean = self.mean
        std = self.variance.sqrt()
        z1 = torch.randn(n_samples, mean.numel(), generator=generator, dtype=torch.float64)
        noise = std * z1
        if covariance == "lowrank":
            k = self._check_lowrank()
            z2 = torch.randn(n_samples, k, generator=generator, dtype=torch.float64)
            dev = self.deviations.to(torch.float64)
            noise = noise + (z2 @ dev) / (k - 1) ** 0.5
        return (mean + s**0.5 * noise).to(torch.float32)


def _resolve_scale(covariance: str, scale: float | None) -> float:
    _check_covariance(covariance)
    if scale is None:
        return DEFAULT_SCALES[covariance]
    scale = float(scale)
    if not scale >= 0:
        raise ValueError(f"scale must be >= 0 or None, got {scale!r}.")
    return scale


def _check_covariance(covariance: str) -> None:
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {list(COVARIANCES)}, got {covariance!r}.")
