"""ensemblekit.landscape against independent computations on hand-made weight vectors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits, load_iris
from sklearn.decomposition import PCA
from sklearn.metrics import log_loss
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.engine import StepSchedule
from ensemblekit.landscape import (
    bezier_path,
    checkpoint_proba,
    function_space_embedding,
    linear_path,
    plane,
    similarity_matrices,
)


class BNNet(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Linear."""

    def __init__(self, in_features: int = 4, num_classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 12)
        self.bn = nn.BatchNorm1d(12)
        self.fc2 = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.bn(self.fc1(x))))


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]  # string labels on purpose
    return X, labels


@pytest.fixture(scope="module")
def mlp_ens(iris):
    X, y = iris
    return DeepEnsembleClassifier(
        n_estimators=3, max_epochs=4, checkpoint_epochs="all", lr=1e-2, batch_size=32,
        module__hidden_layer_sizes=(10,), random_state=0, device="cpu",
    ).fit(X, y)


@pytest.fixture(scope="module")
def bn_ens(iris):
    X, y = iris
    return DeepEnsembleClassifier(
        BNNet, n_estimators=3, max_epochs=3, checkpoint_epochs=[0, 2], lr=1e-2, batch_size=32,
        random_state=1, device="cpu",
    ).fit(X, y)


def _network(clf, theta, buffers=None, X_refresh=None):
    """A network holding ``theta``, built by hand (no library helper)."""
    net = copy.deepcopy(clf.estimators_[0].module_)
    vector_to_parameters(torch.as_tensor(np.asarray(theta), dtype=torch.float32),
                         net.parameters())
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    if buffers is not None:
        offset = 0
        for bn in bns:
            for stat in (bn.running_mean, bn.running_var):
                stat.data = torch.as_tensor(buffers[offset : offset + stat.numel()]).clone()
                offset += stat.numel()
    elif bns:
        # Training-mode pass over all rows at once: running stats = batch statistics.
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        net.train()
        with torch.no_grad():
            net(torch.as_tensor(X_refresh))
    return net.eval()


def _proba(net, X):
    with torch.no_grad():
        return torch.softmax(net(torch.as_tensor(X)).double(), dim=1).numpy()


def _flat(net):
    return parameters_to_vector(net.parameters()).detach().double().numpy()


def _encoded(clf, y):
    return np.searchsorted(clf.classes_, y)


# ------------------------------------------------------------------ checkpoint_proba
@pytest.mark.parametrize("fitted", ["mlp_ens", "bn_ens"])
def test_checkpoint_proba_equals_a_loop(fitted, iris, request):
    clf = request.getfixturevalue(fitted)
    X, _ = iris
    proba = checkpoint_proba(clf, X[:50])
    m, k = clf.checkpoints_.shape[:2]
    assert proba.shape == (m, k, 50, 3)
    for i in range(m):
        for j in range(k):
            net = _network(clf, clf.checkpoints_[i, j], buffers=clf.checkpoint_buffers_[i, j])
            np.testing.assert_allclose(proba[i, j], _proba(net, X[:50]), atol=1e-5)
    # The last checkpoint is the trained member, with its own BatchNorm statistics.
    np.testing.assert_allclose(proba[:, -1], clf.predict_member_proba(X[:50]), atol=1e-5)


def test_without_checkpoints_is_a_clear_error(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=1, random_state=0,
                                 module__hidden_layer_sizes=(4,)).fit(X, y)
    with pytest.raises(ValueError, match=r"fitted without checkpoints.*checkpoint_epochs"):
        checkpoint_proba(clf, X)
    with pytest.raises(ValueError, match="fitted without checkpoints"):
        similarity_matrices(clf, X)
    with pytest.raises(ValueError, match="fitted without checkpoints"):
        linear_path(clf, X, y, (0, 0), 1)


class SoftmaxNet(nn.Module):
    """Returns probabilities (trained with NLLLoss, as skorch expects)."""

    def __init__(self, in_features: int = 4, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, 8), nn.ReLU(),
                                  nn.Linear(8, num_classes), nn.Softmax(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_modules_returning_probabilities(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(SoftmaxNet, n_estimators=2, max_epochs=3, lr=1e-2,
                                 criterion=nn.NLLLoss, checkpoint_epochs="all",
                                 random_state=0, device="cpu").fit(X, y)
    assert clf.output_kind_ == "proba"
    member = clf.predict_member_proba(X)
    np.testing.assert_allclose(checkpoint_proba(clf, X)[:, -1], member, atol=1e-6)
    path = linear_path(clf, X, y, 0, 1, n_points=3)
    yi = _encoded(clf, y)
    assert path.loss[0] == pytest.approx(log_loss(yi, member[0], labels=[0, 1, 2]), rel=1e-5)
    curve = bezier_path(clf, X, y, 0, 1, n_points=3, max_epochs=3, random_state=0)
    a, b = _flat(clf.estimators_[0].module_), _flat(clf.estimators_[1].module_)
    net = _network(clf, 0.25 * a + 0.5 * curve.bend + 0.25 * b)
    with torch.no_grad():
        p = net(torch.as_tensor(X)).double().numpy()  # the module's own probabilities
    p /= p.sum(axis=1, keepdims=True)
    assert curve.loss[1] == pytest.approx(log_loss(yi, p, labels=[0, 1, 2]), rel=1e-5)
    # Training lowered the curve's loss: cross-entropy of probabilities, not of logits.
    assert curve.train_loss[-1] < curve.train_loss[0]


# ------------------------------------------------------------------ similarity_matrices
def test_similarity_matrices_against_sklearn_and_counting(mlp_ens, iris):
    X, _ = iris
    result = similarity_matrices(mlp_ens, X)
    m, k, p = mlp_ens.checkpoints_.shape
    flat = np.asarray(mlp_ens.checkpoints_, dtype=np.float64).reshape(m * k, p)
    np.testing.assert_allclose(result.cosine, cosine_similarity(flat), atol=1e-10)
    labels = checkpoint_proba(mlp_ens, X).reshape(m * k, len(X), -1).argmax(axis=2)
    expected = np.array([[np.sum(labels[a] != labels[b]) / len(X) for b in range(m * k)]
                         for a in range(m * k)])
    np.testing.assert_array_equal(result.disagreement, expected)
    np.testing.assert_array_equal(result.member, np.repeat(np.arange(m), k))
    np.testing.assert_array_equal(result.epoch, np.tile(mlp_ens.checkpoint_epochs_, m))
    assert result.proba.shape == (m, k, len(X), 3)


def test_similarity_matrices_of_arrays_and_their_errors():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(2, 3, 7))
    proba = rng.dirichlet([1, 1], size=(2, 3, 5))
    result = similarity_matrices(weights, proba)
    np.testing.assert_allclose(result.cosine, cosine_similarity(weights.reshape(6, 7)))
    np.testing.assert_allclose(np.diag(result.cosine), 1.0)
    one = similarity_matrices(weights[0], proba[0])  # a single trajectory
    np.testing.assert_allclose(one.cosine, result.cosine[:3, :3])
    with pytest.raises(ValueError, match="cover"):
        similarity_matrices(weights, proba[:, :2])
    with pytest.raises(ValueError, match="shape"):
        similarity_matrices(weights, proba[0, 0])


# ------------------------------------------------------------------ embedding
def test_pca_embedding_matches_sklearn():
    proba = np.random.default_rng(1).dirichlet([1, 1, 1], size=(3, 5, 8))
    points = function_space_embedding(proba, "pca")
    assert points.shape == (3, 5, 2)
    reference = PCA(n_components=2).fit_transform(proba.reshape(15, 24))
    # Principal axes are defined up to sign.
    np.testing.assert_allclose(np.abs(points.reshape(15, 2)), np.abs(reference), atol=1e-10)


def test_tsne_embedding_separates_groups_and_is_reproducible():
    rng = np.random.default_rng(2)
    centres = rng.dirichlet([1, 1, 1], size=(2, 1, 10))
    proba = np.abs(centres + 0.01 * rng.normal(size=(2, 12, 10, 3)))
    proba /= proba.sum(axis=-1, keepdims=True)
    points = function_space_embedding(proba, random_state=0)
    again = function_space_embedding(proba, random_state=0)
    np.testing.assert_array_equal(points, again)
    assert points.shape == (2, 12, 2)
    within = max(np.ptp(points[g], axis=0).max() for g in range(2))
    between = np.linalg.norm(points[0].mean(axis=0) - points[1].mean(axis=0))
    assert between > within


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="umap"), "method must be one of"),
    (dict(perplexity=50.0), "perplexity"),
])
def test_embedding_errors(kwargs, message):
    proba = np.full((4, 3, 2), 0.5)
    with pytest.raises(ValueError, match=message):
        function_space_embedding(proba, **kwargs)
    with pytest.raises(ValueError, match="at least one axis"):
        function_space_embedding(proba[0])


# ------------------------------------------------------------------ linear_path
@pytest.mark.parametrize("fitted", ["mlp_ens", "bn_ens"])
def test_linear_path_between_identical_members_is_flat(fitted, iris, request):
    clf = request.getfixturevalue(fitted)
    X, y = iris
    path = linear_path(clf, X, y, 1, 1, n_points=6)
    np.testing.assert_allclose(path.loss, path.loss[0], rtol=1e-6)
    np.testing.assert_array_equal(path.accuracy, path.accuracy[0])
    np.testing.assert_array_equal(path.disagreement_start, 0)
    np.testing.assert_array_equal(path.disagreement_end, 0)


def test_linear_path_ends_are_the_members(mlp_ens, iris):
    X, y = iris
    path = linear_path(mlp_ens, X, y, 0, 2, n_points=5)
    member = mlp_ens.predict_member_proba(X)
    yi = _encoded(mlp_ens, y)
    for t_index, m in ((0, 0), (-1, 2)):
        assert path.loss[t_index] == pytest.approx(log_loss(yi, member[m], labels=[0, 1, 2]),
                                                   rel=1e-5)
        assert path.accuracy[t_index] == np.mean(member[m].argmax(axis=1) == yi)
    assert path.disagreement_end[0] == np.mean(member[0].argmax(1) != member[2].argmax(1))


def test_linear_path_grouped_evaluation_equals_a_loop(bn_ens, iris):
    X, y = iris
    X_train, X_eval, y_eval = X[::2], X[1::2], y[1::2]
    path = linear_path(bn_ens, X_eval, y_eval, (0, 0), 2, n_points=4, X_train=X_train)
    a = np.asarray(bn_ens.checkpoints_[0, 0], dtype=np.float64)
    b = _flat(bn_ens.estimators_[2].module_)
    yi = _encoded(bn_ens, y_eval)
    labels = []
    for i, t in enumerate(np.linspace(0, 1, 4)):
        net = _network(bn_ens, (1 - t) * a + t * b, X_refresh=X_train)
        p = _proba(net, X_eval)
        labels.append(p.argmax(1))
        assert path.loss[i] == pytest.approx(log_loss(yi, p, labels=[0, 1, 2]), rel=1e-4)
        assert path.accuracy[i] == np.mean(p.argmax(1) == yi)
    np.testing.assert_array_equal(path.disagreement_start,
                                  [np.mean(lab != labels[0]) for lab in labels])


@pytest.mark.parametrize("start, end, message", [
    (0, 7, r"end: member index 7 is out of range"),
    ((0, 9), 1, r"start: checkpoint index 9"),
    (np.zeros(5), 1, r"start has 5 values, but the networks have"),
    ("first", 1, r"start must be a member index"),
    (0, np.zeros((2, 3)), r"end must be a member index"),
])
def test_linear_path_bad_ends(mlp_ens, iris, start, end, message):
    X, y = iris
    with pytest.raises(ValueError, match=message):
        linear_path(mlp_ens, X, y, start, end)


def test_bad_data_is_a_clear_error(mlp_ens, iris):
    X, y = iris
    with pytest.raises(ValueError, match="samples of shape"):
        linear_path(mlp_ens, X[:, :3], y)
    with pytest.raises(ValueError, match=r"y must have shape \(150,\)"):
        linear_path(mlp_ens, X, y[:10])
    with pytest.raises(ValueError, match="labels the estimator was not fitted on"):
        linear_path(mlp_ens, X, np.full(len(X), "rose"))
    with pytest.raises(ValueError, match="n_points"):
        linear_path(mlp_ens, X, y, n_points=1)
    with pytest.raises(ValueError, match="no trained networks"):
        linear_path(object(), X, y)
    with pytest.raises(ValueError, match="samples of shape"):
        checkpoint_proba(mlp_ens, X[:, :2])


# ------------------------------------------------------------------ plane
def test_plane_on_hand_made_anchors(mlp_ens, iris):
    X, y = iris
    a = _flat(mlp_ens.estimators_[0].module_)
    b = _flat(mlp_ens.estimators_[1].module_)
    d = b - a
    w = np.random.default_rng(0).normal(size=a.size)
    w -= (w @ d) / (d @ d) * d
    w *= 0.7 * np.linalg.norm(d) / np.linalg.norm(w)
    c = a + 0.5 * d + w
    result = plane(mlp_ens, X, y, members=(a, b, c), resolution=5, margin=0.0)
    # Coordinates by construction: a at the origin, b on the x axis, c above the midpoint.
    expected = np.array([[0.0, 0.0], [np.linalg.norm(d), 0.0],
                         [0.5 * np.linalg.norm(d), np.linalg.norm(w)]])
    np.testing.assert_allclose(result.anchor_coords, expected, rtol=1e-9, atol=1e-9)
    for i, theta in enumerate((a, b, c)):
        rebuilt = result.origin + result.anchor_coords[i] @ result.basis
        np.testing.assert_allclose(rebuilt, theta, atol=1e-8)
    # Anchors evaluated with their own accuracy and loss.
    yi = _encoded(mlp_ens, y)
    for i, theta in enumerate((a, b, c)):
        p = _proba(_network(mlp_ens, theta), X)
        assert result.anchor_accuracy[i] == np.mean(p.argmax(1) == yi)
        assert result.anchor_loss[i] == pytest.approx(log_loss(yi, p, labels=[0, 1, 2]),
                                                      rel=1e-5)
    # With no margin, the bottom row of the grid is the segment from a to b.
    np.testing.assert_allclose(result.yy[0], 0.0, atol=1e-12)
    path = linear_path(mlp_ens, X, y, a, b, n_points=5)
    np.testing.assert_allclose(result.loss[0], path.loss, rtol=1e-5)
    np.testing.assert_allclose(result.disagreement[0, 0], path.disagreement_start)
    # The grid corners of the anchors themselves have zero disagreement with them.
    assert result.disagreement[0, 0, 0] == 0 and result.disagreement[1, 0, -1] == 0
    assert result.disagreement[2, -1, 2] == 0


def test_plane_grid_point_equals_a_loop_with_batchnorm(bn_ens, iris):
    X, y = iris
    result = plane(bn_ens, X, y, resolution=3, margin=0.1)
    yi = _encoded(bn_ens, y)
    for i, j in ((0, 0), (1, 2), (2, 1)):
        theta = result.origin + result.xx[i, j] * result.basis[0] + result.yy[i, j] * \
            result.basis[1]
        p = _proba(_network(bn_ens, theta, X_refresh=X), X)
        assert result.loss[i, j] == pytest.approx(log_loss(yi, p, labels=[0, 1, 2]), rel=1e-4)
        assert result.accuracy[i, j] == np.mean(p.argmax(1) == yi)
    assert result.xx[0, 0] < result.anchor_coords[:, 0].min()


@pytest.mark.parametrize("kwargs, message", [
    (dict(members=(0, 1)), "exactly 3 anchors"),
    (dict(members=(0, 1, 1)), "one line"),
    (dict(members=(0, 1, 5)), "out of range"),
    (dict(resolution=1), "resolution"),
    (dict(margin=-0.1), "margin"),
])
def test_plane_errors(mlp_ens, iris, kwargs, message):
    X, y = iris
    with pytest.raises(ValueError, match=message):
        plane(mlp_ens, X, y, **kwargs)


# ------------------------------------------------------------------ bezier_path
def test_bezier_path_ends_midpoint_and_reproducibility(mlp_ens, iris):
    X, y = iris
    curve = bezier_path(mlp_ens, X, y, 0, 1, n_points=3, max_epochs=2, random_state=0)
    again = bezier_path(mlp_ens, X, y, 0, 1, n_points=3, max_epochs=2, random_state=0)
    np.testing.assert_array_equal(curve.bend, again.bend)
    line = linear_path(mlp_ens, X, y, 0, 1, n_points=3)
    np.testing.assert_allclose(curve.loss[[0, -1]], line.loss[[0, -1]], rtol=1e-6)
    a, b = _flat(mlp_ens.estimators_[0].module_), _flat(mlp_ens.estimators_[1].module_)
    assert not np.allclose(curve.bend, (a + b) / 2)  # the bend was trained
    p = _proba(_network(mlp_ens, 0.25 * a + 0.5 * curve.bend + 0.25 * b), X)
    yi = _encoded(mlp_ens, y)
    assert curve.loss[1] == pytest.approx(log_loss(yi, p, labels=[0, 1, 2]), rel=1e-5)
    assert curve.train_loss.shape == (2,)
    with pytest.raises(ValueError, match="lr"):
        bezier_path(mlp_ens, X, y, lr=0)
    with pytest.raises(ValueError, match="y_train"):
        bezier_path(mlp_ens, X, y, X_train=X)


def test_bezier_tunnel_has_lower_loss_than_the_line(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=60, lr=1e-2,
                                 module__hidden_layer_sizes=(16,), random_state=0).fit(X, y)
    line = linear_path(clf, X, y, 0, 1, n_points=11)
    curve = bezier_path(clf, X, y, 0, 1, n_points=11, max_epochs=100, random_state=0)
    assert curve.loss.max() < line.loss.max()


# ------------------------------------------------------------------ the paper's finding
@pytest.fixture(scope="module")
def digits_trajectories():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    # The paper's schedule in small: Adam with the learning rate halved periodically.
    clf = DeepEnsembleClassifier(
        n_estimators=3, max_epochs=16, checkpoint_epochs="all", lr=3e-3, batch_size=64,
        lr_schedule=StepSchedule(step_size=4, gamma=0.5),
        module__hidden_layer_sizes=(32,), random_state=0, device="cpu",
    ).fit(X[:1200], y[:1200])
    return clf, X[1200:], y[1200:]


def test_trajectories_stay_in_one_mode_and_members_do_not(digits_trajectories):
    clf, X_test, _ = digits_trajectories
    result = similarity_matrices(clf, X_test)
    m, k = clf.checkpoints_.shape[:2]
    late = np.arange(k - 4, k)
    within_dis, within_cos, across_dis, across_cos = [], [], [], []
    for i in range(m):
        rows = i * k + late
        block = np.ix_(rows, rows)
        off = ~np.eye(len(late), dtype=bool)
        within_dis.append(result.disagreement[block][off].mean())
        within_cos.append(result.cosine[block][off].min())
        for j in range(i + 1, m):
            # The same epoch of two independent runs.
            across_dis += list(result.disagreement[i * k + late, j * k + late])
            across_cos += list(result.cosine[i * k + late, j * k + late])
    assert max(within_dis) < 0.5 * np.mean(across_dis)
    assert min(within_cos) > 0.9
    assert np.max(np.abs(across_cos)) < 0.2
