"""OOD scores and detection metrics against scipy, scikit-learn and hand-computed cases."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import entropy
from sklearn.datasets import load_digits
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.metrics import (
    expected_entropy,
    fpr_at_95_tpr,
    make_ood_scorer,
    max_probability,
    mutual_information,
    ood_aupr,
    ood_auroc,
    predictive_entropy,
)

RNG = np.random.default_rng(0)


def _member_proba(m, n, c, rng=RNG):
    return rng.dirichlet(np.full(c, 0.5), size=(m, n))


# --- per-example scores ----------------------------------------------------------------------


def test_scores_against_scipy_entropy():
    members = _member_proba(4, 30, 5)
    mean = members.mean(axis=0)
    np.testing.assert_allclose(predictive_entropy(members), entropy(mean, axis=1))
    np.testing.assert_allclose(predictive_entropy(mean), entropy(mean, axis=1))
    np.testing.assert_allclose(expected_entropy(members), entropy(members, axis=2).mean(axis=0))
    np.testing.assert_allclose(max_probability(members), mean.max(axis=1))
    np.testing.assert_allclose(max_probability(mean), mean.max(axis=1))
    # Total = aleatoric + epistemic, with the existing mutual information.
    np.testing.assert_allclose(
        predictive_entropy(members), expected_entropy(members) + mutual_information(members)
    )


def test_scores_hand_computed():
    members = np.array([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], [[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]])
    np.testing.assert_allclose(predictive_entropy(members), [np.log(2), np.log(2)])
    np.testing.assert_allclose(expected_entropy(members), [0.0, np.log(2)])
    np.testing.assert_allclose(max_probability(members), [0.5, 0.5])
    uniform = np.full((1, 3), 1 / 3)
    np.testing.assert_allclose(predictive_entropy(uniform), [np.log(3)])
    # eps inside the logarithm, as in mutual_information.
    np.testing.assert_allclose(
        predictive_entropy([[1.0, 0.0]], eps=0.1), [-np.log(1.1)], rtol=1e-12
    )


@pytest.mark.parametrize(
    ("func", "bad", "match"),
    [
        (predictive_entropy, np.ones(3) / 3, "shape"),
        (predictive_entropy, [[0.5, 0.6]], "sum to 1"),
        (max_probability, np.ones((1, 1, 1, 2)) / 2, "shape"),
        (expected_entropy, [[0.5, 0.5]], "3-D"),
        (expected_entropy, [[[np.nan, 1.0]]], "NaN"),
    ],
)
def test_scores_reject_invalid_probabilities(func, bad, match):
    with pytest.raises(ValueError, match=match):
        func(bad)


# --- detection metrics -------------------------------------------------------------------------


def _labels_and_scores(s_in, s_out):
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    return y, np.r_[s_in, s_out].astype(np.float64)


def _sklearn_fpr(y_pos, s):
    fpr, tpr, _ = roc_curve(y_pos, s, drop_intermediate=False)
    return fpr[np.argmax(tpr >= 0.95)]


# Integer-valued scores from a narrow range, so that ties within and across groups are common.
scores = st.lists(st.integers(-3, 3), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(s_in=scores, s_out=scores)
def test_detection_metrics_equal_sklearn(s_in, s_out):
    y, s = _labels_and_scores(s_in, s_out)
    if len(set(y)) < 2:
        return
    assert ood_auroc(s_in, s_out) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert ood_aupr(s_in, s_out) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert ood_aupr(s_in, s_out, positive="in") == pytest.approx(
        average_precision_score(1 - y, -s), abs=1e-12
    )
    assert fpr_at_95_tpr(s_in, s_out) == pytest.approx(_sklearn_fpr(y, s), abs=1e-12)
    assert fpr_at_95_tpr(s_in, s_out, positive="in") == pytest.approx(
        _sklearn_fpr(1 - y, -s), abs=1e-12
    )
    # A confidence (higher = in distribution) is the negated score.
    neg_in, neg_out = -np.asarray(s_in), -np.asarray(s_out)
    assert ood_auroc(neg_in, neg_out, higher_is_ood=False) == ood_auroc(s_in, s_out)
    assert ood_aupr(neg_in, neg_out, higher_is_ood=False) == ood_aupr(s_in, s_out)
    assert fpr_at_95_tpr(neg_in, neg_out, higher_is_ood=False) == fpr_at_95_tpr(s_in, s_out)
    # Swapping the groups together with the sign leaves the AUROC unchanged.
    assert ood_auroc(neg_out, neg_in) == pytest.approx(ood_auroc(s_in, s_out), abs=1e-12)


def test_detection_metrics_hand_computed():
    # Perfect separation, and its reverse.
    assert ood_auroc([0, 1, 2], [3, 4]) == 1.0
    assert ood_auroc([3, 4], [0, 1, 2]) == 0.0
    assert ood_aupr([0, 1, 2], [3, 4]) == 1.0
    assert fpr_at_95_tpr([0, 1, 2], [3, 4]) == 0.0
    assert fpr_at_95_tpr([3, 4], [0, 1, 2]) == 1.0
    # Every score tied: chance AUROC, AP the share of positives, everything flagged.
    assert ood_auroc([1, 1, 1], [1]) == 0.5
    assert ood_aupr([1, 1, 1], [1]) == pytest.approx(1 / 4)
    assert ood_aupr([1, 1, 1], [1], positive="in") == pytest.approx(3 / 4)
    assert fpr_at_95_tpr([1, 1, 1], [1]) == 1.0
    # in = [1, 2, 3], out = [2, 4]: pairs (out > in) 4, ties 1 of 6 -> 4.5 / 6.
    assert ood_auroc([1, 2, 3], [2, 4]) == pytest.approx(0.75)
    # Thresholds 4: tp 1 fp 0; 3: tp 1 fp 1; 2: tp 2 fp 2 -> AP = 1/2 * 1 + 1/2 * 2/4.
    assert ood_aupr([1, 2, 3], [2, 4]) == pytest.approx(0.75)
    # TPR reaches 2/2 only at threshold 2, where in-distribution 2 and 3 are flagged.
    assert fpr_at_95_tpr([1, 2, 3], [2, 4]) == pytest.approx(2 / 3)


def test_fpr_at_95_tpr_counts_exactly_95_percent():
    s_out = np.arange(1, 21, dtype=float)
    # Threshold 2 catches 19 of the 20 OOD scores, exactly 95%, and neither in-distribution
    # score (TPR computed as 19 / 20 in floating point must not fall short of 0.95).
    assert fpr_at_95_tpr([1.5, 0.0], s_out) == 0.0
    # The same threshold flags 2.5; no higher threshold reaches 95%.
    assert fpr_at_95_tpr([2.5, 0.0], s_out) == 0.5
    # In-distribution inputs flagged only below the last OOD score do not count.
    assert fpr_at_95_tpr([0.5, 0.0], s_out) == 0.0
    # With 40 OOD scores, 38 (95%) are caught at threshold 3.
    assert fpr_at_95_tpr([2.5, 3.0], np.arange(1, 41, dtype=float)) == 0.5


@pytest.mark.parametrize("func", [ood_auroc, ood_aupr, fpr_at_95_tpr])
def test_detection_metrics_validate(func):
    with pytest.raises(ValueError, match="scores_in is empty"):
        func([], [1.0])
    with pytest.raises(ValueError, match="scores_out contains NaN"):
        func([1.0], [np.nan])
    with pytest.raises(ValueError, match="1-D"):
        func([[1.0, 2.0]], [1.0])
    with pytest.raises(ValueError, match="real numbers"):
        func(["a"], [1.0])
    with pytest.raises(ValueError, match="higher_is_ood"):
        func([1.0], [2.0], higher_is_ood="yes")
    if func is not ood_auroc:
        with pytest.raises(ValueError, match=r"positive must be one of \['ood', 'in'\]"):
            func([1.0], [2.0], positive="out")


# --- scorers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    inside = y < 5  # classes 5-9 are held out as out-of-distribution inputs
    X_tr, X_te, y_tr, y_te = train_test_split(
        X[inside], y[inside], test_size=0.3, random_state=0, stratify=y[inside]
    )
    return X_tr, X_te, y_tr, y_te, X[~inside]


@pytest.fixture(scope="module")
def digits_ensemble(digits_split):
    X_tr, _, y_tr, _, _ = digits_split
    return DeepEnsembleClassifier(n_estimators=5, max_epochs=30, random_state=0).fit(X_tr, y_tr)


def test_mutual_information_detects_held_out_digits(digits_split, digits_ensemble):
    _, X_te, _, _, X_ood = digits_split
    mi_in = mutual_information(digits_ensemble.predict_member_proba(X_te))
    mi_out = mutual_information(digits_ensemble.predict_member_proba(X_ood))
    auroc = ood_auroc(mi_in, mi_out)
    # Chance is 0.5; held-out classes draw clearly more disagreement from the members.
    assert auroc > 0.8
    y, s = _labels_and_scores(mi_in, mi_out)
    assert auroc == pytest.approx(roc_auc_score(y, s))
    assert fpr_at_95_tpr(mi_in, mi_out) < 0.9


@pytest.mark.parametrize(
    "score", ["mutual_information", "predictive_entropy", "expected_entropy", "max_probability"]
)
@pytest.mark.parametrize("metric", ["auroc", "aupr", "neg_fpr_at_95_tpr"])
def test_ood_scorer_equals_metric_by_hand(digits_split, digits_ensemble, score, metric):
    _, X_te, _, y_te, X_ood = digits_split
    m_in = digits_ensemble.predict_member_proba(X_te).astype(np.float64)
    m_out = digits_ensemble.predict_member_proba(X_ood).astype(np.float64)
    mean_in, mean_out = m_in.mean(0), m_out.mean(0)
    by_hand = {
        "mutual_information": (
            entropy(mean_in, axis=1) - entropy(m_in, axis=2).mean(0),
            entropy(mean_out, axis=1) - entropy(m_out, axis=2).mean(0),
        ),
        "predictive_entropy": (entropy(mean_in, axis=1), entropy(mean_out, axis=1)),
        "expected_entropy": (entropy(m_in, axis=2).mean(0), entropy(m_out, axis=2).mean(0)),
        # A confidence: lower means more likely OOD.
        "max_probability": (-mean_in.max(1), -mean_out.max(1)),
    }[score]
    y, s = _labels_and_scores(*by_hand)
    expected = {
        "auroc": roc_auc_score(y, s),
        "aupr": average_precision_score(y, s),
        "neg_fpr_at_95_tpr": -_sklearn_fpr(y, s),
    }[metric]
    scorer = make_ood_scorer(X_ood, score=score, metric=metric)
    assert scorer(digits_ensemble, X_te, y_te) == pytest.approx(expected, abs=1e-6)
    assert scorer(digits_ensemble, X_te) == scorer(digits_ensemble, X_te, y_te)
    restored = pickle.loads(pickle.dumps(scorer))
    assert restored(digits_ensemble, X_te) == scorer(digits_ensemble, X_te)


def test_ood_scorer_in_cross_validate_over_pipeline(digits_split):
    X_tr, _, y_tr, _, X_ood = digits_split
    X_raw, X_ood_raw = X_tr * 16.0, X_ood * 16.0  # the scaler must apply to both sets
    pipe = make_pipeline(
        StandardScaler(), DeepEnsembleClassifier(n_estimators=3, max_epochs=5, random_state=0)
    )
    scores = cross_validate(
        pipe,
        X_raw,
        y_tr,
        scoring={
            "auroc": make_ood_scorer(X_ood_raw),
            "aupr": make_ood_scorer(X_ood_raw, metric="aupr"),
        },
        cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),
        return_estimator=True,
        return_indices=True,
    )
    for fold, fitted in enumerate(scores["estimator"]):
        test = scores["indices"]["test"][fold]
        scaler, ensemble = fitted[0], fitted[-1]
        mean, std = X_raw[scores["indices"]["train"][fold]].mean(0), scaler.scale_
        mi_in = mutual_information(ensemble.predict_member_proba((X_raw[test] - mean) / std))
        mi_out = mutual_information(ensemble.predict_member_proba((X_ood_raw - mean) / std))
        y, s = _labels_and_scores(mi_in, mi_out)
        assert scores["test_auroc"][fold] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
        assert scores["test_aupr"][fold] == pytest.approx(average_precision_score(y, s), abs=1e-6)


def test_make_ood_scorer_validates():
    with pytest.raises(ValueError, match="score must be one of"):
        make_ood_scorer(np.zeros((2, 2)), score="entropy")
    with pytest.raises(ValueError, match="metric must be one of"):
        make_ood_scorer(np.zeros((2, 2)), metric="fpr_at_95_tpr")
