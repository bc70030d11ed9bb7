"""Validation score and early stopping of one member, shared by both engines.

The rule is scikit-learn's ``MLPClassifier`` rule (``_update_no_improvement_count``):
after each epoch the member's accuracy on its validation rows is computed; an epoch
whose score is not above ``best + tol`` counts as no improvement, a score above
``best`` becomes the best (and its weights are kept), and training stops once more
than ``n_iter_no_change`` epochs in a row brought no improvement. The best weights
are then put back.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn

from ._sequential import predict_logits_sequential


class MemberMonitor:
    """Validation scores and the stopping decision of one member.

    Parameters
    ----------
    X_valid : ndarray of shape (n_valid, ...)
        The member's validation inputs, float32.
    y_valid : ndarray of shape (n_valid,)
        Their encoded labels.
    w_valid : ndarray of shape (n_valid,) or None
        Their weights: the score is the weighted accuracy.
    n_iter_no_change : int
        Epochs without improvement tolerated before stopping.
    tol : float
        Minimum improvement of the validation accuracy.
    batch_size : int
        Rows evaluated at once.

    Attributes
    ----------
    scores : list of float
        Validation accuracy after each epoch of this fit.
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
    """

    def __init__(self, X_valid: np.ndarray, y_valid: np.ndarray, w_valid: np.ndarray | None,
                 n_iter_no_change: int, tol: float, batch_size: int) -> None:
        self.X_valid = X_valid
        self.y_valid = np.asarray(y_valid)
        self.w_valid = None if w_valid is None else np.asarray(w_valid, dtype=np.float64)
        self.n_iter_no_change = int(n_iter_no_change)
        self.tol = float(tol)
        self.batch_size = int(batch_size)
        self.reset()

    def reset(self) -> None:
        """Forget the scores of an earlier fit."""
        self.scores: list[float] = []
        self.best_score = -np.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.no_improvement = 0
        self.stopped = False

    def score(self, module: nn.Module) -> float:
        """(Weighted) accuracy of ``module`` on the validation rows, in eval mode."""
        was_training = module.training
        logits = predict_logits_sequential([module], self.X_valid, self.batch_size)[0]
        module.train(was_training)
        correct = (logits.argmax(axis=1) == self.y_valid).astype(np.float64)
        return float(np.average(correct, weights=self.w_valid))

    def end_epoch(self, module: nn.Module) -> bool:
        """Score ``module`` after an epoch; return whether the member should stop."""
        score = self.score(module)
        self.scores.append(score)
        if score < self.best_score + self.tol:
            self.no_improvement += 1
        else:
            self.no_improvement = 0
        if score > self.best_score:
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

    Records ``valid_acc`` and ``valid_acc_best`` in the net's history and restores
    the best weights at the end of training. A :class:`StopCallback` placed after
    every other callback ends the training when the monitor says stop.
    """

    def __init__(self, monitor: MemberMonitor) -> None:
        self.monitor = monitor

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self.monitor.reset()

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self.monitor.end_epoch(net.module_)
        net.history.record("valid_acc", self.monitor.scores[-1])
        net.history.record("valid_acc_best", self.monitor.best_epoch
                           == len(self.monitor.scores) - 1)

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
