"""Tests of mutual information, Jensen-Shannon diversity and pairwise KL divergence."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import rel_entr, softmax
from scipy.stats import entropy

from ensemblekit.metrics import js_diversity, mutual_information, pairwise_kl

PROPERTY = settings(max_examples=30, deadline=None)


@st.composite
def member_probas(draw, min_members=1, max_members=5):
    n_members = draw(st.integers(min_members, max_members))
    n_samples = draw(st.integers(1, 15))
    n_classes = draw(st.integers(2, 5))
    logits = draw(
        hnp.arrays(np.float64, (n_members, n_samples, n_classes), elements=st.floats(-5, 5))
    )
    # A large scale makes some probabilities exactly 0.
    scale = draw(st.sampled_from([1.0, 200.0]))
    return softmax(scale * logits, axis=-1)


# --- mutual information and JS diversity ---------------------------------------------------


@PROPERTY
@given(member_probas())
def test_mutual_information_matches_scipy_entropies(members):
    expected = entropy(members.mean(axis=0), axis=-1) - entropy(members, axis=-1).mean(axis=0)
    np.testing.assert_allclose(mutual_information(members), expected, atol=1e-12)
    assert js_diversity(members) == pytest.approx(expected.mean(), abs=1e-12)


@PROPERTY
@given(member_probas())
def test_js_diversity_is_mean_kl_to_the_ensemble_mean(members):
    # Generalised JS divergence: (1/M) sum_m KL(p_m || mean), averaged over examples.
    mean = members.mean(axis=0)
    expected = rel_entr(members, mean[None]).sum(axis=-1).mean()
    assert js_diversity(members) == pytest.approx(expected, abs=1e-12)


@PROPERTY
@given(member_probas(), st.randoms(use_true_random=False))
def test_js_diversity_bounds_and_member_order(members, random):
    n_members, _, n_classes = members.shape
    value = js_diversity(members)
    assert 0.0 <= value <= min(np.log(n_classes), np.log(n_members)) + 1e-12
    assert np.all(mutual_information(members) >= 0.0)
    order = list(range(n_members))
    random.shuffle(order)
    assert js_diversity(members[order]) == pytest.approx(value, abs=1e-12)


@PROPERTY
@given(member_probas(max_members=1), st.integers(1, 5))
def test_identical_members_have_zero_diversity(single, n_copies):
    members = np.repeat(single, n_copies, axis=0)
    assert js_diversity(members) == pytest.approx(0.0, abs=1e-12)
    assert js_diversity(members, eps=1e-5) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(pairwise_kl(members), 0.0, atol=1e-12)


def test_js_diversity_hand_computed():
    # Point 0: one-hot on different classes, mean (1/2, 1/2), entropies 0: log 2.
    # Point 1: (1/2, 1/2) and (1, 0): H(3/4, 1/4) - (log 2 + 0) / 2.
    members = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [1.0, 0.0]]])
    h_mean = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    expected = np.array([np.log(2), h_mean - np.log(2) / 2])
    np.testing.assert_allclose(mutual_information(members), expected)
    assert js_diversity(members) == pytest.approx(expected.mean())


@PROPERTY
@given(member_probas())
def test_eps_follows_the_released_code_and_stays_close(members):
    eps = 1e-5
    n_classes = members.shape[2]

    def entropy_eps(p):
        return -np.sum(p * np.log(p + eps), axis=-1)

    expected = np.mean(entropy_eps(members.mean(axis=0)) - entropy_eps(members).mean(axis=0))
    assert js_diversity(members, eps=eps) == pytest.approx(max(expected, 0.0), abs=1e-12)
    # Each entropy moves by at most n_classes * eps, so the difference by at most twice that.
    assert abs(js_diversity(members, eps=eps) - js_diversity(members)) <= 2 * n_classes * eps


def test_information_accepts_torch():
    members = torch.softmax(torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(0)), -1)
    assert js_diversity(members) == pytest.approx(js_diversity(members.numpy()), abs=1e-7)
    # Halves and quarters are exact in bfloat16, which numpy itself cannot hold.
    exact = torch.tensor([[[0.5, 0.5], [0.25, 0.75]], [[1.0, 0.0], [0.75, 0.25]]])
    assert js_diversity(exact.to(torch.bfloat16)) == js_diversity(exact.numpy())


# --- pairwise KL ---------------------------------------------------------------------------


@PROPERTY
@given(member_probas(min_members=2))
def test_pairwise_kl_matches_scipy(members):
    matrix = pairwise_kl(members)
    n_members = members.shape[0]
    assert matrix.shape == (n_members, n_members)
    for i, j in itertools.product(range(n_members), repeat=2):
        expected = entropy(members[i], members[j], axis=1).mean()
        assert matrix[i, j] == pytest.approx(expected, abs=1e-12) or (
            np.isinf(matrix[i, j]) and np.isinf(expected)
        )
    np.testing.assert_array_equal(np.diag(matrix), 0.0)
    assert np.all(matrix >= 0.0)


def test_pairwise_kl_hand_computed_and_asymmetric():
    members = np.array([[[0.5, 0.5]], [[0.9, 0.1]]])
    kl_01 = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    kl_10 = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    np.testing.assert_allclose(pairwise_kl(members), [[0.0, kl_01], [kl_10, 0.0]])


def test_pairwise_kl_support_mismatch_and_smoothing():
    members = np.array([[[1.0, 0.0]], [[0.5, 0.5]]])
    raw = pairwise_kl(members)
    # KL((1/2, 1/2) || (1, 0)) puts mass where the other has none; the reverse is log 2.
    assert np.isinf(raw[1, 0])
    assert raw[0, 1] == pytest.approx(np.log(2))
    eps = 1e-3
    smoothed = pairwise_kl(members, eps=eps)
    q0 = (np.array([1.0, 0.0]) + eps) / (1 + 2 * eps)
    q1 = np.array([0.5, 0.5])  # uniform stays uniform under smoothing
    assert smoothed[1, 0] == pytest.approx(entropy(q1, q0))
    assert smoothed[0, 1] == pytest.approx(entropy(q0, q1))


@pytest.mark.parametrize("func", [js_diversity, mutual_information, pairwise_kl])
@pytest.mark.parametrize("eps", [-1e-5, np.inf, np.nan, "small", True])
def test_bad_eps(func, eps):
    with pytest.raises(ValueError, match="eps must be"):
        func(np.full((2, 3, 2), 0.5), eps=eps)
