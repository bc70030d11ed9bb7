"""The data behind every Display, checked against independent computations."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.preprocessing import StandardScaler

from ensemblekit import DeepEnsembleClassifier, SWAGClassifier
from ensemblekit.landscape import checkpoint_proba, linear_path, plane
from ensemblekit.metrics import expected_calibration_error
from ensemblekit.plotting import (
    DiversityAccuracyDisplay,
    EnsembleSizeDisplay,
    FunctionSpaceDisplay,
    LossLandscapeDisplay,
    ReliabilityDiagramDisplay,
    ShiftDisplay,
    SimilarityMatrixDisplay,
)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


@pytest.fixture(scope="module")
def ensemble(iris):
    X, y = iris
    return DeepEnsembleClassifier(
        n_estimators=3, max_epochs=4, checkpoint_epochs="all", lr=1e-2, batch_size=32,
        module__hidden_layer_sizes=(8,), random_state=0, device="cpu",
    ).fit(X, y)


def _random_proba(rng, shape):
    return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])


def test_missing_matplotlib_names_the_plot_extra(monkeypatch):
    for name in [n for n in sys.modules if n.startswith("ensemblekit.plotting")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"ensemblekit\[plot\]"):
        importlib.import_module("ensemblekit.plotting")


# ------------------------------------------------------------------ similarity
def test_similarity_matrix_display(ensemble, iris):
    X, _ = iris
    display = SimilarityMatrixDisplay.from_estimator(ensemble, X)
    m, k, p = ensemble.checkpoints_.shape
    flat = np.asarray(ensemble.checkpoints_, dtype=np.float64).reshape(m * k, p)
    np.testing.assert_allclose(display.cosine, cosine_similarity(flat), atol=1e-10)
    labels = checkpoint_proba(ensemble, X).reshape(m * k, len(X), 3).argmax(axis=2)
    np.testing.assert_allclose(display.disagreement,
                               (labels[:, None] != labels[None]).mean(axis=2))
    assert len(display.ax_) == 2 and display.figure_ is display.ax_[0].figure
    np.testing.assert_array_equal(display.images_[0].get_array(), display.cosine)
    np.testing.assert_array_equal(display.images_[1].get_array(), display.disagreement)


def test_similarity_matrix_display_needs_two_axes():
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="2 matplotlib Axes"):
        SimilarityMatrixDisplay(np.eye(2), np.zeros((2, 2))).plot(ax=[ax])


# ------------------------------------------------------------------ function space
def test_function_space_display_embeds_everything_jointly():
    rng = np.random.default_rng(0)
    traj = _random_proba(rng, (2, 4, 6, 3))
    samples = {"swag": _random_proba(rng, (5, 6, 3))}
    display = FunctionSpaceDisplay.from_predictions(traj, samples, method="pca")
    rows = np.concatenate([traj.reshape(8, 18), samples["swag"].reshape(5, 18)])
    reference = PCA(n_components=2).fit_transform(rows)
    np.testing.assert_allclose(np.abs(display.trajectories.reshape(8, 2)),
                               np.abs(reference[:8]), atol=1e-10)
    np.testing.assert_allclose(np.abs(display.samples["swag"]), np.abs(reference[8:]),
                               atol=1e-10)
    assert len(display.lines_) == 2
    np.testing.assert_allclose(display.lines_[1].get_xydata(), display.trajectories[1])
    with pytest.raises(ValueError, match="to match the trajectories"):
        FunctionSpaceDisplay.from_predictions(traj, {"bad": traj[0, :, :3]})


def test_function_space_display_from_estimators(ensemble, iris):
    X, y = iris
    swag = SWAGClassifier(max_epochs=4, swa_start=2, n_samples=3, random_state=0,
                          module__hidden_layer_sizes=(8,)).fit(X, y)
    display = FunctionSpaceDisplay.from_estimator(ensemble, X[:40], {"swag": swag},
                                                  method="pca")
    assert display.trajectories.shape == (3, 4, 2)
    assert display.samples["swag"].shape == (3, 2)


# ------------------------------------------------------------------ diversity-accuracy
def test_diversity_accuracy_display_from_predictions():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    reference = np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1, 1, 1]]  # 8 of 10 right
    sample = np.eye(3)[[0, 1, 2, 0, 1, 2, 2, 2, 2, 1]]  # 7 right; differs on 3 of 10
    independent = np.eye(3)[[[0, 1, 2, 0, 0, 0, 0, 1, 2, 0]]]  # 8 right; differs on 4
    display = DiversityAccuracyDisplay.from_predictions(
        y, reference, {"random subspace": sample[None]}, independent_proba=independent
    )
    assert display.reference_accuracy == 0.8
    np.testing.assert_allclose(display.accuracy["random subspace"], [0.7])
    np.testing.assert_allclose(display.diversity["random subspace"], [0.3 / 0.3])
    np.testing.assert_allclose(display.independent_accuracy, [0.8])
    np.testing.assert_allclose(display.independent_diversity, [0.4 / 0.2])
    # The reference curves, by the paper's formulas (C = 3, a_ref = 0.8).
    a = display.curve_accuracy
    lower = (0.8 - a) / (0.8 - 0.2 / 2) / (1 - a)
    upper = (0.8 * (1 - a) + a * 0.2 + 0.2 * (1 - a) * 1 / 2) / (1 - a)
    np.testing.assert_allclose(display.lower, lower, atol=1e-12)
    np.testing.assert_allclose(display.upper, upper, atol=1e-12)
    assert a[0] == pytest.approx(1 / 3) and a[-1] == pytest.approx(0.8)
    assert display.ax_.get_xlabel() == "accuracy"


def test_diversity_accuracy_display_from_estimator(ensemble, iris):
    X, y = iris
    swag = SWAGClassifier(max_epochs=4, swa_start=2, n_samples=4, random_state=0,
                          module__hidden_layer_sizes=(8,)).fit(X, y)
    display = DiversityAccuracyDisplay.from_estimator(ensemble, X, y, {"swag": swag},
                                                      reference_member=1)
    members = ensemble.predict_member_proba(X)
    ref = members[1].argmax(1)
    assert display.reference_accuracy == np.mean(ref == y)
    samples = swag.predict_member_proba(X).argmax(2)
    acc = (samples == y).mean(1)
    np.testing.assert_allclose(display.accuracy["swag"], acc)
    np.testing.assert_allclose(display.diversity["swag"],
                               (samples != ref).mean(1) / (1 - acc))
    np.testing.assert_allclose(display.independent_accuracy,
                               (members[[0, 2]].argmax(2) == y).mean(1))
    with pytest.raises(ValueError, match="reference_member"):
        DiversityAccuracyDisplay.from_estimator(ensemble, X, y, swag, reference_member=3)


# ------------------------------------------------------------------ ensemble size
def test_ensemble_size_display_averages_over_all_subsets(ensemble, iris):
    X, y = iris
    display = EnsembleSizeDisplay.from_estimator({"deep ensemble": ensemble}, X, y,
                                                 metric="brier_score")
    members = ensemble.predict_member_proba(X)
    onehot = np.eye(3)[y]

    def brier(p):
        return np.mean(np.sum((p - onehot) ** 2, axis=1))

    curve = display.curves["deep ensemble"]
    np.testing.assert_array_equal(curve.sizes, [1, 2, 3])
    singles = [brier(members[i]) for i in range(3)]
    pairs = [brier(members[[i, j]].mean(0)) for i, j in ((0, 1), (0, 2), (1, 2))]
    np.testing.assert_allclose(curve.mean, [np.mean(singles), np.mean(pairs),
                                            brier(members.mean(0))])
    np.testing.assert_allclose(curve.std[:2], [np.std(singles), np.std(pairs)])
    np.testing.assert_allclose(display.lines_["deep ensemble"].get_ydata(), curve.mean)


# ------------------------------------------------------------------ loss landscape
def test_loss_landscape_display_path(ensemble, iris):
    X, y = iris
    display = LossLandscapeDisplay.from_estimator(ensemble, X, y, kind="linear", start=0,
                                                  end=2, n_points=5)
    path = linear_path(ensemble, X, y, 0, 2, n_points=5)
    np.testing.assert_allclose(display.loss, path.loss)
    np.testing.assert_allclose(display.ax_[0].lines[0].get_ydata(), path.loss)
    np.testing.assert_allclose(display.ax_[1].lines[1].get_ydata(), path.disagreement_end)
    display.plot(metric="accuracy")
    np.testing.assert_allclose(display.ax_[0].lines[0].get_ydata(), path.accuracy)


def test_loss_landscape_display_plane_and_bezier(ensemble, iris):
    X, y = iris
    display = LossLandscapeDisplay.from_estimator(ensemble, X, y, kind="plane", resolution=4)
    result = plane(ensemble, X, y, resolution=4)
    np.testing.assert_allclose(display.loss, result.loss)
    np.testing.assert_allclose(display.anchor_coords, result.anchor_coords)
    stars = display.ax_.lines[0].get_xydata()
    np.testing.assert_allclose(stars, result.anchor_coords)
    curve = LossLandscapeDisplay.from_estimator(ensemble, X, y, kind="bezier", n_points=3,
                                                random_state=0)
    assert curve.loss.shape == (3,) and curve.label == "Bezier curve"
    with pytest.raises(ValueError, match="kind"):
        LossLandscapeDisplay.from_estimator(ensemble, X, y, kind="radial")
    with pytest.raises(ValueError, match="needs 'xx'"):
        LossLandscapeDisplay(linear_path(ensemble, X, y), "plane")


# ------------------------------------------------------------------ reliability
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_diagram_matches_a_direct_binning(strategy):
    rng = np.random.default_rng(3)
    proba = _random_proba(rng, (400, 4)) ** 0.5
    proba /= proba.sum(1, keepdims=True)
    y = rng.integers(0, 4, size=400)
    display = ReliabilityDiagramDisplay.from_predictions(y, proba, n_bins=8,
                                                         strategy=strategy)
    conf, correct = proba.max(1), proba.argmax(1) == y
    edges = (np.linspace(0, 1, 9) if strategy == "uniform"
             else np.quantile(conf, np.linspace(0, 1, 9)))
    np.testing.assert_allclose(display.bin_edges, edges)
    for b in range(8):
        inside = (conf > edges[b]) & (conf <= edges[b + 1])
        if b == 0:
            inside |= conf <= edges[1]
        assert display.bin_counts[b] == inside.sum()
        if inside.any():
            assert display.bin_accuracy[b] == pytest.approx(correct[inside].mean())
            assert display.bin_confidence[b] == pytest.approx(conf[inside].mean())
    assert display.bin_counts.sum() == 400
    filled = display.bin_counts > 0
    gaps = np.abs(display.bin_accuracy - display.bin_confidence)[filled]
    assert display.ece == pytest.approx(np.sum(display.bin_counts[filled] / 400 * gaps))
    assert display.ece == pytest.approx(
        expected_calibration_error(y, proba, n_bins=8, strategy=strategy))
    heights = [bar.get_height() for bar in display.bars_]
    np.testing.assert_allclose(heights, np.nan_to_num(display.bin_accuracy))
    assert display.count_ax_ is not display.ax_


def test_reliability_diagram_from_estimator_uses_labels(ensemble, iris):
    import matplotlib.pyplot as plt

    X, y = iris
    names = np.array(["a", "b", "c"])[y]
    clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=2, random_state=0,
                                 module__hidden_layer_sizes=(4,)).fit(X, names)
    _, ax = plt.subplots()
    display = ReliabilityDiagramDisplay.from_estimator(clf, X, names, n_bins=5, ax=ax)
    assert display.ax_ is ax
    assert display.ece == pytest.approx(
        expected_calibration_error(y, clf.predict_proba(X), n_bins=5))
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"DeepEnsembleClassifier: ECE = {display.ece:.4f}" in texts


# ------------------------------------------------------------------ shift
def test_shift_display_means_and_boxes():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, size=50)
    proba = {
        "single": {0: _random_proba(rng, (50, 3)), 1: _random_proba(rng, (4, 50, 3)),
                   2: [_random_proba(rng, (50, 3)) for _ in range(4)]},
        "ensemble": {0: _random_proba(rng, (1, 50, 3)), 2: _random_proba(rng, (4, 50, 3))},
    }
    display = ShiftDisplay.from_predictions(y, proba, metric="accuracy")
    expected_single_1 = [np.mean(p.argmax(1) == y) for p in proba["single"][1]]
    np.testing.assert_allclose(display.values["single"][1], expected_single_1)
    np.testing.assert_array_equal(display.intensities, [0, 1, 2])
    assert display.means["single"][1] == pytest.approx(np.mean(expected_single_1))
    assert np.isnan(display.means["ensemble"][1])
    assert len(display.boxes_["single"]["boxes"]) == 3
    assert len(display.boxes_["ensemble"]["boxes"]) == 2
    with pytest.raises(ValueError, match="metric must be one of"):
        ShiftDisplay.from_predictions(y, proba, metric="f1")


@pytest.mark.slow
def test_documentation_figures_script(tmp_path):
    import runpy
    from pathlib import Path

    script = Path(__file__).parents[2] / "docs" / "scripts" / "make_landscape_figures.py"
    module = runpy.run_path(str(script))
    module["main"](tmp_path)
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == sorted(p.name for p in script.parents[1].glob("images/landscape_*.png"))
