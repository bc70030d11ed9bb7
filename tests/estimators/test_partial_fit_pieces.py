"""``partial_fit`` against independent references: ``fit`` with as many epochs, the
other engine, scikit-learn's rules for weights, and ``predict``'s shape checks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.utils.class_weight import compute_class_weight

from ensemblekit.engine import StepSchedule
from ensemblekit.estimators import (
    DeepEnsembleClassifier,
    DeepEnsembleRegressor,
    DropoutClassifier,
    DropoutRegressor,
    SubspaceSamplingClassifier,
    SWAGClassifier,
)

SMALL = dict(device="cpu", module__hidden_layer_sizes=(8,), batch_size=32)
CLASSIFIERS = {
    "deep": lambda **kw: DeepEnsembleClassifier(n_estimators=2, **SMALL, **kw),
    "swag": lambda **kw: SWAGClassifier(n_estimators=1, n_samples=2, **SMALL, **kw),
    "dropout": lambda **kw: DropoutClassifier(n_estimators=2, **SMALL, **kw),
    "subspace": lambda **kw: SubspaceSamplingClassifier(n_estimators=1, n_samples=2,
                                                        **SMALL, **kw),
}


def _iris():
    X, y = load_iris(return_X_y=True)
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


def _lrs(est):
    return [g["lr"] for net in est.estimators_ for g in net.optimizer_.param_groups]


def _outputs(est, X):
    if hasattr(est, "predict_member_proba"):
        return est.predict_member_proba(X)
    return est.predict(X)


# ------------------------------------------------------------- learning-rate schedule
@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
@pytest.mark.parametrize("task", ["classifier", "regressor"])
def test_partial_fit_calls_follow_the_schedule_of_fit(engine, task):
    # k calls on the same rows train the members of fit(max_epochs=k): the schedule
    # scales the initial rate at each epoch, it does not compound over calls.
    X, y = _iris()
    schedule = StepSchedule(step_size=2, gamma=0.1)
    params = dict(lr=1e-2, random_state=0, engine=engine, lr_schedule=schedule, **SMALL)
    if task == "classifier":
        make = lambda **kw: DeepEnsembleClassifier(n_estimators=2, **params, **kw)  # noqa: E731
        extra = {"classes": [0, 1, 2]}
        target = y
    else:
        make = lambda **kw: DeepEnsembleRegressor(n_estimators=2, **params, **kw)  # noqa: E731
        extra = {}
        target = X[:, 0] - X[:, 1]
    k = 5
    full = make(max_epochs=k).fit(X, target)
    inc = make(max_epochs=50)
    for _ in range(k):
        inc.partial_fit(X, target, **extra)
    assert inc.engine_ == engine
    # Epoch 4 (zero-based) runs at 1e-2 * 0.1 ** (4 // 2).
    np.testing.assert_allclose(_lrs(full), 1e-4, rtol=1e-12)
    np.testing.assert_allclose(_lrs(inc), 1e-4, rtol=1e-12)
    np.testing.assert_allclose(inc.loss_curve_, full.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(_outputs(inc, X), _outputs(full, X), atol=1e-6)


def test_partial_fit_continues_the_schedule_after_fit():
    # fit(max_epochs=3) then 2 calls == fit(max_epochs=5), in either engine's order.
    X, y = _iris()
    params = dict(n_estimators=2, lr=1e-2, random_state=1, **SMALL,
                  lr_schedule=StepSchedule(step_size=1, gamma=0.5))
    full = DeepEnsembleClassifier(max_epochs=5, engine="sequential", **params).fit(X, y)
    inc = DeepEnsembleClassifier(max_epochs=3, engine="vectorized", **params).fit(X, y)
    inc.set_params(engine="sequential")
    inc.partial_fit(X, y)
    inc.set_params(engine="vectorized")
    inc.partial_fit(X, y)
    np.testing.assert_allclose(_lrs(inc), 1e-2 * 0.5**4, rtol=1e-12)
    np.testing.assert_allclose(inc.predict_member_proba(X), full.predict_member_proba(X),
                               atol=1e-6)


@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_swag_partial_fit_keeps_swa_lr_in_the_swa_phase(engine):
    X, y = _iris()
    params = dict(n_estimators=1, n_samples=2, lr=1e-2, swa_start=2, swa_lr=3e-3,
                  random_state=0, engine=engine, **SMALL)
    full = SWAGClassifier(max_epochs=5, **params).fit(X, y)
    inc = SWAGClassifier(max_epochs=50, **params)
    lrs = []
    for _ in range(5):
        inc.partial_fit(X, y, classes=[0, 1, 2])
        lrs.append(_lrs(inc)[0])
    # Pretraining epochs 0, 1 at lr; the SWA epochs at swa_lr, call after call.
    np.testing.assert_allclose(lrs, [1e-2, 1e-2, 3e-3, 3e-3, 3e-3], rtol=1e-12)
    np.testing.assert_allclose(inc.predict_proba(X), full.predict_proba(X), atol=1e-6)


# ------------------------------------------------------------- class_weight="balanced"
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
@pytest.mark.parametrize("labels", ["int", "str"])
def test_partial_fit_refuses_balanced_class_weight(name, labels):
    X, y = _iris()
    names = np.array(["setosa", "versicolor", "virginica"])
    yy = y if labels == "int" else names[y]
    classes = np.unique(yy)
    piece = y < 2  # lacks a class
    clf = CLASSIFIERS[name](class_weight="balanced", random_state=0)
    for rows in (piece, np.ones(len(y), bool)):
        with pytest.raises(ValueError, match=r"class_weight='balanced' is not supported "
                                             r"for partial_fit.*compute_class_weight"):
            clf.partial_fit(X[rows], yy[rows], classes=classes)
    assert not hasattr(clf, "estimators_")
    # The weights the message asks for, as a dict, train in partial_fit; so does
    # "balanced" in fit.
    weights = compute_class_weight("balanced", classes=classes, y=yy)
    clf.set_params(class_weight=dict(zip(classes.tolist(), weights)))
    clf.partial_fit(X[piece], yy[piece], classes=classes)
    clf.set_params(class_weight="balanced")
    with pytest.raises(ValueError, match="compute_class_weight"):
        clf.partial_fit(X, yy)
    CLASSIFIERS[name](class_weight="balanced", random_state=0, max_epochs=4).fit(X, yy)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_partial_fit_dict_class_weight_equals_row_weights(name):
    # A dict class_weight is the row weight of each row's class, also in calls whose
    # rows lack a class: the same as passing those weights as sample_weight.
    X, y = _iris()
    names = np.array(["a", "b", "c"])
    yy = names[y]
    cw = {"a": 2.0, "b": 0.5, "c": 3.0}
    pieces = [y < 2, y > 0, np.ones(len(y), bool)]
    by_dict = CLASSIFIERS[name](class_weight=cw, random_state=0)
    by_rows = CLASSIFIERS[name](random_state=0)
    for rows in pieces:
        by_dict.partial_fit(X[rows], yy[rows], classes=names)
        by_rows.partial_fit(X[rows], yy[rows], classes=names,
                            sample_weight=np.array([cw[c] for c in yy[rows]]))
    np.testing.assert_allclose(by_dict.predict_proba(X), by_rows.predict_proba(X),
                               atol=1e-6)


# ------------------------------------------------------------- members stopped apart
def _stopped_apart(make, X, target):
    fits = {engine: make(engine=engine).fit(X, target)
            for engine in ("sequential", "vectorized")}
    counts = [len(net.history) for net in fits["vectorized"].estimators_]
    assert len(set(counts)) > 1, counts  # the case under test: members stopped apart
    return fits, counts


ES = dict(early_stopping=True, n_iter_no_change=2, validation_fraction=0.2,
          max_epochs=30, lr=0.05, random_state=0)

STOPPED = {
    "deep_classifier": (lambda **kw: DeepEnsembleClassifier(n_estimators=3, **SMALL, **ES,
                                                            **kw), "y"),
    "deep_regressor": (lambda **kw: DeepEnsembleRegressor(n_estimators=3, **SMALL, **ES,
                                                          **kw), "r"),
    "dropout_classifier": (lambda **kw: DropoutClassifier(n_estimators=3, **SMALL, **ES,
                                                          **kw), "y"),
    "dropout_regressor": (lambda **kw: DropoutRegressor(n_estimators=3, **SMALL, **ES,
                                                        **kw), "r"),
    "subspace": (lambda **kw: SubspaceSamplingClassifier(n_estimators=3, n_samples=2,
                                                         **SMALL, **ES, **kw), "y"),
}


@pytest.mark.parametrize("name", sorted(STOPPED))
def test_partial_fit_after_early_stopping_in_the_vectorized_engine(name):
    X, y = _iris()
    make, kind = STOPPED[name]
    target = y if kind == "y" else X[:, 0] - 0.5 * X[:, 2]
    fits, counts = _stopped_apart(make, X, target)
    before = _outputs(fits["sequential"], X)
    for est in fits.values():
        est.partial_fit(X, target)
    assert fits["vectorized"].engine_ == "vectorized"
    assert [len(net.history) for net in fits["vectorized"].estimators_] == \
        [c + 1 for c in counts]
    # The engines agree on the epoch up to the float rounding their fits already
    # differ by (it grows with the epochs run): far closer than the epoch moves them.
    step = np.abs(_outputs(fits["sequential"], X) - before).max()
    gap = np.abs(_outputs(fits["vectorized"], X) - _outputs(fits["sequential"], X)).max()
    assert gap <= max(1e-5, 0.02 * step), (gap, step)


# ------------------------------------------------------------- all-zero weights
def test_all_zero_weights_name_the_task_and_leave_the_model_unchanged():
    X, _ = _iris()
    r = X[:, 0] - X[:, 1]
    reg = DeepEnsembleRegressor(n_estimators=2, max_epochs=1, random_state=0, **SMALL)
    with pytest.raises(ValueError, match="Every sample weight is zero:") as info:
        reg.fit(X, r, sample_weight=np.zeros(len(r)))
    assert "class_weight" not in str(info.value)
    reg.fit(X, r)
    before = reg.predict(X)
    with pytest.raises(ValueError, match=r"Every sample weight of this partial_fit call "
                                         r"is zero: .*at least one non-zero") as info:
        reg.partial_fit(X, r, sample_weight=np.zeros(len(r)))
    assert "class_weight" not in str(info.value)
    np.testing.assert_array_equal(reg.predict(X), before)
    assert reg.n_iter_.tolist() == [1, 1]
    X, y = _iris()
    clf = DeepEnsembleClassifier(n_estimators=1, class_weight={0: 0.0}, random_state=0,
                                 **SMALL)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"partial_fit call is zero \(sample_weight "
                                         r"times class_weight\)"):
        clf.partial_fit(X[y == 0], y[y == 0])


# ------------------------------------------------------------- image shapes
@pytest.mark.parametrize("make", [
    lambda: DeepEnsembleClassifier(n_estimators=1, random_state=0, **SMALL),
    lambda: DeepEnsembleRegressor(n_estimators=1, random_state=0, **SMALL),
])
def test_partial_fit_with_other_image_shape_names_the_shapes(make):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 1, 8, 8)).astype(np.float32)
    y = np.arange(20) % 2
    est = make()
    est.partial_fit(X, y, **({"classes": [0, 1]} if hasattr(est, "classes") or
                            isinstance(est, DeepEnsembleClassifier) else {}))
    for other in (rng.normal(size=(20, 3, 8, 8)), rng.normal(size=(20, 1, 10, 10)),
                  rng.normal(size=(20, 64))):
        with pytest.raises(ValueError) as by_predict:
            est.predict(other)
        with pytest.raises(ValueError) as by_partial:
            est.partial_fit(other, y)
        assert str(by_partial.value) == str(by_predict.value)
        assert "samples of shape" in str(by_partial.value)
