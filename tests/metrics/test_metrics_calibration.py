"""Tests of accuracy, NLL, Brier score, ECE and the ensemble mean."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import softmax
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from ensemblekit.metrics import (
    accuracy,
    brier_score,
    ensemble_proba,
    expected_calibration_error,
    negative_log_likelihood,
)

PROPERTY = settings(max_examples=30, deadline=None)


@st.composite
def labelled_proba(draw, min_classes=2, max_classes=5, max_samples=30):
    n_samples = draw(st.integers(1, max_samples))
    n_classes = draw(st.integers(min_classes, max_classes))
    logits = draw(hnp.arrays(np.float64, (n_samples, n_classes), elements=st.floats(-5, 5)))
    scale = draw(st.sampled_from([1.0, 200.0]))
    y = draw(hnp.arrays(np.int64, n_samples, elements=st.integers(0, n_classes - 1)))
    return y, softmax(scale * logits, axis=1)


# --- ensemble mean and accuracy ------------------------------------------------------------


def test_ensemble_proba_is_member_mean():
    members = np.array([[[1.0, 0.0], [0.2, 0.8]], [[0.5, 0.5], [0.4, 0.6]]])
    np.testing.assert_allclose(ensemble_proba(members), [[0.75, 0.25], [0.3, 0.7]])
    np.testing.assert_allclose(ensemble_proba(torch.from_numpy(members)), ensemble_proba(members))


@PROPERTY
@given(labelled_proba())
def test_accuracy_matches_sklearn(data):
    y, proba = data
    assert accuracy(y, proba) == pytest.approx(accuracy_score(y, proba.argmax(axis=1)))


def test_accuracy_ties_go_to_lowest_column():
    assert accuracy([0, 1], [[0.5, 0.5], [0.5, 0.5]]) == 0.5


# --- negative log-likelihood ---------------------------------------------------------------


@PROPERTY
@given(labelled_proba())
def test_nll_matches_sklearn_log_loss(data):
    y, proba = data
    n_classes = proba.shape[1]
    # Positional arguments: sklearn renamed the probability argument in 1.9.
    expected = log_loss(y, proba, labels=np.arange(n_classes))
    assert negative_log_likelihood(y, proba) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_nll_is_a_mean_and_clips_zero_probability():
    # -(log 0.5 + log 0.25) / 2, a mean not a sum.
    assert negative_log_likelihood([0, 1], [[0.5, 0.5], [0.75, 0.25]]) == pytest.approx(
        -(np.log(0.5) + np.log(0.25)) / 2
    )
    # A true class with probability 0 costs -log(float64 eps) = 52 log 2 ~ 36.04 nats.
    assert negative_log_likelihood([1], [[1.0, 0.0]]) == pytest.approx(52 * np.log(2))


# --- Brier score ---------------------------------------------------------------------------


@PROPERTY
@given(labelled_proba(max_classes=2, min_classes=2))
def test_binary_brier_is_twice_sklearn(data):
    # (p1 - y)^2 + (p0 - (1 - y))^2 = 2 (p1 - y)^2 because p0 = 1 - p1: twice the binary score.
    y, proba = data
    expected = 2 * brier_score_loss(y, proba[:, 1], pos_label=1)
    assert brier_score(y, proba) == pytest.approx(expected, abs=1e-12)


@pytest.mark.skipif(
    "scale_by_half" not in inspect.signature(brier_score_loss).parameters,
    reason="multi-class brier_score_loss needs scikit-learn >= 1.7",
)
@PROPERTY
@given(labelled_proba(min_classes=3))
def test_multiclass_brier_matches_sklearn(data):
    y, proba = data
    n_classes = proba.shape[1]
    expected = brier_score_loss(y, proba, labels=np.arange(n_classes), scale_by_half=False)
    assert brier_score(y, proba) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_brier_hand_computed_extremes(n_classes):
    y = np.arange(n_classes)
    eye = np.eye(n_classes)
    assert brier_score(y, eye) == 0.0
    assert brier_score(y, np.roll(eye, 1, axis=1)) == 2.0
    # Uniform: (1/C - 1)^2 + (C - 1)/C^2 = (C - 1)/C.
    uniform = np.full((n_classes, n_classes), 1.0 / n_classes)
    assert brier_score(y, uniform) == pytest.approx((n_classes - 1) / n_classes)


@PROPERTY
@given(labelled_proba())
def test_brier_in_range(data):
    y, proba = data
    assert 0.0 <= brier_score(y, proba) <= 2.0


# --- expected calibration error ------------------------------------------------------------


def test_ece_single_bin_is_accuracy_minus_confidence():
    rng = np.random.default_rng(0)
    proba = softmax(rng.normal(size=(50, 4)), axis=1)
    y = rng.integers(0, 4, size=50)
    expected = abs(accuracy_score(y, proba.argmax(1)) - proba.max(1).mean())
    for strategy in ("uniform", "quantile"):
        ece = expected_calibration_error(y, proba, n_bins=1, strategy=strategy)
        assert ece == pytest.approx(expected)


def test_ece_bins_are_closed_on_the_right():
    # Confidence 0.5 (correct) and 0.6 (wrong), 2 bins with edge 0.5. Right-closed bins put
    # them apart: (|1 - 0.5| + |0 - 0.6|) / 2 = 0.55. Left-closed would merge them: 0.05.
    proba = [[0.5, 0.5], [0.6, 0.4]]
    assert expected_calibration_error([0, 1], proba, n_bins=2) == pytest.approx(0.55)


def test_ece_one_point_per_bin_and_empty_bins():
    # Distinct confidences in 1000 narrow bins: each point alone, every other bin empty, so
    # the ECE is the mean absolute gap between correctness and confidence.
    proba = np.array([[0.55, 0.45], [0.7, 0.3], [0.91, 0.09]])
    y = np.array([0, 1, 0])
    expected = np.mean(np.abs(np.array([1, 0, 1]) - np.array([0.55, 0.7, 0.91])))
    assert expected_calibration_error(y, proba, n_bins=1000) == pytest.approx(expected)


def _calibration_data(seed, n_samples=300, n_classes=3):
    rng = np.random.default_rng(seed)
    proba = softmax(2 * rng.normal(size=(n_samples, n_classes)), axis=1)
    y = rng.integers(0, n_classes, size=n_samples)
    y[:30] = proba[:30].argmax(1)  # make sure there are both correct and wrong points
    confidence = proba.max(1)
    correct = (proba.argmax(1) == y).astype(int)
    return y, proba, confidence, correct


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_uniform_ece_matches_sklearn_calibration_curve(n_bins):
    y, proba, confidence, correct = _calibration_data(n_bins)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=n_bins)
    # Confidences are continuous, so no point sits on an edge and histogram's counts agree.
    counts, _ = np.histogram(confidence, bins=np.linspace(0, 1, n_bins + 1))
    counts = counts[counts > 0]
    expected = np.sum(counts / counts.sum() * np.abs(prob_true - prob_pred))
    assert expected_calibration_error(y, proba, n_bins=n_bins) == pytest.approx(expected)


@pytest.mark.parametrize("n_bins", [3, 10, 15])
def test_quantile_ece_matches_sklearn_calibration_curve(n_bins):
    y, proba, confidence, correct = _calibration_data(n_bins)
    # 300 distinct confidences split into equal-mass bins of 300 / n_bins points each.
    prob_true, prob_pred = calibration_curve(
        correct, confidence, n_bins=n_bins, strategy="quantile"
    )
    assert prob_true.size == n_bins
    expected = np.mean(np.abs(prob_true - prob_pred))
    ece = expected_calibration_error(y, proba, n_bins=n_bins, strategy="quantile")
    assert ece == pytest.approx(expected)


def test_quantile_ece_with_tied_confidences_uses_one_bin():
    proba = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 6 + [1] * 4)
    # All edges coincide, all points share one bin: |0.6 - 0.8|.
    assert expected_calibration_error(y, proba, strategy="quantile") == pytest.approx(0.2)


@PROPERTY
@given(labelled_proba(), st.integers(1, 20), st.sampled_from(["uniform", "quantile"]))
def test_ece_in_range(data, n_bins, strategy):
    y, proba = data
    ece = expected_calibration_error(y, proba, n_bins=n_bins, strategy=strategy)
    assert 0.0 <= ece <= 1.0
    # Binning can only hide gaps: the ECE never exceeds the mean per-point gap.
    gap = np.mean(np.abs((proba.argmax(1) == y) - proba.max(1)))
    assert ece <= gap + 1e-12


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_bins": 0}, "n_bins"),
        ({"n_bins": 2.5}, "n_bins"),
        ({"strategy": "equal"}, "strategy must be one of"),
    ],
)
def test_ece_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error([0], [[0.9, 0.1]], **kwargs)


# --- labels --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric", [accuracy, negative_log_likelihood, brier_score, expected_calibration_error]
)
def test_labels_map_to_columns_in_column_order(metric):
    rng = np.random.default_rng(1)
    proba = softmax(rng.normal(size=(40, 3)), axis=1)
    y_idx = rng.integers(0, 3, size=40)
    names = np.array(["zebra", "ant", "moose"])  # column order, deliberately not sorted
    assert metric(names[y_idx], proba, labels=names) == pytest.approx(metric(y_idx, proba))
    # Float labels holding integers are accepted as indices.
    assert metric(y_idx.astype(float), proba) == pytest.approx(metric(y_idx, proba))
