"""SWAG moments and samples against statistics computed by hand with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemblekit.posteriors import SWAGMoments


def _iterates(n: int, p: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)) * rng.uniform(0.5, 2.0, size=p) + rng.normal(size=p)


def _collect(points: np.ndarray, max_rank: int) -> SWAGMoments:
    moments = SWAGMoments(max_rank=max_rank)
    for row in points:
        moments.collect(torch.as_tensor(row, dtype=torch.float32))
    return moments


def test_mean_variance_and_deviations_match_numpy():
    points = _iterates(7, 5).astype(np.float32).astype(np.float64)
    moments = _collect(points, max_rank=3)
    np.testing.assert_allclose(moments.mean.numpy(), points.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(moments.variance.numpy(), points.var(axis=0), rtol=1e-8)
    # Column i: iterate i minus the running mean that includes it; the last 3 kept.
    running = np.cumsum(points, axis=0) / np.arange(1, 8)[:, None]
    expected = (points - running)[-3:]
    np.testing.assert_allclose(moments.deviations.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert moments.n_collected == 7 and moments.rank == 3


def _hand_moments(points: np.ndarray, max_rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # SWA mean, diagonal variance and the deviation rows of the last max_rank iterates,
    # each from its running mean (the mean including it), by hand.
    running = np.cumsum(points, 0) / np.arange(1, len(points) + 1)[:, None]
    return points.mean(0), points.var(0), (points - running)[-max_rank:]


def _published(points: np.ndarray, max_rank: int, covariance: str) -> np.ndarray:
    """SWAG covariance of Maddox et al. (2019) from the iterates: SWAG-Diagonal is
    N(mean, Sigma_diag); low-rank SWAG draws mean + Sigma_diag^(1/2) z1 / sqrt(2)
    + D z2 / sqrt(2 (K - 1)), K the number of deviations collected."""
    _, var, dev = _hand_moments(points, max_rank)
    if covariance == "diagonal":
        return np.diag(var)
    return 0.5 * (np.diag(var) + dev.T @ dev / (len(dev) - 1))


def _check_draws(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> None:
    """Empirical mean and covariance within 6 standard errors of the closed form.

    For Gaussian draws the sample mean of coordinate i has variance C_ii / n and the
    sample covariance C_ij has variance (C_ij^2 + C_ii C_jj) / n (Wishart).
    """
    n = len(draws)
    d = np.sqrt(np.diag(cov))
    mean_tol = 6 * d / np.sqrt(n)
    cov_tol = 6 * np.sqrt((cov**2 + np.outer(d**2, d**2)) / n)
    # The tolerance separates the right covariance from one off by a factor of 2.
    assert np.all(0.5 * np.diag(cov) > np.diag(cov_tol))
    assert np.all(np.abs(draws.mean(0) - mean) <= mean_tol)
    assert np.all(np.abs(np.cov(draws, rowvar=False) - cov) <= cov_tol)


N_DRAWS = 40_000


@pytest.mark.parametrize("n_iterates,max_rank", [(6, 20), (7, 3), (3, 3)])
def test_default_lowrank_draws_have_the_published_swag_covariance(n_iterates, max_rank):
    points = _iterates(n_iterates, 5, seed=n_iterates)
    moments = _collect(points, max_rank=max_rank)
    assert moments.rank == min(n_iterates, max_rank)
    draws = moments.sample(N_DRAWS, torch.Generator().manual_seed(1)).double().numpy()
    _check_draws(draws, points.mean(0), _published(points, max_rank, "lowrank"))


def test_default_diagonal_draws_are_swag_diagonal():
    points = _iterates(5, 4, seed=4) * np.array([0.1, 1.0, 10.0, 3.0])
    moments = _collect(points, max_rank=5)
    draws = moments.sample(N_DRAWS, torch.Generator().manual_seed(2), "diagonal").double()
    # N(mean, Sigma_diag): the variance (not the std) on the diagonal, no correlation.
    _check_draws(draws.numpy(), points.mean(0), _published(points, 5, "diagonal"))


@pytest.mark.parametrize("covariance,scale", [("lowrank", 2.0), ("lowrank", 0.1),
                                              ("diagonal", 0.25)])
def test_an_explicit_scale_multiplies_the_whole_covariance(covariance, scale):
    points = _iterates(6, 4, seed=7)
    moments = _collect(points, max_rank=4)
    _, var, dev = _hand_moments(points, 4)
    full = np.diag(var) + (dev.T @ dev / 3 if covariance == "lowrank" else 0)
    draws = moments.sample(N_DRAWS, torch.Generator().manual_seed(3), covariance, scale)
    _check_draws(draws.double().numpy(), points.mean(0), scale * full)


@pytest.mark.parametrize("covariance", ["diagonal", "lowrank"])
@pytest.mark.parametrize("scale", [None, 0.5, 3.0])
def test_covariance_method_is_the_sampling_covariance(covariance, scale):
    points = _iterates(5, 3, seed=6)
    moments = _collect(points, max_rank=4)
    _, var, dev = _hand_moments(points, 4)
    full = np.diag(var) + (dev.T @ dev / 3 if covariance == "lowrank" else 0)
    s = {"diagonal": 1.0, "lowrank": 0.5}[covariance] if scale is None else scale
    np.testing.assert_allclose(moments.covariance(covariance, scale).numpy(), s * full,
                               rtol=1e-5, atol=1e-12)


def test_lowrank_scale_uses_the_collected_count_not_max_rank():
    points = _iterates(3, 3, seed=5)
    moments = _collect(points, max_rank=20)
    assert moments.rank == 3
    _, var, dev = _hand_moments(points, 20)
    wrong = 0.5 * (np.diag(var) + dev.T @ dev / (20 - 1))
    draws = moments.sample(N_DRAWS, torch.Generator().manual_seed(4)).double().numpy()
    _check_draws(draws, points.mean(0), _published(points, 20, "lowrank"))
    assert np.abs(np.cov(draws, rowvar=False) - wrong).max() > 0.2 * np.abs(wrong).max()


def test_sampling_is_reproducible_and_leaves_global_rng_alone():
    moments = _collect(_iterates(4, 6), max_rank=4)
    state = torch.get_rng_state()
    a = moments.sample(3, torch.Generator().manual_seed(9))
    b = moments.sample(3, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())
    assert a.shape == (3, 6) and a.dtype == torch.float32


def test_lowrank_needs_two_deviations_and_data():
    moments = SWAGMoments(max_rank=5)
    with pytest.raises(ValueError, match="No parameter vector"):
        moments.sample(1, torch.Generator())
    moments.collect(torch.zeros(3))
    with pytest.raises(ValueError, match="at least 2 collected deviations"):
        moments.sample(1, torch.Generator(), covariance="lowrank")
    with pytest.raises(ValueError, match="covariance must be one of"):
        moments.sample(1, torch.Generator(), covariance="full")
    with pytest.raises(ValueError, match="scale must be >= 0"):
        moments.sample(1, torch.Generator(), covariance="diagonal", scale=-1.0)
    with pytest.raises(ValueError, match="Expected a vector of 3"):
        moments.collect(torch.zeros(4))
    with pytest.raises(ValueError, match="max_rank"):
        SWAGMoments(max_rank=0)
