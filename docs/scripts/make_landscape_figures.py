"""Produce the figures of docs/landscape.md (about a minute on two CPU cores).

Usage::

    python docs/scripts/make_landscape_figures.py [output_folder]

Trains small networks on scikit-learn's digits and writes PNG files to
``docs/images`` (or the given folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from ensemblekit import DeepEnsembleClassifier, SubspaceSamplingClassifier
from ensemblekit.plotting import (
    DiversityAccuracyDisplay,
    EnsembleSizeDisplay,
    FunctionSpaceDisplay,
    LossLandscapeDisplay,
    ReliabilityDiagramDisplay,
    ShiftDisplay,
    SimilarityMatrixDisplay,
)

DPI = 72


def save(figure: plt.Figure, folder: Path, name: str) -> None:
    figure.tight_layout()
    figure.savefig(folder / name, dpi=DPI)
    plt.close(figure)
    print("wrote", folder / name)


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, y_train, X_test, y_test = X[:1200], y[:1200], X[1200:], y[1200:]
    # The subspace samplers' run 0 is the ensemble's member 0 (same seed, same training),
    # so their samples sit around the reference solution of the diversity-accuracy plane.
    common = dict(max_epochs=16, lr=2e-3, batch_size=64, module__hidden_layer_sizes=(32,),
                  device="cpu")
    ensemble = DeepEnsembleClassifier(n_estimators=5, checkpoint_epochs="all",
                                      random_state=0, **common).fit(X_train, y_train)
    three = DeepEnsembleClassifier(n_estimators=3, checkpoint_epochs="all", random_state=0,
                                   **common).fit(X_train, y_train)
    subspace = {
        f"{method} subspace": SubspaceSamplingClassifier(
            method=method, n_samples=20, random_state=0, accuracy_threshold=0.0, **common,
        ).fit(X_train, y_train)
        for method in ("random", "diagonal_gaussian")
    }

    display = SimilarityMatrixDisplay.from_estimator(three, X_test)
    save(display.figure_, folder, "landscape_similarity.png")

    display = FunctionSpaceDisplay.from_estimator(three, X_test, random_state=0)
    display.ax_.set_title("t-SNE of three training trajectories")
    save(display.figure_, folder, "landscape_tsne.png")

    display = DiversityAccuracyDisplay.from_estimator(ensemble, X_test, y_test, subspace)
    save(display.figure_, folder, "landscape_diversity_accuracy.png")

    display = EnsembleSizeDisplay.from_estimator(
        {"deep ensemble": ensemble, **subspace}, X_test, y_test, metric="brier_score"
    )
    save(display.figure_, folder, "landscape_ensemble_size.png")

    figure, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    LossLandscapeDisplay.from_estimator(ensemble, X_test, y_test, kind="linear", ax=ax,
                                        n_points=21)
    LossLandscapeDisplay.from_estimator(ensemble, X_test, y_test, kind="bezier", ax=ax,
                                        n_points=21, X_train=X_train, y_train=y_train,
                                        random_state=0)
    save(figure, folder, "landscape_paths.png")

    display = LossLandscapeDisplay.from_estimator(ensemble, X_test, y_test, kind="plane",
                                                  resolution=25, X_train=X_train)
    save(display.figure_, folder, "landscape_plane.png")

    display = ReliabilityDiagramDisplay.from_estimator(ensemble, X_test, y_test, n_bins=10)
    save(display.figure_, folder, "landscape_reliability.png")

    rng = np.random.default_rng(0)
    noisy = {level: [np.clip(X_test + rng.normal(scale=0.15 * level, size=X_test.shape), 0, 1)
                     .astype(np.float32) for _ in range(1 if level == 0 else 3)]
             for level in range(6)}
    proba = {
        "single network": {k: [ensemble.predict_member_proba(x)[0] for x in xs]
                           for k, xs in noisy.items()},
        "deep ensemble": {k: [ensemble.predict_proba(x) for x in xs] for k, xs in noisy.items()},
    }
    display = ShiftDisplay.from_predictions(y_test, proba, metric="accuracy")
    display.ax_.set_xlabel("Gaussian noise level (std = 0.15 x level; 0 = clean)")
    save(display.figure_, folder, "landscape_shift.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "images")
