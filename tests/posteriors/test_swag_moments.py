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


def _empirical(moments: SWAGMoments, covariance: str, scale: float, n: int = 200_000):
    draws = moments.sample(n, torch.Generator().manual_seed(1), covariance, scale).double()
    return draws.mean(0).numpy(), np.cov(draws.numpy(), rowvar=False)


@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_lowrank_samples_have_the_swag_covariance(scale):
    points = _iterates(6, 4, seed=3)
    moments = _collect(points, max_rank=20)
    deviations = (points - np.cumsum(points, 0) / np.arange(1, 7)[:, None])  # (K', P), K'=6
    analytic = scale * (
        np.diag(points.var(axis=0)) / 2 + deviations.T @ deviations / (2 * (6 - 1))
    )
    mean, cov = _empirical(moments, "lowrank", scale)
    std = np.sqrt(np.diag(analytic))
    np.testing.assert_allclose(mean, points.mean(axis=0), atol=0.02 * std.max())
    np.testing.assert_allclose(cov, analytic, atol=0.02 * np.diag(analytic).max())


def test_diagonal_samples_use_the_standard_deviation():
    points = _iterates(5, 3, seed=4) * np.array([0.1, 1.0, 10.0])
    moments = _collect(points, max_rank=5)
    _mean, cov = _empirical(moments, "diagonal", 0.5)
    # The variance (not the std) would put 0.5 * var**2 on the diagonal.
    np.testing.assert_allclose(np.diag(cov), 0.5 * points.var(axis=0), rtol=0.02)
    off = cov - np.diag(np.diag(cov))
    assert np.abs(off).max() < 0.02 * np.diag(cov).max()


def test_lowrank_scale_uses_the_collected_count_not_max_rank():
    points = _iterates(3, 3, seed=5)
    moments = _collect(points, max_rank=20)
    assert moments.rank == 3
    deviations = points - np.cumsum(points, 0) / np.arange(1, 4)[:, None]
    diag = np.diag(points.var(axis=0)) / 2
    right = diag + deviations.T @ deviations / (2 * (3 - 1))
    wrong = diag + deviations.T @ deviations / (2 * (20 - 1))
    _, cov = _empirical(moments, "lowrank", 1.0)
    assert np.abs(cov - right).max() < 0.05 * np.abs(right).max()
    assert np.abs(cov - wrong).max() > 0.2 * np.abs(right).max()


def test_covariance_method_agrees_with_hand_formula():
    points = _iterates(4, 3, seed=6)
    moments = _collect(points, max_rank=2)
    deviations = (points - np.cumsum(points, 0) / np.arange(1, 5)[:, None])[-2:]
    expected = 0.5 * (np.diag(points.var(axis=0)) / 2 + deviations.T @ deviations / 2)
    np.testing.assert_allclose(moments.covariance("lowrank", 0.5).numpy(), expected, rtol=1e-5)


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
    with pytest.raises(ValueError, match="Expected a vector of 3"):
        moments.collect(torch.zeros(4))
    with pytest.raises(ValueError, match="max_rank"):
        SWAGMoments(max_rank=0)
