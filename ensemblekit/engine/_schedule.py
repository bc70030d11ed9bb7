"""Learning-rate schedules that both engines apply identically, epoch by epoch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skorch.callbacks import Callback

#: A schedule maps a zero-based epoch number to a multiplier of the base learning rate.
Schedule = Callable[[int], float]


class StepSchedule:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    The multiplier at epoch ``e`` (zero-based) is ``gamma ** (e // step_size)``.

    Parameters
    ----------
    step_size : int, default=10
        Epochs between two decays.
    gamma : float, default=0.5
        Decay factor.

    Examples
    --------
    >>> schedule = StepSchedule(step_size=10, gamma=0.5)
    >>> [schedule(e) for e in (0, 9, 10, 25)]
    [1.0, 1.0, 0.5, 0.25]
    """

    def __init__(self, step_size: int = 10, gamma: float = 0.5) -> None:
        if int(step_size) < 1:
            raise ValueError(f"step_size must be an integer >= 1, got {step_size!r}.")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}.")
        self.step_size = int(step_size)
        self.gamma = float(gamma)

    def __call__(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step_size)

    def __repr__(self) -> str:
        return f"StepSchedule(step_size={self.step_size}, gamma={self.gamma})"


def base_lr(group: dict[str, Any]) -> float:
    """The learning rate a parameter group started training with.

    Kept in the group as ``initial_lr`` (the key torch's schedulers use), written
    the first time a schedule sees the group: later calls that continue training
    (``partial_fit``) scale this base rate, never the already scheduled one, so
    ``k`` continued epochs follow the schedule of a ``k``-epoch fit.
    """
    return float(group.setdefault("initial_lr", group["lr"]))


def scheduled_lr(base_lr: float, schedule: Schedule, epoch: int) -> float:
    """Learning rate of ``epoch`` under ``schedule``, with a checked multiplier."""
    factor = float(schedule(epoch))
    if not factor >= 0:
        raise ValueError(f"lr_schedule({epoch}) returned {factor!r}; it must be >= 0.")
    return base_lr * factor


class LRScheduleCallback(Callback):
    """Set every parameter group's learning rate per epoch (a skorch callback).

    Gives the sequential engine the ``lr_schedule`` of the vectorised engine: the
    learning rate of epoch ``e`` is the group's initial learning rate (see
    :func:`base_lr`) times ``schedule(e)`` in both, also when training continues.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch) -> multiplier``.
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self.base_lrs_ = [base_lr(group) for group in net.optimizer_.param_groups]

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        # skorch opens the epoch's history row before the callbacks run.
        epoch = len(net.history) - 1
        for group, base in zip(net.optimizer_.param_groups, self.base_lrs_):
            group["lr"] = scheduled_lr(base, self.schedule, epoch)
