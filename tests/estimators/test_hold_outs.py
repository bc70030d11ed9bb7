"""Rows held out of training: early-stopping and acceptance rows, and how they are scored."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from ensemblekit import DeepEnsembleClassifier, DropoutClassifier, SubspaceSamplingClassifier

FAST = dict(max_epochs=1, n_samples=1, max_tries=1, batch_size=32, random_state=0,
            device="cpu", module__hidden_layer_sizes=(4,))


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    return X[order].astype(np.float32), y[order]


def _smallest_call(fraction: float) -> int:
    """Fewest rows a partial_fit call may have: one acceptance row and one training
    row at least, the acceptance rows being round(fraction * n), at least 1."""
    n = 1
    while n - max(1, round(fraction * n)) < 1:
        n += 1
    return n


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.8, 0.9])
@pytest.mark.parametrize("first", [True, False])
def test_partial_fit_calls_need_an_acceptance_row_and_a_training_row(iris, fraction, first):
    X, y = iris
    smallest = _smallest_call(fraction)
    clf = SubspaceSamplingClassifier(method="random", acceptance_fraction=fraction, **FAST)
    if not first:
        clf.partial_fit(X, y, classes=[0, 1, 2])
    for n in range(1, smallest):
        with pytest.raises(ValueError) as info:
            clf.partial_fit(X[:n], y[:n], classes=[0, 1, 2])
        message = str(info.value)
        assert f"at least {smallest} rows" in message and "leaving 0 rows" in message
        # Lowering the fraction is advised only where it can help.
        assert ("lower acceptance_fraction" in message) == (smallest > 2)
    clf.partial_fit(X[:smallest], y[:smallest], classes=[0, 1, 2])
    rows = clf.estimators_[0].get_params_for("iterator_train")["sampler"].rows
    assert len(rows) == 1
    # Without rejection no row is held out: one row is a valid call.
    SubspaceSamplingClassifier(method="random", accuracy_threshold=0.0, **FAST).partial_fit(
        X[:1], y[:1], classes=[0, 1, 2])


def _left(n_rows: int, y: np.ndarray, validation: float, acceptance: float) -> tuple:
    """(validation rows, acceptance rows, training rows) by scikit-learn's split."""
    _, valid = train_test_split(np.arange(n_rows), test_size=validation, stratify=y,
                                random_state=0)
    pool = n_rows - len(valid)
    accept = max(1, round(acceptance * pool))
    return len(valid), accept, pool - accept


@pytest.mark.parametrize("n_rows, validation, acceptance", [
    (150, 0.9, 0.95),    # 15 rows left after validation, 14 for acceptance: 1 to train
    (150, 0.9, 0.8),     # 12 acceptance rows: 3 to train, one per class
    (150, 0.5, 0.97),    # 75 left, 73 for acceptance: 2 to train
    (150, 0.5, 0.96),    # 72 for acceptance: 3 to train
    (60, 0.8, 0.75),     # 12 left, 9 for acceptance: 3 to train
    (60, 0.8, 0.85),     # 10 for acceptance: 2 to train
])
def test_combined_hold_outs_must_leave_a_training_row_per_class(iris, n_rows, validation,
                                                                 acceptance):
    X, y = iris[0][:n_rows], iris[1][:n_rows]
    n_valid, n_accept, n_train = _left(n_rows, y, validation, acceptance)
    clf = SubspaceSamplingClassifier(method="random", acceptance_fraction=acceptance,
                                     early_stopping=True, validation_fraction=validation,
                                     n_estimators=2, **FAST)
    if n_train >= 3:
        clf.fit(X, y)
        for net in clf.estimators_:
            assert len(net.get_params_for("iterator_train")["sampler"].rows) == n_train
            assert len(net.acceptance_rows_) == n_accept
        return
    with pytest.raises(ValueError) as info:
        clf.fit(X, y)
    message = str(info.value)
    for part in (f"validation_fraction={validation}", f"acceptance_fraction={acceptance}",
                 f"{n_rows} training rows ({n_valid} rows)", f"{n_accept} rows",
                 f"leaving {n_train} row", "3 classes"):
        assert part in message
    assert not hasattr(clf, "estimators_")


@pytest.mark.parametrize("n_rows, acceptance, lowering_helps", [
    (150, 0.99, True), (30, 0.95, True), (3, 0.1, False), (5, 0.6, True)])
def test_acceptance_rows_alone_must_leave_a_training_row_per_class(iris, n_rows, acceptance,
                                                                   lowering_helps):
    X, y = iris
    rows = np.concatenate([np.flatnonzero(y == k)[: math.ceil(n_rows / 3)]
                           for k in range(3)])[:n_rows]
    n_accept = max(1, round(acceptance * n_rows))
    clf = SubspaceSamplingClassifier(method="random", acceptance_fraction=acceptance, **FAST)
    with pytest.raises(ValueError) as info:
        clf.fit(X[rows], y[rows])
    message = str(info.value)
    assert f"acceptance_fraction={acceptance}" in message
    assert f"leaving {n_rows - n_accept} row" in message and "validation" not in message
    assert ("Lower acceptance_fraction" in message) == lowering_helps


def test_validation_fraction_without_early_stopping_is_silent(iris):
    # As MLPClassifier: the early-stopping split is ignored without early stopping.
    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = SubspaceSamplingClassifier(method="random", validation_fraction=0.9,
                                         **FAST).fit(X, y)
    assert clf.validation_scores_ is None
    assert len(clf.estimators_[0].get_params_for("iterator_train")["sampler"].rows) == 135


@pytest.mark.parametrize("make", [
    lambda **p: DeepEnsembleClassifier(n_estimators=2, **p),
    lambda **p: DropoutClassifier(n_estimators=2, n_samples=1, **p),
    lambda **p: SubspaceSamplingClassifier(n_estimators=2, n_samples=1,
                                           method="weight_average", **p),
], ids=["deep_ensemble", "dropout", "subspace"])
def test_validation_accuracy_is_weighted_by_sample_and_class_weights(iris, make):
    X, y = iris
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(y))
    class_weight = {0: 1.0, 1: 4.0, 2: 0.5}
    clf = make(max_epochs=3, lr=1e-2, batch_size=32, random_state=0, device="cpu",
               module__hidden_layer_sizes=(3,), early_stopping=True,
               validation_fraction=0.3, n_iter_no_change=50, class_weight=class_weight)
    clf.fit(X, y, sample_weight=w)
    total = w * np.array([class_weight[k] for k in y])
    differs = False
    for m, net in enumerate(clf.estimators_):
        train = net.get_params_for("iterator_train")["sampler"].rows.numpy()
        valid = np.setdiff1d(np.arange(len(y)), train)
        # The member holds its best epoch's weights, scored at that epoch.
        pred = net.predict(X[valid])
        expected = accuracy_score(y[valid], pred, sample_weight=total[valid])
        assert clf.validation_scores_[m][clf.best_epoch_[m]] == pytest.approx(expected)
        differs |= not np.isclose(expected, accuracy_score(y[valid], pred))
    assert differs
