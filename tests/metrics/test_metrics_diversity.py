"""Tests of prediction disagreement and of the diversity-accuracy reference curves."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import softmax
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score

from ensemblekit.metrics import (
    disagreement,
    diversity_accuracy_limits,
    mean_pairwise_disagreement,
    normalized_disagreement,
    pairwise_disagreement,
)

PROPERTY = settings(max_examples=30, deadline=None)


@st.composite
def member_probas(draw, min_members=1, max_members=5):
    n_members = draw(st.integers(min_members, max_members))
    n_samples = draw(st.integers(1, 15))
    n_classes = draw(st.integers(2, 5))
    logits = draw(
        hnp.arrays(np.float64, (n_members, n_samples, n_classes), elements=st.floats(-5, 5))
    )
    # A large scale makes some probabilities exactly 0 and ties between members likely.
    scale = draw(st.sampled_from([1.0, 200.0]))
    return softmax(scale * logits, axis=-1)


# --- disagreement -------------------------------------------------------------------------


def test_disagreement_hand_computed():
    # Top-1 labels [1, 0, 2, 2] and [1, 2, 2, 0] differ on points 1 and 3: 2 of 4.
    p_a = np.array([[0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.0, 0.1, 0.9]])
    p_b = np.array([[0.3, 0.4, 0.3], [0.1, 0.1, 0.8], [0.0, 0.0, 1.0], [0.7, 0.2, 0.1]])
    assert disagreement(p_a, p_b) == 0.5
    assert disagreement(p_a.argmax(1), p_b.argmax(1)) == 0.5


def test_disagreement_ignores_true_labels_and_counts_shared_errors_as_agreement():
    # Both classifiers predict class 1 everywhere: they agree on every point even though both
    # are wrong on some, unlike the "exactly one is right" notion of disagreement.
    p = np.tile([0.2, 0.8], (5, 1))
    assert disagreement(p, p.copy()) == 0.0


def test_disagreement_accepts_any_label_dtype_and_torch():
    assert disagreement(np.array(["a", "b", "c"]), np.array(["a", "c", "c"])) == pytest.approx(
        1 / 3
    )
    p_a = torch.softmax(torch.randn(20, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    p_b = torch.softmax(torch.randn(20, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    assert disagreement(p_a, p_b) == disagreement(p_a.numpy(), p_b.numpy())
    assert disagreement(p_a.requires_grad_(), p_b) == disagreement(p_a.detach().numpy(), p_b)


@PROPERTY
@given(member_probas(min_members=3, max_members=3))
def test_disagreement_is_a_metric_on_predictions(members):
    a, b, c = members
    d_ab = disagreement(a, b)
    assert 0.0 <= d_ab <= 1.0
    assert d_ab == disagreement(b, a)
    assert disagreement(a, a) == 0.0
    assert disagreement(a, c) <= d_ab + disagreement(b, c) + 1e-12
    # Independent route: agreement is the accuracy of one's labels against the other's.
    assert d_ab == pytest.approx(1.0 - accuracy_score(a.argmax(1), b.argmax(1)))


# --- pairwise ---------------------------------------------------------------------------


@PROPERTY
@given(member_probas())
def test_pairwise_disagreement_matches_pairs(members):
    matrix = pairwise_disagreement(members)
    n_members = members.shape[0]
    assert matrix.shape == (n_members, n_members)
    for i, j in itertools.product(range(n_members), repeat=2):
        assert matrix[i, j] == disagreement(members[i], members[j])
    np.testing.assert_array_equal(matrix, matrix.T)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)
    np.testing.assert_array_equal(pairwise_disagreement(members.argmax(axis=2)), matrix)


@PROPERTY
@given(member_probas(min_members=2), st.randoms(use_true_random=False))
def test_pairwise_disagreement_invariant_to_member_order(members, random):
    order = list(range(members.shape[0]))
    random.shuffle(order)
    matrix = pairwise_disagreement(members)
    np.testing.assert_array_equal(
        pairwise_disagreement(members[order]), matrix[np.ix_(order, order)]
    )
    assert mean_pairwise_disagreement(members[order]) == pytest.approx(
        mean_pairwise_disagreement(members)
    )


@PROPERTY
@given(member_probas(min_members=2))
def test_mean_pairwise_disagreement_is_mean_over_unordered_pairs(members):
    pairs = list(itertools.combinations(range(members.shape[0]), 2))
    expected = np.mean([disagreement(members[i], members[j]) for i, j in pairs])
    assert mean_pairwise_disagreement(members) == pytest.approx(expected)


def test_mean_pairwise_disagreement_needs_a_pair():
    with pytest.raises(ValueError, match="at least two members"):
        mean_pairwise_disagreement(np.full((1, 3, 2), 0.5))


# --- normalized disagreement ---------------------------------------------------------------


def test_normalized_disagreement_hand_computed_and_uses_compared_accuracy():
    y = np.array([0, 1, 2, 0, 1])
    # reference labels [0, 1, 2, 0, 1] (accuracy 1), compared labels [0, 1, 1, 2, 1]
    # (accuracy 3/5): disagreement 2/5, normalised (2/5) / (1 - 3/5) = 1.
    eye = np.eye(3)
    reference = 0.7 * eye[[0, 1, 2, 0, 1]] + 0.1
    compared = 0.7 * eye[[0, 1, 1, 2, 1]] + 0.1
    assert normalized_disagreement(compared, reference, y) == pytest.approx(1.0)
    # Swapping the roles divides by the reference's error rate 0: undefined.
    with pytest.warns(UndefinedMetricWarning, match="undefined"):
        assert np.isnan(normalized_disagreement(reference, compared, y))


@PROPERTY
@given(member_probas(min_members=2, max_members=2), st.data())
def test_normalized_disagreement_equals_ratio(members, data):
    compared, reference = members
    n_samples, n_classes = compared.shape
    y = data.draw(hnp.arrays(np.int64, n_samples, elements=st.integers(0, n_classes - 1)))
    acc = accuracy_score(y, compared.argmax(1))
    if acc == 1.0:
        with pytest.warns(UndefinedMetricWarning):
            assert np.isnan(normalized_disagreement(compared, reference, y))
        return
    expected = disagreement(compared, reference) / (1.0 - acc)
    assert normalized_disagreement(compared, reference, y) == pytest.approx(expected)
    if accuracy_score(y, reference.argmax(1)) < 1.0:
        assert normalized_disagreement(reference, reference, y) == 0.0


def test_normalized_disagreement_maps_labels():
    y_idx = np.array([0, 1, 1, 0])
    names = np.array(["spam", "ham"])  # column 0 is "spam"
    compared = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    reference = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.1, 0.9]])
    assert normalized_disagreement(compared, reference, names[y_idx], labels=names) == (
        normalized_disagreement(compared, reference, y_idx)
    )


# --- diversity-accuracy limits -------------------------------------------------------------

# Known values for a reference accuracy of 0.71 on 10 classes, given to 3 decimals.
LIMIT_TABLE = [
    (0.1, 1.000, 1.000),
    (0.3, 0.864, 1.092),
    (0.5, 0.620, 1.258),
    (0.7, 0.049, 1.644),
    (0.71, 0.000, 1.678),
]


@pytest.mark.parametrize(("acc", "lower", "upper"), LIMIT_TABLE)
def test_limits_match_known_table(acc, lower, upper):
    got_lower, got_upper = diversity_accuracy_limits(acc, 0.71, 10)
    assert got_lower == pytest.approx(lower, abs=5e-4)
    assert got_upper == pytest.approx(upper, abs=5e-4)


def test_limits_vectorised_like_scalar():
    accs = np.array([row[0] for row in LIMIT_TABLE])
    lower, upper = diversity_accuracy_limits(accs, 0.71, 10)
    assert lower.shape == upper.shape == accs.shape
    for i, acc in enumerate(accs):
        assert (lower[i], upper[i]) == pytest.approx(diversity_accuracy_limits(acc, 0.71, 10))


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 100), st.floats(0.0, 1.0))
def test_limits_known_points(n_classes, t):
    a_ref = 1.0 / n_classes + (1.0 - 1.0 / n_classes) * (0.01 + 0.99 * t)
    lower, upper = diversity_accuracy_limits(1.0 / n_classes, a_ref, n_classes)
    assert lower == pytest.approx(1.0) and upper == pytest.approx(1.0)
    if a_ref < 1.0:
        lower, upper = diversity_accuracy_limits(a_ref, a_ref, n_classes)
        assert lower == pytest.approx(0.0, abs=1e-12)
        assert upper == pytest.approx(2 * a_ref + (1 - a_ref) * (n_classes - 2) / (n_classes - 1))
    # Between chance and the reference the perturbed reference is the less diverse curve.
    accs = np.linspace(1.0 / n_classes, a_ref, 7)
    lower, upper = diversity_accuracy_limits(accs, a_ref, n_classes)
    finite = np.isfinite(lower)
    assert np.all(lower[finite] <= upper[finite] + 1e-12)
    raw_lower, raw_upper = diversity_accuracy_limits(accs, a_ref, n_classes, normalize=False)
    assert np.all((raw_upper >= 0) & (raw_upper <= 1 + 1e-12))
    np.testing.assert_allclose(raw_upper[accs < 1] / (1 - accs[accs < 1]), upper[accs < 1])
    np.testing.assert_allclose(raw_lower[finite] / (1 - accs[finite]), lower[finite])


def test_lower_limit_is_nan_outside_the_reachable_range():
    # Changing every prediction of a 0.71-accurate reference on 10 classes leaves accuracy
    # (1 - 0.71) / 9; the perturbed reference cannot go below that nor above 0.71.
    floor = 0.29 / 9
    lower, upper = diversity_accuracy_limits([floor / 2, floor, 0.8], 0.71, 10)
    assert np.isnan(lower[0]) and np.isnan(lower[2])
    assert np.isfinite(lower[1]) and np.all(np.isfinite(upper))
    lower, upper = diversity_accuracy_limits(1.0, 1.0, 10)
    assert np.isnan(lower) and np.isnan(upper)


def _uniform_other_label(labels, n_classes, rng):
    # Adding 1..C-1 modulo C moves each label to a different class, uniformly.
    return (labels + rng.integers(1, n_classes, size=labels.shape)) % n_classes


@pytest.mark.parametrize(("a_ref", "acc", "n_classes"), [(0.71, 0.4, 10), (0.9, 0.75, 3)])
def test_limits_match_the_constructions_they_describe(a_ref, acc, n_classes):
    """Simulate both constructions and compare with the closed forms."""
    rng = np.random.default_rng(0)
    n = 400_000
    y = rng.integers(0, n_classes, size=n)
    reference = np.where(rng.random(n) < a_ref, y, _uniform_other_label(y, n_classes, rng))
    a_ref_hat = np.mean(reference == y)

    # Lower: change a random fraction d of the reference's predictions to another label.
    d = (a_ref_hat - acc) / (a_ref_hat - (1 - a_ref_hat) / (n_classes - 1))
    perturbed = np.where(
        rng.random(n) < d, _uniform_other_label(reference, n_classes, rng), reference
    )
    a_low = np.mean(perturbed == y)
    lower, _ = diversity_accuracy_limits(a_low, a_ref_hat, n_classes)
    assert np.mean(perturbed != reference) / (1 - a_low) == pytest.approx(lower, abs=0.01)

    # Upper: an independent predictor of accuracy acc with errors uniform over wrong classes.
    independent = np.where(rng.random(n) < acc, y, _uniform_other_label(y, n_classes, rng))
    a_up = np.mean(independent == y)
    _, upper = diversity_accuracy_limits(a_up, a_ref_hat, n_classes)
    assert np.mean(independent != reference) / (1 - a_up) == pytest.approx(upper, abs=0.01)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.5, 0.1, 10), "reference_accuracy"),
        ((0.5, 1.2, 10), "reference_accuracy"),
        ((0.5, True, 10), "reference_accuracy"),
        ((0.5, 0.7, 1), "n_classes"),
        ((0.5, 0.7, 2.5), "n_classes"),
        ((1.5, 0.7, 10), "accuracy must lie"),
        ((np.nan, 0.7, 10), "accuracy must lie"),
        (("high", 0.7, 10), "accuracy must hold numbers"),
    ],
)
def test_limits_reject_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        diversity_accuracy_limits(*args)
