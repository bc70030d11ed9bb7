"""Warnings raised deep inside the package name the user's line, not the package's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris

from ensemblekit import DeepEnsembleClassifier, SubspaceSamplingClassifier
from ensemblekit._stacklevel import external_stacklevel

TINY = dict(max_epochs=2, batch_size=32, lr=1e-2, random_state=0, device="cpu",
            module__hidden_layer_sizes=(8,))


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


def _filenames(record, match):
    hits = [w for w in record if match in str(w.message)]
    assert hits, [str(w.message) for w in record]
    return {w.filename for w in hits}


def test_warm_start_warning_names_the_callers_line(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(n_estimators=2, warm_start=True, **TINY).fit(X, y)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        clf.fit(X, y)
    assert _filenames(record, "trains no new member") == {__file__}


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_subspace_warning_names_the_callers_line_in_either_engine(iris, engine):
    X, y = iris
    clf = SubspaceSamplingClassifier(method="diagonal_gaussian", n_estimators=2, n_samples=2,
                                     engine=engine, **TINY)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        clf.partial_fit(X, y, classes=np.unique(y))
    assert _filenames(record, "too few checkpoints") == {__file__}


def test_external_stacklevel_counts_the_package_frames():
    # Called from outside the package, the first frame outside is its caller's.
    assert external_stacklevel() == 1
