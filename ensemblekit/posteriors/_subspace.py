"""Samplers of the loss-landscape study: functions drawn around one solution.

Each sampler works on flat parameter vectors (see :func:`flatten_parameters`) and
draws from a ``torch.Generator``; none touches torch's global RNG.
"""

from __future__ import annotations

import torch


def _check_vector(theta: torch.Tensor) -> torch.Tensor:
    if theta.ndim != 1:
        raise ValueError(f"theta must be a 1-d parameter vector, got shape {tuple(theta.shape)}.")
    return theta


def _check_points(points: torch.Tensor) -> torch.Tensor:
    if points.ndim != 2 or points.shape[0] < 1:
        raise ValueError(
            "points must be a 2-d array of shape (n_points, n_parameters) with at least one "
            f"row, got shape {tuple(points.shape)}."
        )
    return points


def random_direction(n_parameters: int, generator: torch.Generator) -> torch.Tensor:
    """A direction drawn uniformly on the unit sphere: ``v / ||v||`` with ``v ~ N(0, I)``.

    Parameters
    ----------
    n_parameters : int
        Length of the vector.
    generator : torch.Generator
        Source of the draw.

    Returns
    -------
    v : torch.Tensor of shape (n_parameters,), float32
        Unit L2 norm.

    Examples
    --------
    >>> import torch
    >>> v = random_direction(5, torch.Generator().manual_seed(0))
    >>> round(float(v.norm()), 6)
    1.0
    """
    v = torch.randn(n_parameters, generator=generator, dtype=torch.float64)
    return (v / v.norm()).to(torch.float32)


def random_subspace_sample(
    theta: torch.Tensor, scale: float, generator: torch.Generator
) -> torch.Tensor:
    r"""One draw of the random subspace: :math:`\theta^* + s\,v`.

    ``v`` is a random unit direction over the whole parameter vector
    (:func:`random_direction`) and :math:`s = \text{scale} \cdot U(0, 1)`.

    Parameters
    ----------
    theta : torch.Tensor of shape (n_parameters,)
        The solution :math:`\theta^*`.
    scale : float
        Largest distance from :math:`\theta^*`.
    generator : torch.Generator
        Source of the draws (the direction first, then the distance).

    Returns
    -------
    sample : torch.Tensor of shape (n_parameters,)
        The sampled parameter vector.

    Examples
    --------
    >>> import torch
    >>> theta = torch.zeros(10)
    >>> sample = random_subspace_sample(theta, 3.0, torch.Generator().manual_seed(0))
    >>> 0.0 <= float(sample.norm()) <= 3.0
    True
    """
    theta = _check_vector(theta)
    v = random_direction(theta.numel(), generator).to(theta)
    s = scale * float(torch.rand((), generator=generator, dtype=torch.float64))
    return theta + s * v


def dropout_subspace_sample(
    theta: torch.Tensor, max_p: float, generator: torch.Generator
) -> torch.Tensor:
    r"""One draw of the dropout subspace: inverted dropout on the weights themselves.

    :math:`p = \text{max\_p} \cdot U(0, 1)`; every element of the flat weight and bias
    vector is kept with probability :math:`1 - p` and rescaled by :math:`1 / (1 - p)`,
    the others set to zero.

    Parameters
    ----------
    theta : torch.Tensor of shape (n_parameters,)
        The solution :math:`\theta^*`.
    max_p : float
        Largest drop probability, in ``[0, 1)``.
    generator : torch.Generator
        Source of the draws (the probability first, then the mask).

    Returns
    -------
    sample : torch.Tensor of shape (n_parameters,)
        The sampled parameter vector.

    Examples
    --------
    >>> import torch
    >>> sample = dropout_subspace_sample(torch.ones(6), 0.5, torch.Generator().manual_seed(0))
    >>> len(set(sample.tolist()) - {0.0})
    1
    """
    theta = _check_vector(theta)
    if not 0.0 <= max_p < 1.0:
        raise ValueError(f"max_p must lie in [0, 1), got {max_p!r}.")
    p = max_p * float(torch.rand((), generator=generator, dtype=torch.float64))
    keep = torch.rand(theta.numel(), generator=generator, dtype=torch.float64) >= p
    return theta * keep.to(theta.dtype) / (1.0 - p)


def diagonal_gaussian_samples(
    points: torch.Tensor, n_samples: int, scale: float, generator: torch.Generator
) -> torch.Tensor:
    r"""Draw from :math:`N(\mu, (c\,\sigma)^2)` fitted per parameter to ``points``.

    :math:`\mu` and :math:`\sigma` are the per-parameter mean and standard deviation
    (population, ``ddof=0``) over the rows of ``points`` (late-training checkpoints);
    ``c`` is ``scale``.

    Parameters
    ----------
    points : torch.Tensor of shape (n_points, n_parameters)
        Checkpoints, one flat vector per row.
    n_samples : int
        Number of draws.
    scale : float
        The multiplier ``c`` of the standard deviation.
    generator : torch.Generator
        Source of the draws.

    Returns
    -------
    samples : torch.Tensor of shape (n_samples, n_parameters)
        One draw per row.

    Examples
    --------
    >>> import torch
    >>> points = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    >>> s = diagonal_gaussian_samples(points, 3, 1.0, torch.Generator().manual_seed(0))
    >>> s[:, 1].tolist()  # zero spread in the second coordinate
    [1.0, 1.0, 1.0]
    """
    points = _check_points(points).to(torch.float64)
    mu = points.mean(dim=0)
    sigma = points.std(dim=0, correction=0)
    z = torch.randn(n_samples, mu.numel(), generator=generator, dtype=torch.float64)
    return (mu + scale * sigma * z).to(torch.float32)


def pca_subspace(points: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and top principal directions of ``points``.

    The directions are the leading right singular vectors of the mean-centred points,
    as in principal component analysis; they are orthonormal. The sign of each
    direction is arbitrary.

    Parameters
    ----------
    points : torch.Tensor of shape (n_points, n_parameters)
        One flat parameter vector per row.
    rank : int
        Number of directions, at most ``min(n_points, n_parameters)``.

    Returns
    -------
    mean : torch.Tensor of shape (n_parameters,), float64
        Mean of the points.
    components : torch.Tensor of shape (rank, n_parameters), float64
        Orthonormal rows, ordered by decreasing explained variance.

    Examples
    --------
    >>> import torch
    >>> points = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.1]])
    >>> mean, components = pca_subspace(points, 1)
    >>> components.abs().round(decimals=3).tolist()
    [[1.0, 0.0]]
    """
    points = _check_points(points).to(torch.float64)
    limit = min(points.shape)
    if not 1 <= rank <= limit:
        raise ValueError(
            f"rank must lie in [1, {limit}] for {points.shape[0]} points of "
            f"{points.shape[1]} parameters, got {rank!r}."
        )
    mean = points.mean(dim=0)
    _, _, vh = torch.linalg.svd(points - mean, full_matrices=False)
    return mean, vh[:rank]


def pca_gaussian_samples(
    points: torch.Tensor,
    rank: int,
    n_samples: int,
    scale: float,
    generator: torch.Generator,
) -> torch.Tensor:
    r"""Draw from a Gaussian in the span of the top principal directions of ``points``.

    :math:`\theta = \mu + \sum_{j=1}^{r} z_j u_j` with :math:`z \sim N(0, c^2 I_r)`,
    where :math:`\mu` is the mean of the points, :math:`u_j` the unit-norm principal
    directions (:func:`pca_subspace`) and ``c`` is ``scale``. The coefficients are
    *not* scaled by the variances of the principal components.

    Parameters
    ----------
    points : torch.Tensor of shape (n_points, n_parameters)
        Late-training checkpoints (low-rank Gaussian) or accepted random-subspace
        samples ("PCA random").
    rank : int
        Number of principal directions ``r``.
    n_samples : int
        Number of draws.
    scale : float
        Standard deviation ``c`` of each coefficient.
    generator : torch.Generator
        Source of the draws.

    Returns
    -------
    samples : torch.Tensor of shape (n_samples, n_parameters), float32
        One draw per row.

    Examples
    --------
    >>> import torch
    >>> points = torch.tensor([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]])
    >>> s = pca_gaussian_samples(points, 1, 4, 1.0, torch.Generator().manual_seed(0))
    >>> s[:, 1].tolist()  # all samples lie on the line through the points
    [5.0, 5.0, 5.0, 5.0]
    """
    mean, components = pca_subspace(points, rank)
    z = scale * torch.randn(n_samples, rank, generator=generator, dtype=torch.float64)
    return (mean + z @ components).to(torch.float32)


def weight_average(points: torch.Tensor) -> torch.Tensor:
    """Arithmetic mean of checkpoints: the weight-averaged (SWA-style) point estimate.

    Parameters
    ----------
    points : torch.Tensor of shape (n_points, n_parameters)
        Checkpoints, one flat parameter vector per row.

    Returns
    -------
    theta : torch.Tensor of shape (n_parameters,), float32
        Their mean.

    Examples
    --------
    >>> import torch
    >>> weight_average(torch.tensor([[1.0, 2.0], [3.0, 6.0]])).tolist()
    [2.0, 4.0]
    """
    return _check_points(points).to(torch.float64).mean(dim=0).to(torch.float32)
