"""Validation score and early stopping of one member, shared by both engines.

The rule is scikit-learn's ``MLPClassifier`` / ``MLPRegressor`` rule
(``_update_no_improvement_count``): after each epoch the member's score on its
validation rows is computed (accuracy for a classifier, the coefficient of
determination R^2 for a regressor, as those estimators' ``score``); an epoch whose
score is not above ``best + tol`` counts as no improvement, a score above ``best``
becomes the best (and its weights are kept), and training stops once more than
``n_iter_no_change`` epochs in a row brought no improvement. The best weights are
then put back.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from sklearn.metrics import r2_score
from skorch.callbacks import Callback
from torch import nn

from ._sequential import predict_logits_sequential

#: Validation scores a monitor computes, and the history key each is recorded under.
SCORES = {"accuracy": "valid_acc", "r2": "valid_r2"}


class MemberMonitor:
    """Validation scores and the stopping decision of one member.

    Parameters
    ----------
    X_valid : ndarray of shape (n_valid, ...)
        The member's validation inputs, float32.
    y_valid : ndarray of shape (n_valid,) or (n_valid, n_targets)
        Their encoded labels (``score="accuracy"``) or real targets (``score="r2"``).
    w_valid : ndarray of shape (n_valid,) or None
        Their weights: the score is the weighted accuracy, or R^2 with these sample
        weights.
    n_iter_no_change : int
        Epochs without improvement tolerated before stopping.
    tol : float
        Minimum improvement of the validation score.
    batch_size : int
        Rows evaluated at once.
    score : {"accuracy", "r2"}, default="accuracy"
        ``"accuracy"``: the fraction of rows whose largest output is the label
        (``MLPClassifier``'s validation score). ``"r2"``: scikit-learn's
        :func:`~sklearn.metrics.r2_score` of the first ``n_targets`` outputs (the
        predicted means) against ``y_valid``, averaged uniformly over targets
        (``MLPRegressor``'s validation score); it is ``nan`` when a prediction is not
        finite, as there, and a ``nan`` score counts as no improvement. R^2 does not
        change when targets and predictions are standardised alike, so it may be
        computed on standardised targets.

    Attributes
    ----------
    key : str
        History key of the score: ``"valid_acc"`` or ``"valid_r2"``.
    scores : list of float
        Validation score after each epoch of this fit.
    improved : list of bool
        Whether each epoch's score was the best so far (its weights are kept).
    best_epoch : int
        Zero-based epoch (of this fit) of the best score.
    stopped : bool
        Whether the stopping rule fired.

    Examples
    --------
    >>> X = np.eye(2, dtype=np.float32)
    >>> mon = MemberMonitor(X, np.array([0, 1]), None, n_iter_no_change=0, tol=0.01,
    ...                     batch_size=8)
    >>> net = nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.eye(2)); _ = net.bias.zero_()
    >>> mon.end_epoch(net), mon.scores
    (False, [1.0])
    >>> mon.end_epoch(net), mon.best_epoch
    (True, 0)
    >>> r2 = MemberMonitor(X, np.array([[1.0], [3.0]]), None, n_iter_no_change=0,
    ...                    tol=0.0, batch_size=8, score="r2")
    >>> r2.score(net)  # predicted means 1 and 0 against 1 and 3: 1 - 9 / 2
    -3.5
    """

    def __init__(self, X_valid: np.ndarray, y_valid: np.ndarray, w_valid: np.ndarray | None,
                 n_iter_no_change: int, tol: float, batch_size: int,
                 score: str = "accuracy") -> None:
        if score not in SCORES:
            raise ValueError(f"score must be one of {list(SCORES)}, got {score!r}.")
        self.X_valid = X_valid
        self.y_valid = np.asarray(y_valid)
        self.w_valid = None if w_valid is None else np.asarray(w_valid, dtype=np.float64)
        self.n_iter_no_change = int(n_iter_no_change)
        self.tol = float(tol)
        self.batch_size = int(batch_size)
        self.kind = score
        self.key = SCORES[score]
        self.reset()

    def reset(self) -> None:
        """Forget the scores of an earlier fit."""
        self.scores: list[float] = []
        self.improved: list[bool] = []
        self.best_score = -np.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.no_improvement = 0
        self.stopped = False

    def score(self, module: nn.Module) -> float:
        """Validation score of ``module`` (see ``score`` above), in eval mode."""
        was_training = module.training
        outputs = predict_logits_sequential([module], self.X_valid, self.batch_size)[0]
        module.train(was_training)
        if self.kind == "r2":
            y = self.y_valid.reshape(len(self.y_valid), -1).astype(np.float64)
            means = outputs[:, : y.shape[1]].astype(np.float64)
            if not np.isfinite(means).all():
                return float("nan")
            return float(r2_score(y, means, sample_weight=self.w_valid))
        correct = (outputs.argmax(axis=1) == self.y_valid).astype(np.float64)
        return float(np.average(correct, weights=self.w_valid))

    def end_epoch(self, module: nn.Module) -> bool:
        """Score ``module`` after an epoch; return whether the member should stop."""
        score = self.score(module)
        self.scores.append(score)
        # Written so that a nan score is no improvement and never the best.
        if not score >= self.best_score + self.tol:
            self.no_improvement += 1
        else:
            self.no_improvement = 0
        self.improved.append(bool(score > self.best_score))
        if self.improved[-1]:
            self.best_score = score
            self.best_epoch = len(self.scores) - 1
            self.best_state = copy.deepcopy(module.state_dict())
        self.stopped = self.no_improvement > self.n_iter_no_change
        return self.stopped

    def restore(self, module: nn.Module) -> None:
        """Put the best epoch's weights (and buffers) back into ``module``."""
        if self.best_state is not None:
            module.load_state_dict(self.best_state)

    def __getstate__(self) -> dict[str, Any]:
        # Validation data and weight copies are fitting material, not fitted state.
        state = dict(self.__dict__)
        state["X_valid"] = state["X_valid"][:0]
        state["best_state"] = None
        return state


class MonitorCallback(Callback):
    """skorch callback running a :class:`MemberMonitor` after each epoch.

    Records the score (``valid_acc`` or ``valid_r2``) and whether it is the best so
    far (``valid_acc_best`` or ``valid_r2_best``) in the net's history and restores
    the best weights at the end of training. A :class:`StopCallback` placed after
    every other callback ends the training when the monitor says stop.
    """

    def __init__(self, monitor: MemberMonitor) -> None:
        self.monitor = monitor

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self.monitor.reset()

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self.monitor.end_epoch(net.module_)
        net.history.record(self.monitor.key, self.monitor.scores[-1])
        net.history.record(f"{self.monitor.key}_best", self.monitor.improved[-1])

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        self.monitor.restore(net.module_)


class StopCallback(Callback):
    """Interrupt training once a :class:`MemberMonitor` has stopped.

    skorch ends ``partial_fit`` quietly on ``KeyboardInterrupt`` (as its own
    ``EarlyStopping`` does); placed last, every other callback has seen the epoch.
    """

    def __init__(self, monitor: MemberMonitor) -> None:
        self.monitor = monitor

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        if self.monitor.stopped:
            raise KeyboardInterrupt


def monitor_callback(net: Any) -> MonitorCallback | None:
    """The initialised :class:`MonitorCallback` of a skorch net, if it has one."""
    for _, cb in getattr(net, "callbacks_", None) or []:
        if isinstance(cb, MonitorCallback):
            return cb
    return None
