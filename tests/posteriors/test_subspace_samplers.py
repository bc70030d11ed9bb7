"""Each subspace sampler against its written definition, on small vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from ensemblekit.posteriors import (
    diagonal_gaussian_samples,
    dropout_subspace_sample,
    pca_gaussian_samples,
    pca_subspace,
    random_direction,
    random_subspace_sample,
    weight_average,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_direction_is_unit_and_isotropic():
    gen = _gen()
    directions = torch.stack([random_direction(4, gen) for _ in range(8000)]).double()
    np.testing.assert_allclose(directions.norm(dim=1).numpy(), 1.0, rtol=1e-6)
    # Uniform on the sphere: zero mean, covariance I / P.
    np.testing.assert_allclose(directions.mean(0).numpy(), 0.0, atol=0.03)
    np.testing.assert_allclose(np.cov(directions.numpy(), rowvar=False), np.eye(4) / 4,
                               atol=0.015)


def test_random_subspace_distance_is_uniform_up_to_scale():
    theta = torch.arange(50, dtype=torch.float32)
    gen = _gen(1)
    distances = np.array(
        [float((random_subspace_sample(theta, 10.0, gen) - theta).norm()) for _ in range(5000)]
    )
    assert distances.max() <= 10.0 + 1e-4 and distances.min() >= 0.0
    # s = 10 U(0, 1): mean 5, variance 100 / 12.
    assert abs(distances.mean() - 5.0) < 0.2
    assert abs(distances.var() - 100 / 12) < 0.6


def test_dropout_subspace_masks_every_element_and_rescales():
    theta = torch.linspace(1.0, 2.0, 200_000)
    gen = _gen(2)
    for _ in range(5):
        sample = dropout_subspace_sample(theta, 0.4, gen)
        kept = sample != 0
        ratio = (sample[kept] / theta[kept]).double()
        # One p per sample: every kept element is scaled by the same 1 / (1 - p).
        assert float(ratio.max() - ratio.min()) < 1e-5
        p = 1.0 - 1.0 / float(ratio[0])
        assert 0.0 <= p <= 0.4
        assert abs(float((~kept).double().mean()) - p) < 0.005
    with pytest.raises(ValueError, match="max_p"):
        dropout_subspace_sample(theta, 1.0, gen)


def test_dropout_subspace_is_unbiased():
    theta = torch.tensor([1.0, -2.0, 3.0])
    gen = _gen(3)
    draws = torch.stack([dropout_subspace_sample(theta, 0.5, gen) for _ in range(6000)])
    np.testing.assert_allclose(draws.double().mean(0).numpy(), theta.numpy(), rtol=0.06)


def test_diagonal_gaussian_uses_population_std_times_scale():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(10, 3)) * np.array([0.5, 1.0, 3.0])
    samples = diagonal_gaussian_samples(torch.as_tensor(points), 100_000, 2.0, _gen(4)).double()
    np.testing.assert_allclose(samples.mean(0).numpy(), points.mean(0), atol=0.05)
    np.testing.assert_allclose(samples.std(0).numpy(), 2.0 * points.std(0, ddof=0), rtol=0.01)


def test_pca_directions_are_orthonormal_and_match_sklearn():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(10, 30)) * np.linspace(5, 0.1, 30)
    mean, components = pca_subspace(torch.as_tensor(points), 4)
    np.testing.assert_allclose((components @ components.T).numpy(), np.eye(4), atol=1e-10)
    reference = PCA(n_components=4).fit(points - points.mean(0))
    overlap = np.abs(components.numpy() @ reference.components_.T)
    np.testing.assert_allclose(overlap, np.eye(4), atol=1e-6)
    np.testing.assert_allclose(mean.numpy(), points.mean(0), rtol=1e-12)


def test_pca_gaussian_samples_unit_directions_not_variances():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(10, 20)) * np.linspace(10, 0.1, 20)
    mean, components = pca_subspace(torch.as_tensor(points), 3)
    samples = pca_gaussian_samples(torch.as_tensor(points), 3, 50_000, 1.5, _gen(5)).double()
    centred = samples - mean
    coefficients = centred @ components.T
    # Samples lie in the span of the directions ...
    residual = centred - coefficients @ components
    assert float(residual.abs().max()) < 1e-4
    # ... with coefficients ~ N(0, c^2), whatever the principal variances.
    np.testing.assert_allclose(coefficients.std(0).numpy(), 1.5, rtol=0.02)
    np.testing.assert_allclose(coefficients.mean(0).numpy(), 0.0, atol=0.03)


def test_pca_rank_is_checked():
    with pytest.raises(ValueError, match="rank must lie in"):
        pca_subspace(torch.zeros(3, 10), 4)
    with pytest.raises(ValueError, match="points must be a 2-d"):
        pca_subspace(torch.zeros(10), 1)


def test_weight_average_is_the_mean():
    points = np.random.default_rng(3).normal(size=(10, 7))
    np.testing.assert_allclose(weight_average(torch.as_tensor(points)).numpy(),
                               points.mean(0), rtol=1e-6)


def test_samplers_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    theta = torch.ones(5)
    random_subspace_sample(theta, 1.0, _gen())
    dropout_subspace_sample(theta, 0.1, _gen())
    diagonal_gaussian_samples(torch.rand(3, 5, generator=_gen()), 2, 1.0, _gen())
    pca_gaussian_samples(torch.rand(3, 5, generator=_gen()), 2, 2, 1.0, _gen())
    assert torch.equal(state, torch.get_rng_state())
