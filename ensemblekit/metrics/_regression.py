r"""Metrics of a predictive Gaussian mixture, and their scorers.

Every function takes the members' means and standard deviations, ``member_mean`` and
``member_std`` of shape ``(n_members, n_samples)`` or ``(n_members, n_samples,
n_targets)`` (what :meth:`DeepEnsembleRegressor.predict_member
<ensemblekit.DeepEnsembleRegressor.predict_member>` returns), and scores the equally
weighted mixture

.. math:: p(y \mid x) = \frac1M \sum_{m=1}^M N\big(y;\ \mu_m(x), \sigma_m^2(x)\big).

A single Gaussian is a mixture of one member: pass ``mean[None]`` and ``std[None]``.
With several targets, each target's marginal mixture is scored and the scores are
averaged over targets, except the NLL, which treats the targets as independent given
each member and scores their joint density. A member standard deviation of 0 is a
point mass (what a squared-error network predicts); the NLL refuses it, the other
metrics take it as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri

from ._validation import _check_numeric, to_numpy

_LOG_2PI = float(np.log(2.0 * np.pi))
#: Levels of the central intervals in :func:`interval_calibration_curve` by default.
DEFAULT_LEVELS = np.round(np.arange(1, 20) / 20, 2)
_BISECTION_STEPS = 64


# ----------------------------------------------------------------- validation
def _check_members(
    member_mean: Any, member_std: Any, y_true: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated float64 ``(M, N, T)`` means and stds, and ``(N, T)`` targets."""
    mean = _check_numeric(to_numpy(member_mean), "member_mean")
    std = _check_numeric(to_numpy(member_std), "member_std")
    if mean.ndim not in (2, 3):
        raise ValueError(
            "member_mean must have shape (n_members, n_samples) or (n_members, n_samples, "
            f"n_targets), got {mean.shape}. For a single Gaussian pass mean[None]."
        )
    if std.shape != mean.shape:
        raise ValueError(
            f"member_std must have the shape of member_mean {mean.shape}, got {std.shape}."
        )
    if mean.shape[0] == 0 or mean.shape[1] == 0:
        raise ValueError(f"member_mean must hold at least one member and one sample, got "
                         f"shape {mean.shape}.")
    if std.min() < 0:
        raise ValueError(f"member_std must be non-negative, got a minimum of {std.min():.6g}.")
    given = mean.shape
    if mean.ndim == 2:
        mean, std = mean[..., None], std[..., None]
    if y_true is None:
        return mean, std, None
    y = _check_numeric(to_numpy(y_true), "y_true")
    ok = y.shape == given[1:] or (y.ndim == 1 and y.shape[0] == given[1] and mean.shape[2] == 1)
    if not ok:
        raise ValueError(
            f"y_true must have shape {given[1:]} to match member_mean of shape {given}, "
            f"got {y.shape}."
        )
    return mean, std, y.reshape(mean.shape[1], mean.shape[2])


def _check_level(level: Any, name: str = "level") -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a real number in (0, 1), got {level!r}.")
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {level!r}.")
    return level


# ----------------------------------------------------------------- the mixture
def _component_cdf(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - mean) / std
    # A zero std is a point mass: its CDF steps from 0 to 1 at the mean.
    return np.where(std > 0, ndtr(z), (x >= mean).astype(np.float64))


def mixture_cdf(y: Any, member_mean: Any, member_std: Any) -> np.ndarray:
    """CDF of the mixture at ``y``: :math:`F(y) = \\frac1M \\sum_m \\Phi((y - \\mu_m)/\\sigma_m)`.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Points at which to evaluate each sample's (marginal) mixture CDF.
    member_mean, member_std : array-like of shape (n_members, n_samples[, n_targets])
        Means and standard deviations of the members.

    Returns
    -------
    cdf : ndarray of the shape of ``y``
        Also the probability integral transform (PIT) of ``y``.

    Examples
    --------
    >>> mixture_cdf([0.0], [[-1.0], [1.0]], [[1.0], [1.0]]).round(6).tolist()
    [0.5]
    """
    mean, std, y_arr = _check_members(member_mean, member_std, y)
    cdf = _component_cdf(y_arr[None], mean, std).mean(axis=0)
    return cdf.reshape(np.shape(to_numpy(y)))


def _quantile(q: float, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Quantile ``q`` of each mixture, ``(N, T)``, by bisection on its CDF."""
    component = mean + std * ndtri(q)
    # The mixture's quantile lies between its components' quantiles.
    lo, hi = component.min(axis=0), component.max(axis=0)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        below = _component_cdf(mid[None], mean, std).mean(axis=0) < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def predictive_interval(
    member_mean: Any, member_std: Any, level: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Central interval of the mixture: its ``(1 - level)/2`` and ``(1 + level)/2`` quantiles.

    The quantiles of the mixture itself, found by bisection on its CDF to float64
    precision (not the interval of a Gaussian with the mixture's mean and std).

    Parameters
    ----------
    member_mean, member_std : array-like of shape (n_members, n_samples[, n_targets])
        Means and standard deviations of the members.
    level : float, default=0.9
        Probability mass of the interval, in (0, 1).

    Returns
    -------
    lower : ndarray of shape (n_samples,) or (n_samples, n_targets)
        The ``(1 - level)/2`` quantile of each sample's (marginal) mixture.
    upper : ndarray of shape (n_samples,) or (n_samples, n_targets)
        The ``(1 + level)/2`` quantile.

    Examples
    --------
    >>> lower, upper = predictive_interval([[0.0]], [[1.0]], level=0.95)
    >>> round(float(lower[0]), 4), round(float(upper[0]), 4)
    (-1.96, 1.96)
    """
    level = _check_level(level)
    mean, std, _ = _check_members(member_mean, member_std)
    lower = _quantile((1.0 - level) / 2.0, mean, std)
    upper = _quantile((1.0 + level) / 2.0, mean, std)
    shape = np.shape(to_numpy(member_mean))[1:]
    return lower.reshape(shape), upper.reshape(shape)


# ----------------------------------------------------------------- scores
def gaussian_nll(y_true: Any, member_mean: Any, member_std: Any) -> float:
    r"""Mean negative log-likelihood of the Gaussian mixture, in nats.

    .. math:: \frac1N \sum_i -\log \frac1M \sum_m \prod_t
              N\big(y_{it};\ \mu_{mit}, \sigma_{mit}^2\big),

    the density of the mixture itself (not of a Gaussian matched to its moments),
    the log-likelihood constant :math:`\tfrac12\log 2\pi` included, computed with
    ``logsumexp``. With one member it is the NLL of that Gaussian.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
        True targets.
    member_mean, member_std : array-like of shape (n_members, n_samples[, n_targets])
        Means and standard deviations (all positive) of the members.

    Returns
    -------
    nll : float
        Mean over samples of the joint NLL of their targets.

    Raises
    ------
    ValueError
        For a zero standard deviation (a point mass has no density), or mismatched
        shapes.

    Examples
    --------
    >>> round(gaussian_nll([0.0], [[0.0]], [[1.0]]), 6)  # log(2 pi) / 2
    0.918939
    """
    mean, std, y = _check_members(member_mean, member_std, y_true)
    if std.min() <= 0:
        raise ValueError(
            "gaussian_nll needs positive standard deviations: a member with std 0 (e.g. "
            "trained with loss='squared_error') has no density. Use crps instead."
        )
    z = (y[None] - mean) / std
    log_density = (-0.5 * z**2 - np.log(std) - 0.5 * _LOG_2PI).sum(axis=2)  # (M, N)
    log_mixture = logsumexp(log_density, axis=0) - np.log(mean.shape[0])
    return float(-log_mixture.mean())


def _abs_moment(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """E|Z| for Z ~ N(mu, sigma^2): mu (2 Phi(mu/sigma) - 1) + 2 sigma phi(mu/sigma)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mu / sigma
        value = mu * (2.0 * ndtr(z) - 1.0) + 2.0 * sigma * np.exp(-0.5 * z**2) / np.sqrt(
            2.0 * np.pi)
    return np.where(sigma > 0, value, np.abs(mu))


def crps(y_true: Any, member_mean: Any, member_std: Any) -> float:
    r"""Mean continuous ranked probability score of the Gaussian mixture.

    The exact CRPS of the mixture (Grimit, Gneiting, Berrocal & Johnson, QJRMS 2006,
    Eq. 5), :math:`\mathrm{CRPS}(F, y) = E|X - y| - \tfrac12 E|X - X'|` with
    :math:`X, X'` independent draws of the mixture:

    .. math:: \frac1M\sum_m A(y - \mu_m, \sigma_m^2)
              - \frac1{2M^2}\sum_{m,k} A(\mu_m - \mu_k, \sigma_m^2 + \sigma_k^2),

    where :math:`A(\mu, s^2) = E|N(\mu, s^2)| = \mu(2\Phi(\mu/s) - 1) + 2s\,\varphi(\mu/s)`.
    With one member this is the closed form for a Gaussian (Gneiting & Raftery, JASA
    2007, Eq. 21), :math:`\sigma\,[z(2\Phi(z) - 1) + 2\varphi(z) - 1/\sqrt\pi]`; with
    zero standard deviations, the CRPS of the members' empirical distribution. It is
    in the units of ``y``, lower is better, and equals the absolute error for a
    single point forecast.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
        True targets.
    member_mean, member_std : array-like of shape (n_members, n_samples[, n_targets])
        Means and standard deviations of the members.

    Returns
    -------
    crps : float
        Mean over samples and targets. Cost and memory grow as ``n_members ** 2``.

    Examples
    --------
    >>> round(crps([0.0], [[0.0]], [[1.0]]), 6)  # (sqrt(2) - 1) / sqrt(pi)
    0.233695
    >>> crps([3.0], [[1.0]], [[0.0]])  # a point forecast: the absolute error
    2.0
    """
    mean, std, y = _check_members(member_mean, member_std, y_true)
    m = mean.shape[0]
    first = _abs_moment(y[None] - mean, std).mean(axis=0)
    second = np.zeros_like(first)
    for k in range(m):  # one member against all keeps memory at M * N * T
        spread = _abs_moment(mean - mean[k], np.sqrt(std**2 + std[k] ** 2))
        second += spread.sum(axis=0)
    return float((first - second / (2.0 * m * m)).mean())


def interval_coverage(
    y_true: Any, member_mean: Any, member_std: Any, level: float = 0.9
) -> float:
    """Fraction of targets inside the mixture's central interval at ``level``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
        True targets.
    member_mean, member_std : array-like of shape (n_members, n_samples[, n_targets])
        Means and standard deviations of the members.
    level : float, default=0.9
        Nominal coverage, in (0, 1).

    Returns
    -------
    coverage : float
        Fraction of ``y_true`` values (over samples and targets) with
        ``lower <= y <= upper``, the bounds of :func:`predictive_interval`; close to
        ``level`` when the predictive distribution is calibrated.

    Examples
    --------
    >>> interval_coverage([0.0, 3.0], [[0.0, 0.0]], [[1.0, 1.0]], level=0.9)
    0.5
    """
    lower, upper = predictive_interval(member_mean, member_std, level)
    _, _, y = _check_members(member_mean, member_std, y_true)
    y = y.reshape(lower.shape)
    return float(np.mean((lower <= y) & (y <= upper)))


def interval_width(member_mean: Any, member_std: Any, level: float = 0.9) -> float:
    """Mean width of the mixture's central intervals at ``level``, in the units of ``y``.

    Parameters
    ----------
    member_mean, member_std : array-like of shape (n_members, n_samples[, n_targets])
        Means and standard deviations of the members.
    level : float, default=0.9
        Probability mass of the intervals, in (0, 1).

    Returns
    -------
    width : float
        Mean over samples and targets of ``upper - lower`` (:func:`predictive_interval`).

    Examples
    --------
    >>> round(interval_width([[0.0]], [[2.0]], level=0.95), 3)  # 2 * 1.96 * 2
    7.84
    """
    lower, upper = predictive_interval(member_mean, member_std, level)
    return float(np.mean(upper - lower))


def interval_calibration_curve(
    y_true: Any,
    member_mean: Any,
    member_std: Any,
    levels: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed against nominal coverage of the mixture's central intervals.

    For each nominal level ``p``, the fraction of targets inside the central interval
    of mass ``p``: the ``y`` with ``|2 F(y) - 1| <= p``, where ``F`` is the mixture CDF
    (:func:`mixture_cdf`, the probability integral transform). For a continuous
    mixture (all standard deviations positive) this equals :func:`interval_coverage`
    at each level. A calibrated model lies on the diagonal; below it, intervals are
    too narrow (over-confident).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
        True targets.
    member_mean, member_std : array-like of shape (n_members, n_samples[, n_targets])
        Means and standard deviations of the members.
    levels : sequence of float, default=None
        Nominal levels in (0, 1); ``None`` means 0.05, 0.10, ..., 0.95.

    Returns
    -------
    levels : ndarray of shape (n_levels,)
        The nominal levels.
    observed : ndarray of shape (n_levels,)
        Observed coverage at each level, over samples and targets.

    Examples
    --------
    >>> y = [-2.0, -0.5, 0.1, 1.0]
    >>> levels, observed = interval_calibration_curve(y, [[0.0] * 4], [[1.0] * 4],
    ...                                               levels=[0.5, 0.9])
    >>> observed.tolist()
    [0.5, 0.75]
    """
    levels_arr = DEFAULT_LEVELS if levels is None else np.asarray(levels, dtype=np.float64)
    if levels_arr.ndim != 1 or len(levels_arr) == 0:
        raise ValueError(f"levels must be a non-empty 1-D sequence, got {levels!r}.")
    for level in levels_arr:
        _check_level(float(level), "every level")
    mean, std, y = _check_members(member_mean, member_std, y_true)
    pit = _component_cdf(y[None], mean, std).mean(axis=0).ravel()
    distance = np.abs(2.0 * pit - 1.0)
    observed = np.array([np.mean(distance <= p) for p in levels_arr])
    return levels_arr.copy(), observed


def interval_calibration_error(
    y_true: Any,
    member_mean: Any,
    member_std: Any,
    levels: Sequence[float] | np.ndarray | None = None,
) -> float:
    """Mean absolute gap between observed and nominal coverage of central intervals.

    The mean over ``levels`` of ``|observed - level|`` from
    :func:`interval_calibration_curve`; 0 for perfectly calibrated intervals.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
        True targets.
    member_mean, member_std : array-like of shape (n_members, n_samples[, n_targets])
        Means and standard deviations of the members.
    levels : sequence of float, default=None
        Nominal levels in (0, 1); ``None`` means 0.05, 0.10, ..., 0.95.

    Returns
    -------
    error : float
        Mean absolute coverage gap, in [0, 1].

    Examples
    --------
    >>> interval_calibration_error([-2.0, -0.5, 0.1, 1.0], [[0.0] * 4], [[1.0] * 4],
    ...                            levels=[0.5, 0.9])
    0.075
    """
    levels_arr, observed = interval_calibration_curve(y_true, member_mean, member_std, levels)
    return float(np.mean(np.abs(observed - levels_arr)))


# ----------------------------------------------------------------- scorers
def _predicting_estimator(estimator: Any, X: Any) -> tuple[Any, Any]:
    """The estimator that predicts, inside a fitted search or a Pipeline, and its input."""
    while True:
        if hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        elif hasattr(estimator, "steps") and len(estimator.steps) > 0:
            if len(estimator.steps) > 1:
                X = estimator[:-1].transform(X)
            estimator = estimator.steps[-1][1]
        else:
            return estimator, X


class _MemberGaussianScorer:
    """Score a regressor from ``predict_member(X)``: ``sign * metric(y, means, stds)``."""

    def __init__(self, name: str, metric: Callable[..., float], sign: float, **kwargs: Any):
        self.name = name
        self.metric = metric
        self.sign = sign
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"get_scorer({self.name!r})"

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        estimator, X = _predicting_estimator(estimator, X)
        predict = getattr(estimator, "predict_member", None)
        if not callable(predict):
            raise TypeError(
                f"The {self.name!r} scorer needs a regressor with a predict_member method "
                f"returning (means, stds), got {type(estimator).__name__}."
            )
        mean, std = predict(X)
        return self.sign * float(self.metric(y, mean, std, **self.kwargs))


def _interval_width_of(y: Any, mean: Any, std: Any, level: float) -> float:
    return interval_width(mean, std, level)


def _scorers() -> dict[str, _MemberGaussianScorer]:
    scorers = (
        _MemberGaussianScorer("neg_gaussian_nll", gaussian_nll, -1.0),
        _MemberGaussianScorer("neg_crps", crps, -1.0),
        _MemberGaussianScorer("neg_interval_calibration_error", interval_calibration_error,
                              -1.0),
        _MemberGaussianScorer("interval_coverage_90", interval_coverage, 1.0, level=0.9),
        _MemberGaussianScorer(
            "neg_interval_width_90", _interval_width_of, -1.0, level=0.9,
        ),
    )
    return {scorer.name: scorer for scorer in scorers}


#: Regression scorers by name, found by :func:`~ensemblekit.metrics.get_scorer`.
REGRESSION_SCORERS: dict[str, _MemberGaussianScorer] = _scorers()
