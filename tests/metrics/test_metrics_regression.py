"""Metrics of a Gaussian mixture, checked against scipy.stats and numerical integration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from ensemblekit.metrics import (
    crps,
    gaussian_nll,
    interval_calibration_curve,
    interval_calibration_error,
    interval_coverage,
    interval_width,
    mixture_cdf,
    predictive_interval,
)


def _mixture(seed: int, m: int, n: int, t: int | None = None):
    rng = np.random.default_rng(seed)
    shape = (m, n) if t is None else (m, n, t)
    mean = rng.normal(scale=2.0, size=shape)
    std = rng.uniform(0.2, 2.0, size=shape)
    y = rng.normal(scale=2.0, size=shape[1:])
    return y, mean, std


def _scipy_mixture_cdf(x, mean, std):
    return np.mean([stats.norm.cdf(x, mu, s) for mu, s in zip(mean, std)], axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("m", [1, 4])
def test_gaussian_nll_matches_scipy_density(seed, m):
    y, mean, std = _mixture(seed, m, 30)
    density = np.mean([stats.norm.pdf(y, mu, s) for mu, s in zip(mean, std)], axis=0)
    assert gaussian_nll(y, mean, std) == pytest.approx(-np.log(density).mean(), rel=1e-10)


def test_gaussian_nll_multi_output_is_joint_density_of_independent_targets():
    y, mean, std = _mixture(3, 3, 20, t=2)
    joint = np.mean([
        stats.norm.pdf(y[:, 0], mu[:, 0], s[:, 0]) * stats.norm.pdf(y[:, 1], mu[:, 1], s[:, 1])
        for mu, s in zip(mean, std)
    ], axis=0)
    assert gaussian_nll(y, mean, std) == pytest.approx(-np.log(joint).mean(), rel=1e-10)


def test_gaussian_nll_stays_finite_far_in_the_tails():
    # Densities underflow to 0 in float64 there; logsumexp keeps the NLL exact.
    y = np.array([60.0])
    expected = -stats.norm.logpdf(60.0, 0.0, 1.0)
    assert gaussian_nll(y, [[0.0], [0.0]], [[1.0], [1.0]]) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_crps_of_one_gaussian_is_the_closed_form(seed):
    y, mean, std = _mixture(seed, 1, 25)
    z = (y - mean[0]) / std[0]
    expected = std[0] * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z)
                         - 1 / np.sqrt(np.pi))
    assert crps(y, mean, std) == pytest.approx(expected.mean(), rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crps_of_a_mixture_is_the_integral_of_the_squared_cdf_gap(seed):
    y, mean, std = _mixture(seed, 3, 4)
    values = []
    for i in range(4):
        def gap(x, i=i):
            return (_scipy_mixture_cdf(x, mean[:, i], std[:, i]) - (x >= y[i])) ** 2
        left = integrate.quad(gap, -np.inf, y[i], epsabs=1e-12, limit=200)[0]
        right = integrate.quad(gap, y[i], np.inf, epsabs=1e-12, limit=200)[0]
        values.append(left + right)
    assert crps(y, mean, std) == pytest.approx(np.mean(values), rel=1e-6)


def test_crps_of_point_members_is_the_ensemble_energy_form():
    rng = np.random.default_rng(4)
    points = rng.normal(size=(5, 7))
    y = rng.normal(size=7)
    expected = (np.abs(points - y).mean(axis=0)
                - np.abs(points[:, None] - points[None]).mean(axis=(0, 1)) / 2)
    assert crps(y, points, np.zeros_like(points)) == pytest.approx(expected.mean())


@pytest.mark.parametrize("level", [0.5, 0.9, 0.99])
def test_interval_of_one_gaussian_is_scipys(level):
    _, mean, std = _mixture(5, 1, 10)
    lower, upper = predictive_interval(mean, std, level)
    expected_lower, expected_upper = stats.norm.interval(level, mean[0], std[0])
    np.testing.assert_allclose(lower, expected_lower, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(upper, expected_upper, rtol=1e-9, atol=1e-9)
    assert interval_width(mean, std, level) == pytest.approx(
        np.mean(expected_upper - expected_lower), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_interval_of_a_mixture_holds_its_mass(seed):
    _, mean, std = _mixture(seed, 4, 12, t=2)
    lower, upper = predictive_interval(mean, std, 0.8)
    assert lower.shape == upper.shape == (12, 2)
    for t in range(2):
        np.testing.assert_allclose(_scipy_mixture_cdf(lower[:, t], mean[..., t], std[..., t]),
                                   0.1, atol=1e-9)
        np.testing.assert_allclose(_scipy_mixture_cdf(upper[:, t], mean[..., t], std[..., t]),
                                   0.9, atol=1e-9)


def test_mixture_cdf_matches_scipy():
    y, mean, std = _mixture(6, 3, 15)
    np.testing.assert_allclose(mixture_cdf(y, mean, std), _scipy_mixture_cdf(y, mean, std),
                               rtol=1e-12)


def test_coverage_by_hand():
    # N(0, 1): the 90% interval is +-1.645.
    y = np.array([0.0, 1.6, -1.7, 3.0])
    assert interval_coverage(y, np.zeros((1, 4)), np.ones((1, 4)), 0.9) == 0.5


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_coverage_of_draws_from_the_predicted_mixture_is_nominal(level):
    rng = np.random.default_rng(7)
    m, n = 3, 20000
    mean = rng.normal(size=(m, n))
    std = rng.uniform(0.3, 1.5, size=(m, n))
    pick = rng.integers(m, size=n)
    y = rng.normal(mean[pick, np.arange(n)], std[pick, np.arange(n)])
    # Binomial standard error at n = 20000 is at most 0.0036.
    assert interval_coverage(y, mean, std, level) == pytest.approx(level, abs=0.015)
    levels, observed = interval_calibration_curve(y, mean, std)
    np.testing.assert_allclose(observed, levels, atol=0.015)
    assert interval_calibration_error(y, mean, std) < 0.01
    # Over-confident predictions (half the spread) cover too little at every level.
    _, narrow = interval_calibration_curve(y, mean, std / 2)
    assert (narrow < levels).all()


def test_calibration_curve_agrees_with_coverage():
    y, mean, std = _mixture(8, 4, 300, t=2)
    levels, observed = interval_calibration_curve(y, mean, std, levels=[0.2, 0.6, 0.95])
    expected = [interval_coverage(y, mean, std, p) for p in levels]
    np.testing.assert_allclose(observed, expected)


def test_torch_inputs_are_accepted():
    torch = pytest.importorskip("torch")
    y, mean, std = _mixture(9, 2, 10)
    assert crps(torch.tensor(y), torch.tensor(mean), torch.tensor(std)) == pytest.approx(
        crps(y, mean, std))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gaussian_nll([0.0], [[0.0]], [[0.0]]), "positive standard deviations"),
        (lambda: crps([0.0, 1.0], [[0.0]], [[1.0]]), "y_true must have shape"),
        (lambda: crps([0.0], [[0.0]], [[-1.0]]), "non-negative"),
        (lambda: crps([0.0], [0.0], [1.0]), "n_members, n_samples"),
        (lambda: crps([0.0], [[0.0]], [[1.0, 2.0]]), "shape of member_mean"),
        (lambda: crps([np.nan], [[0.0]], [[1.0]]), "NaN"),
        (lambda: interval_width([[0.0]], [[1.0]], level=1.0), r"level must lie in \(0, 1\)"),
        (lambda: interval_coverage([0.0], [[0.0]], [[1.0]], level="high"), "real number"),
        (lambda: interval_calibration_curve([0.0], [[0.0]], [[1.0]], levels=[0.5, 2]),
         "every level"),
    ],
)
def test_invalid_inputs_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()
