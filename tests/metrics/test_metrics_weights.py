"""Tests of weight-space cosine similarity and distance."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import cosine as scipy_cosine_distance
from torch import nn
from torch.nn.utils import parameters_to_vector

from ensemblekit.metrics import (
    weight_cosine_similarity,
    weight_cosine_similarity_matrix,
    weight_distance,
    weight_distance_matrix,
)
from ensemblekit.models import MLP


def _randomized(module: nn.Module, seed: int) -> nn.Module:
    # A private generator: the tests never touch torch's global RNG.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    return module


def _net(seed: int) -> nn.Module:
    return _randomized(MLP(in_features=5, num_classes=3, hidden_layer_sizes=(7, 4)), seed)


def _bn_net(seed: int) -> nn.Module:
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    return _randomized(net, seed)


def test_cosine_and_distance_match_scipy_on_all_parameters():
    a, b = _net(0), _net(1)
    va = parameters_to_vector(a.parameters()).detach().double().numpy()
    vb = parameters_to_vector(b.parameters()).detach().double().numpy()
    assert weight_cosine_similarity(a, b) == pytest.approx(1.0 - scipy_cosine_distance(va, vb))
    assert weight_distance(a, b) == pytest.approx(np.linalg.norm(va - vb))


def test_biases_are_included():
    # y = 1 * x + 0 against y = 0 * x + 1: orthogonal once biases count (weights alone would
    # leave the second network all zeros).
    a, b = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        a.weight.fill_(1.0), a.bias.fill_(0.0)
        b.weight.fill_(0.0), b.bias.fill_(1.0)
    assert weight_cosine_similarity(a, b) == 0.0
    assert weight_distance(a, b) == pytest.approx(np.sqrt(2.0))


def test_module_state_dict_and_vector_forms_agree():
    a, b = _net(2), _net(3)
    expected = weight_cosine_similarity(a, b)
    vb = parameters_to_vector(b.parameters()).detach()
    state_b = b.state_dict()
    reordered = OrderedDict(reversed(list(state_b.items())))
    assert weight_cosine_similarity(a, state_b) == pytest.approx(expected)
    assert weight_cosine_similarity(a, reordered) == pytest.approx(expected)
    assert weight_cosine_similarity(a, vb) == pytest.approx(expected)
    assert weight_cosine_similarity(a, vb.numpy()) == pytest.approx(expected)
    assert weight_cosine_similarity({k: v.numpy() for k, v in a.state_dict().items()}, b) == (
        pytest.approx(expected)
    )
    assert weight_distance(reordered, a) == pytest.approx(weight_distance(b, a))
    assert weight_cosine_similarity(a, a) == 1.0
    assert weight_distance(a, a.state_dict()) == 0.0


def test_buffers_only_with_include_buffers():
    a, b = _bn_net(0), _bn_net(0)
    with torch.no_grad():
        b[1].running_mean.add_(3.0)  # 6 entries moved by 3: distance sqrt(6 * 9)
    b[1].num_batches_tracked.add_(5)  # integer buffer: never counted
    assert weight_distance(a, b) == 0.0
    assert weight_cosine_similarity(a, b) == 1.0
    assert weight_distance(a, b, include_buffers=True) == pytest.approx(np.sqrt(54.0))
    # A state dict is taken as it stands, buffers included.
    assert weight_distance(a.state_dict(), b.state_dict()) == pytest.approx(np.sqrt(54.0))
    assert weight_distance(a, b.state_dict(), include_buffers=True) == pytest.approx(np.sqrt(54.0))
    with pytest.raises(ValueError, match=r"different parameter names.*running_mean"):
        weight_distance(a, b.state_dict())


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float64, 6, elements=st.floats(-10, 10)),
    hnp.arrays(np.float64, 6, elements=st.floats(-10, 10)),
    hnp.arrays(np.float64, 6, elements=st.floats(-10, 10)),
    st.floats(0.01, 100),
)
def test_vector_properties(a, b, c, scale):
    if min(np.linalg.norm(a), np.linalg.norm(b)) < 1e-3:
        return
    cos = weight_cosine_similarity(a, b)
    assert -1.0 <= cos <= 1.0
    assert cos == pytest.approx(weight_cosine_similarity(b, a))
    assert weight_cosine_similarity(a, scale * b) == pytest.approx(cos, abs=1e-9)
    assert weight_cosine_similarity(a, -b) == pytest.approx(-cos, abs=1e-12)
    assert weight_distance(a, c) <= weight_distance(a, b) + weight_distance(b, c) + 1e-9


def test_matrices_match_pairs():
    nets = [_net(s) for s in range(4)]
    forms = [nets[0], nets[1].state_dict(), parameters_to_vector(nets[2].parameters()), nets[3]]
    cos = weight_cosine_similarity_matrix(forms)
    dist = weight_distance_matrix(forms)
    for i in range(4):
        for j in range(4):
            assert cos[i, j] == pytest.approx(weight_cosine_similarity(nets[i], nets[j]))
            assert dist[i, j] == pytest.approx(weight_distance(nets[i], nets[j]))
    np.testing.assert_array_equal(cos, cos.T)
    np.testing.assert_array_equal(np.diag(cos), 1.0)
    np.testing.assert_array_equal(dist, dist.T)
    np.testing.assert_array_equal(np.diag(dist), 0.0)
    stacked = np.stack([parameters_to_vector(n.parameters()).detach().numpy() for n in nets])
    np.testing.assert_allclose(weight_cosine_similarity_matrix(stacked), cos)
    np.testing.assert_allclose(weight_distance_matrix(torch.from_numpy(stacked)), dist, atol=1e-6)


def test_distance_matrix_keeps_precision_for_close_checkpoints():
    base = np.full(1000, 1e3)
    close = base.copy()
    close[0] += 1e-6
    # From inner products, 1e12-scale squared norms would swamp a 1e-12 squared difference.
    assert weight_distance_matrix([base, close])[0, 1] == pytest.approx(1e-6, rel=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (nn.Linear(3, 2), nn.Linear(3, 4), r"'weight' has shape"),
        (nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2)), "different parameter names"),
        (nn.Linear(3, 2), np.zeros(5), "different numbers of weights"),
        (np.ones(3), np.ones(4), "different numbers of weights"),
        (np.ones((2, 3)), np.ones(6), "1-D vector"),
        (np.ones(3), np.array([1.0, np.nan, 1.0]), "NaN"),
        (np.ones(3), np.array(["a", "b", "c"]), "real numbers"),
        (nn.ReLU(), nn.ReLU(), "no floating-point parameters"),
    ],
)
def test_mismatched_or_bad_weights(a, b, match):
    with pytest.raises(ValueError, match=match):
        weight_distance(a, b)


def test_zero_vector_has_no_cosine():
    with pytest.raises(ValueError, match="all weights equal to zero"):
        weight_cosine_similarity(np.zeros(3), np.ones(3))
    assert weight_distance(np.zeros(2), np.array([3.0, 4.0])) == 5.0


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([], "empty"),
        (nn.Linear(2, 2), "list of networks"),
        (nn.Linear(2, 2).state_dict(), "list of networks"),
        (np.ones(4), "2-D"),
        ([nn.Linear(2, 2), nn.Linear(2, 3)], "has shape"),
    ],
)
def test_matrix_bad_input(weights, match):
    with pytest.raises(ValueError, match=match):
        weight_distance_matrix(weights)
