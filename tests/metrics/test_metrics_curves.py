"""Tests of metrics as a function of ensemble size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import softmax
from sklearn.metrics import log_loss

from ensemblekit.metrics import (
    accuracy,
    brier_score,
    ensemble_size_curve,
    negative_log_likelihood,
)


def _members(seed=0, n_members=5, n_samples=40, n_classes=3):
    rng = np.random.default_rng(seed)
    proba = softmax(rng.normal(size=(n_members, n_samples, n_classes)), axis=-1)
    y = rng.integers(0, n_classes, size=n_samples)
    return proba, y


def _brute_force(members, y, metric, size):
    # Every subset of the given size, enumerated through bit masks.
    values = []
    for mask in range(1, 2 ** members.shape[0]):
        chosen = [m for m in range(members.shape[0]) if mask >> m & 1]
        if len(chosen) == size:
            values.append(metric(y, members[chosen].mean(axis=0)))
    return np.mean(values), np.std(values), len(values)


@pytest.mark.parametrize("name", ["accuracy", "brier_score", "negative_log_likelihood"])
def test_curve_matches_brute_force(name):
    members, y = _members()
    metric = {"accuracy": accuracy, "brier_score": brier_score}.get(name, negative_log_likelihood)
    curve = ensemble_size_curve(members, y, name)
    np.testing.assert_array_equal(curve.sizes, [1, 2, 3, 4, 5])
    for i, size in enumerate(curve.sizes):
        mean, std, count = _brute_force(members, y, metric, size)
        assert curve.mean[i] == pytest.approx(mean)
        assert curve.std[i] == pytest.approx(std, abs=1e-12)
        assert curve.n_subsets[i] == count
    assert curve.std[-1] == 0.0


def test_callable_metric_gets_y_as_given():
    members, y_idx = _members(seed=1)
    names = np.array(["b", "a", "c"])  # column order

    def sklearn_nll(y_true, proba):
        return log_loss(y_true, proba, labels=np.sort(names))

    # sklearn's log_loss orders string labels alphabetically: reorder columns to match.
    reordered = members[:, :, np.argsort(names)]
    curve = ensemble_size_curve(reordered, names[y_idx], sklearn_nll, sizes=[1, 3])
    named = ensemble_size_curve(
        members, names[y_idx], "negative_log_likelihood", sizes=[1, 3], labels=names
    )
    np.testing.assert_allclose(curve.mean, named.mean)
    np.testing.assert_array_equal(curve.sizes, [1, 3])


def test_random_subsets_when_too_many():
    members, y = _members(seed=2, n_members=7)
    # C(7, 3) = 35 > 10 subsets: 10 distinct random ones; C(7, 7) = 1 <= 10: enumerated.
    curve = ensemble_size_curve(
        members, y, "brier_score", sizes=[3, 7], max_subsets=10, random_state=0
    )
    np.testing.assert_array_equal(curve.n_subsets, [10, 1])
    again = ensemble_size_curve(
        members, y, "brier_score", sizes=[3, 7], max_subsets=10, random_state=0
    )
    np.testing.assert_array_equal(curve.mean, again.mean)
    from_generator = ensemble_size_curve(
        members,
        y,
        "brier_score",
        sizes=[3, 7],
        max_subsets=10,
        random_state=np.random.default_rng(0),
    )
    np.testing.assert_array_equal(curve.mean, from_generator.mean)
    # The random subsets come from the right population: their mean lies within the range of
    # all 35 subset values, and many subsets estimate the full mean closely.
    full_mean, full_std, _ = _brute_force(members, y, brier_score, 3)
    many = ensemble_size_curve(members, y, "brier_score", sizes=[3], max_subsets=34, random_state=1)
    assert many.n_subsets[0] == 34
    assert many.mean[0] == pytest.approx(full_mean, abs=full_std / 5)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 5), st.integers(1, 12), st.integers(2, 4), st.data())
def test_mean_brier_never_increases_with_size(n_members, n_samples, n_classes, data):
    # The mean of a (k+1)-subset is the average of the means of its k-subsets, so by
    # convexity of the Brier score the average over subsets cannot grow with k.
    logits = data.draw(
        hnp.arrays(np.float64, (n_members, n_samples, n_classes), elements=st.floats(-6, 6))
    )
    y = data.draw(hnp.arrays(np.int64, n_samples, elements=st.integers(0, n_classes - 1)))
    curve = ensemble_size_curve(softmax(logits, axis=-1), y, "brier_score")
    assert np.all(np.diff(curve.mean) <= 1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": "f1"}, "metric must be one of"),
        ({"metric": 3}, "metric must be"),
        ({"metric": "accuracy", "sizes": [0, 1]}, "each size"),
        ({"metric": "accuracy", "sizes": [6]}, r"sizes must be .* \[1, 5\]"),
        ({"metric": "accuracy", "sizes": []}, "sizes must be"),
        ({"metric": "accuracy", "max_subsets": 0}, "max_subsets"),
    ],
)
def test_bad_arguments(kwargs, match):
    members, y = _members()
    with pytest.raises(ValueError, match=match):
        ensemble_size_curve(members, y, **kwargs)
