"""Predictive performance against ensemble size and against dataset shift."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics import (
    accuracy,
    brier_score,
    ensemble_size_curve,
    expected_calibration_error,
    negative_log_likelihood,
)
from ._base import as_mapping, axes, member_proba

_METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "brier_score": brier_score,
    "expected_calibration_error": expected_calibration_error,
    "negative_log_likelihood": negative_log_likelihood,
}

_LABELS = {
    "accuracy": "accuracy",
    "brier_score": "Brier score (sum over classes)",
    "expected_calibration_error": "ECE (15 equal-width bins)",
    "negative_log_likelihood": "NLL (nats, mean)",
}


def _metric_name(metric: Any) -> str:
    if isinstance(metric, str):
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {sorted(_METRICS)} or a callable, got "
                             f"{metric!r}.")
        return metric
    if callable(metric):
        return getattr(metric, "__name__", "metric")
    raise ValueError(f"metric must be one of {sorted(_METRICS)} or a callable, got {metric!r}.")


class EnsembleSizeDisplay:
    """A metric of the ensemble against its number of members, for several methods.

    For each size ``k`` the metric of the mean prediction of subsets of ``k``
    members is averaged over subsets (all of them when there are at most
    ``max_subsets``, as in the paper's code), with a band of one standard deviation
    over subsets (:func:`ensemblekit.metrics.ensemble_size_curve`).

    Parameters
    ----------
    curves : dict of str to EnsembleSizeCurve
        One curve per method.
    metric : str
        Name of the metric (axis label).

    Attributes
    ----------
    lines_ : dict of str to matplotlib Line2D
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.plotting import EnsembleSizeDisplay
    >>> members = np.array([[[0.9, 0.1], [0.6, 0.4]],
    ...                     [[0.6, 0.4], [0.1, 0.9]],
    ...                     [[0.3, 0.7], [0.2, 0.8]]])
    >>> display = EnsembleSizeDisplay.from_predictions([0, 1], members, metric="accuracy")
    >>> display.curves["ensemble"].mean     # 1, 2 and 3 members
    array([0.666..., 0.833..., 1. ])
    """

    def __init__(self, curves: Mapping[str, Any], metric: str) -> None:
        self.curves = dict(curves)
        self.metric = metric

    @classmethod
    def from_predictions(
        cls,
        y_true: Any,
        member_proba: Any,
        *,
        metric: str | Callable[[Any, np.ndarray], float] = "accuracy",
        sizes: Sequence[int] | None = None,
        max_subsets: int = 100,
        random_state: Any = None,
        labels: Any = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> EnsembleSizeDisplay:
        """Curves from member probabilities and plot.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            True labels, as in :func:`~ensemblekit.metrics.ensemble_size_curve`.
        member_proba : array-like of shape (n_members, n_samples, n_classes) or dict of them
            The members of each method, by name.
        metric : str or callable, default="accuracy"
            As in :func:`~ensemblekit.metrics.ensemble_size_curve`.
        sizes : sequence of int, default=None
            As in :func:`~ensemblekit.metrics.ensemble_size_curve`.
        max_subsets : int, default=100
            As in :func:`~ensemblekit.metrics.ensemble_size_curve`.
        random_state : int, numpy.random.Generator or None, default=None
            As in :func:`~ensemblekit.metrics.ensemble_size_curve`.
        labels : array-like of shape (n_classes,), default=None
            As in :func:`~ensemblekit.metrics.ensemble_size_curve`.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : EnsembleSizeDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        name = _metric_name(metric)
        curves = {
            method: ensemble_size_curve(value, y_true, metric, sizes=sizes,
                                        max_subsets=max_subsets, random_state=random_state,
                                        labels=labels)
            for method, value in as_mapping(member_proba, "ensemble").items()
        }
        return cls(curves, name).plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        metric: str | Callable[[Any, np.ndarray], float] = "accuracy",
        sizes: Sequence[int] | None = None,
        max_subsets: int = 100,
        random_state: Any = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> EnsembleSizeDisplay:
        """Curves of the members of one or several fitted estimators.

        Parameters
        ----------
        estimator : fitted estimator or dict of str to fitted estimator
            Their ``predict_member_proba(X)`` are the members, by method name.
        X, y : array-like
            Evaluation rows and labels.
        metric : str or callable, default="accuracy"
            As in :func:`~ensemblekit.metrics.ensemble_size_curve`.
        sizes : sequence of int, default=None
            As in :func:`~ensemblekit.metrics.ensemble_size_curve`.
        max_subsets : int, default=100
            As in :func:`~ensemblekit.metrics.ensemble_size_curve`.
        random_state : int, numpy.random.Generator or None, default=None
            As in :func:`~ensemblekit.metrics.ensemble_size_curve`.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : EnsembleSizeDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        estimators = as_mapping(estimator, "ensemble")
        probas = {name: member_proba(est, X, f"estimator[{name!r}]")
                  for name, est in estimators.items()}
        labels = next(iter(estimators.values())).classes_
        return cls.from_predictions(y, probas, metric=metric, sizes=sizes,
                                    max_subsets=max_subsets, random_state=random_state,
                                    labels=labels, ax=ax, **kwargs)

    def plot(self, ax: Any = None, **kwargs: Any) -> EnsembleSizeDisplay:
        """Draw mean ± one standard deviation over subsets against ensemble size.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to ``Axes.plot``.

        Returns
        -------
        display : EnsembleSizeDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        ax = axes(ax)
        self.lines_ = {}
        for name, curve in self.curves.items():
            (line,) = ax.plot(curve.sizes, curve.mean, "o-", label=name, **kwargs)
            ax.fill_between(curve.sizes, curve.mean - curve.std, curve.mean + curve.std,
                            color=line.get_color(), alpha=0.2)
            self.lines_[name] = line
        ax.set_xlabel("ensemble size")
        ax.set_ylabel(_LABELS.get(self.metric, self.metric))
        ax.legend()
        self.ax_ = ax
        self.figure_ = ax.figure
        return self


class ShiftDisplay:
    """A metric against corruption intensity: one box per intensity and method.

    Each box spreads over the corruption types at one intensity (intensity 0 is the
    clean test set, usually a single value); a line joins the means, as in the
    paper's CIFAR-10-C figure.

    Parameters
    ----------
    values : dict of str to dict of int to ndarray of shape (n_corruptions,)
        Metric values by method, then by intensity.
    metric : str
        Name of the metric (axis label).

    Attributes
    ----------
    intensities : ndarray
        Sorted intensities present in any method.
    means : dict of str to ndarray of shape (n_intensities,)
        Mean over corruption types per intensity (``nan`` where a method has none).
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.plotting import ShiftDisplay
    >>> right, wrong = np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.2, 0.8], [0.9, 0.1]])
    >>> proba = {"model": {0: [right], 1: [right, wrong]}}   # intensity -> corruptions
    >>> display = ShiftDisplay.from_predictions([0, 1], proba, metric="accuracy")
    >>> display.intensities, display.means["model"]
    (array([0, 1]), array([1. , 0.5]))
    """

    def __init__(self, values: Mapping[str, Mapping[int, Any]], metric: str) -> None:
        self.values = {
            method: {int(k): np.atleast_1d(np.asarray(v, dtype=np.float64))
                     for k, v in by_level.items()}
            for method, by_level in values.items()
        }
        self.metric = metric
        self.intensities = np.array(sorted({k for v in self.values.values() for k in v}))
        self.means = {
            method: np.array([by_level[k].mean() if k in by_level else np.nan
                              for k in self.intensities])
            for method, by_level in self.values.items()
        }

    @classmethod
    def from_predictions(
        cls,
        y_true: Any,
        proba: Mapping[str, Mapping[int, Any]],
        *,
        metric: str | Callable[[Any, np.ndarray], float] = "accuracy",
        labels: Any = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> ShiftDisplay:
        """Evaluate a metric on predictions under each corruption and plot.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            Labels of the test rows (the same rows under every corruption).
        proba : dict of str to dict of int to array-like
            For each method, for each intensity, the probabilities under each
            corruption type: shape (n_corruptions, n_samples, n_classes) or a list of
            (n_samples, n_classes) arrays (a single one at intensity 0).
        metric : str or callable, default="accuracy"
            ``"accuracy"``, ``"brier_score"``, ``"negative_log_likelihood"``,
            ``"expected_calibration_error"`` (the functions of
            :mod:`ensemblekit.metrics`) or ``metric(y_true, proba) -> float``.
        labels : array-like of shape (n_classes,), default=None
            Label of each column (named metrics only).
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : ShiftDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        name = _metric_name(metric)
        if isinstance(metric, str):
            named = _METRICS[metric]

            def score(y: Any, p: Any) -> float:
                return named(y, p, labels=labels)
        else:
            score = metric
        if not isinstance(proba, Mapping) or not proba:
            raise ValueError("proba must be a non-empty dict: method -> {intensity: "
                             "probabilities per corruption}.")
        values: dict[str, dict[int, np.ndarray]] = {}
        for method, by_level in proba.items():
            if not isinstance(by_level, Mapping):
                raise ValueError(f"proba[{method!r}] must map intensities to probabilities.")
            values[method] = {}
            for level, per_corruption in by_level.items():
                arrays = per_corruption
                if isinstance(arrays, np.ndarray) and arrays.ndim == 2:
                    arrays = [arrays]
                values[method][int(level)] = np.array([score(y_true, p) for p in arrays])
        return cls(values, name).plot(ax=ax, **kwargs)

    def plot(self, ax: Any = None, **kwargs: Any) -> ShiftDisplay:
        """Draw one box per intensity and method, and the means joined by lines.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to ``Axes.boxplot``.

        Returns
        -------
        display : ShiftDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        ax = axes(ax)
        n = len(self.values)
        width = 0.8 / n
        self.boxes_ = {}
        for i, (method, by_level) in enumerate(self.values.items()):
            offset = (i - (n - 1) / 2) * width
            levels = [k for k in self.intensities if k in by_level]
            positions = np.array(levels, dtype=np.float64) + offset
            boxes = ax.boxplot([by_level[k] for k in levels], positions=positions,
                               widths=width * 0.9, patch_artist=True, manage_ticks=False,
                               **kwargs)
            color = f"C{i}"
            for patch in boxes["boxes"]:
                patch.set_facecolor(color)
                patch.set_alpha(0.5)
            ax.plot(positions, [by_level[k].mean() for k in levels], "-", color=color,
                    label=method)
            self.boxes_[method] = boxes
        ax.set_xticks(self.intensities)
        ax.set_xlabel("corruption intensity (0 = clean)")
        ax.set_ylabel(_LABELS.get(self.metric, self.metric))
        ax.legend()
        self.ax_ = ax
        self.figure_ = ax.figure
        return self
