"""Bad input: every metric fails with a ValueError that names the problem."""

from __future__ import annotations

import numpy as np
import pytest

from ensemblekit.metrics import (
    accuracy,
    brier_score,
    disagreement,
    ensemble_proba,
    ensemble_size_curve,
    expected_calibration_error,
    js_diversity,
    mean_pairwise_disagreement,
    mutual_information,
    negative_log_likelihood,
    normalized_disagreement,
    pairwise_disagreement,
    pairwise_kl,
)

PROBA = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
Y = np.array([0, 2])
PREDICTION_METRICS = [accuracy, negative_log_likelihood, brier_score, expected_calibration_error]
MEMBER_METRICS = [ensemble_proba, js_diversity, mutual_information, pairwise_kl]


def _bad_proba():
    not_normalised = PROBA.copy()
    not_normalised[1, 2] = 0.7  # row sums to 0.9
    negative = np.array([[1.1, -0.1, 0.0], [0.1, 0.1, 0.8]])
    with_nan = PROBA.copy()
    with_nan[0, 0] = np.nan
    with_inf = PROBA.copy()
    with_inf[0, 0] = np.inf
    return [
        pytest.param(PROBA[0], "2-D array", id="1-D"),
        pytest.param(not_normalised, r"sum to 1 .*within 0\.001.*sums to 0\.9", id="sum"),
        pytest.param(negative, "negative values", id="negative"),
        pytest.param(with_nan, "NaN or infinite", id="nan"),
        pytest.param(with_inf, "NaN or infinite", id="inf"),
        pytest.param(PROBA.astype(str), "real numbers", id="strings"),
        pytest.param(np.empty((0, 3)), "empty", id="empty"),
    ]


@pytest.mark.parametrize("metric", PREDICTION_METRICS)
@pytest.mark.parametrize(("proba", "match"), _bad_proba())
def test_prediction_metrics_reject_bad_proba(metric, proba, match):
    y = Y[: max(len(proba), 1)] if np.ndim(proba) == 2 else Y[:1]
    with pytest.raises(ValueError, match=match):
        metric(y, proba)


@pytest.mark.parametrize("metric", PREDICTION_METRICS)
def test_member_arrays_are_refused_with_a_hint(metric):
    with pytest.raises(ValueError, match=r"2-D array.*ensemble_proba"):
        metric(Y, np.stack([PROBA, PROBA]))


@pytest.mark.parametrize("metric", PREDICTION_METRICS)
def test_sum_tolerance_is_one_thousandth(metric):
    slightly_off = PROBA * (1 + 5e-4)  # rows sum to 1.0005: accepted
    metric(Y, slightly_off)
    too_far = PROBA * (1 + 2e-3)  # rows sum to 1.002: refused
    with pytest.raises(ValueError, match="sum to 1"):
        metric(Y, too_far)


@pytest.mark.parametrize("metric", PREDICTION_METRICS)
@pytest.mark.parametrize(
    ("y", "kwargs", "match"),
    [
        pytest.param([0, 3], {}, r"outside \[0, 3\)", id="too-large"),
        pytest.param([-1, 0], {}, r"outside \[0, 3\)", id="negative"),
        pytest.param([0.5, 1.0], {}, "integer class indices", id="fractional"),
        pytest.param([0, np.nan], {}, "NaN", id="nan"),
        pytest.param(["a", "b"], {}, "integer class indices.*labels=", id="strings"),
        pytest.param([True, False], {}, "integer class indices", id="bool"),
        pytest.param([[0, 2]], {}, "1-D", id="2-D"),
        pytest.param([0, 1, 2], {}, "3 samples but the probabilities have 2", id="length"),
        pytest.param(["a", "d"], {"labels": ["a", "b", "c"]}, "not in labels: 'd'", id="unknown"),
        pytest.param([0, 1], {"labels": ["a", "b"]}, "one label per column", id="few-labels"),
        pytest.param(["a", "b"], {"labels": ["a", "b", "a"]}, "duplicate", id="duplicate"),
    ],
)
def test_prediction_metrics_reject_bad_labels(metric, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        metric(y, PROBA, **kwargs)


@pytest.mark.parametrize("metric", [*MEMBER_METRICS, pairwise_disagreement])
@pytest.mark.parametrize(
    ("member_proba", "match"),
    [
        pytest.param(np.stack([PROBA, PROBA * 0.9]), "sum to 1", id="sum"),
        pytest.param(np.stack([PROBA, -PROBA]), "negative", id="negative"),
        pytest.param(np.full((2, 2, 3), np.nan), "NaN", id="nan"),
        pytest.param(np.full((2, 0, 3), 0.5), "empty", id="empty"),
        pytest.param(PROBA[None, None], r"shape \(n_members, n_samples, n_classes\)", id="4-D"),
    ],
)
def test_member_metrics_reject_bad_member_proba(metric, member_proba, match):
    with pytest.raises(ValueError, match=match):
        metric(member_proba)


@pytest.mark.parametrize("metric", MEMBER_METRICS)
def test_member_metrics_need_the_member_axis(metric):
    with pytest.raises(ValueError, match=r"3-D array of shape \(n_members"):
        metric(PROBA)


def test_disagreement_pairs_must_match():
    with pytest.raises(ValueError, match="same shape"):
        disagreement(PROBA, PROBA[:1])
    with pytest.raises(ValueError, match="same shape"):
        disagreement(PROBA, np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="same number of samples"):
        disagreement([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"both be probability arrays .* or both be label"):
        disagreement(PROBA, [0, 2])
    with pytest.raises(ValueError, match="both be probability arrays"):
        disagreement(np.stack([PROBA, PROBA]), np.stack([PROBA, PROBA]))
    with pytest.raises(ValueError, match="labels of different kinds"):
        disagreement([0, 1], ["0", "1"])
    with pytest.raises(ValueError, match="p_b contains NaN"):
        disagreement([0.0, 1.0], [0.0, np.nan])
    with pytest.raises(ValueError, match="p_a must hold probabilities that sum to 1"):
        disagreement(PROBA * 2, PROBA)


def test_pairwise_disagreement_rejects_single_predictions():
    with pytest.raises(ValueError, match=r"member_proba must be .*\(n_members, n_samples\)"):
        pairwise_disagreement([0, 1, 2])


def test_single_member_where_a_pair_is_needed():
    with pytest.raises(ValueError, match="at least two members"):
        mean_pairwise_disagreement(PROBA[None])
    with pytest.raises(ValueError, match="at least two members"):
        mean_pairwise_disagreement([[0, 1, 1]])


def test_normalized_disagreement_shapes():
    with pytest.raises(ValueError, match="same shape"):
        normalized_disagreement(PROBA, PROBA[:1], Y)
    with pytest.raises(ValueError, match="reference_proba must hold probabilities"):
        normalized_disagreement(PROBA, PROBA * 3, Y)
    with pytest.raises(ValueError, match="outside"):
        normalized_disagreement(PROBA, PROBA, [0, 7])


def test_curve_checks_its_inputs():
    with pytest.raises(ValueError, match="3-D"):
        ensemble_size_curve(PROBA, Y, "accuracy")
    with pytest.raises(ValueError, match="outside"):
        ensemble_size_curve(np.stack([PROBA, PROBA]), [0, 5], "accuracy")
