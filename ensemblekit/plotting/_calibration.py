"""Top-label reliability diagrams."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..metrics import expected_calibration_error
from ._base import encode_labels, pyplot


class ReliabilityDiagramDisplay:
    """Multi-class top-label reliability diagram with bin counts and ECE.

    Each point's confidence is its largest class probability and it is correct when
    that class is the true one. Points are binned by confidence exactly as
    :func:`ensemblekit.metrics.expected_calibration_error` bins them (bins closed on
    the right, equal width or equal mass), so the diagram's gaps weighted by the bin
    shares add up to the ECE shown.

    Parameters
    ----------
    bin_edges : ndarray of shape (n_bins + 1,)
        Edges of the confidence bins, from 0 to 1.
    bin_accuracy : ndarray of shape (n_bins,)
        Fraction correct in each bin (``nan`` for empty bins).
    bin_confidence : ndarray of shape (n_bins,)
        Mean confidence in each bin (``nan`` for empty bins).
    bin_counts : ndarray of shape (n_bins,)
        Points in each bin.
    ece : float
        Expected calibration error.
    name : str, default=None
        Legend entry.

    Attributes
    ----------
    bars_ : matplotlib BarContainer
    ax_ : matplotlib Axes
        The reliability panel.
    count_ax_ : matplotlib Axes
        The panel of bin counts, below it.
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.plotting import ReliabilityDiagramDisplay
    >>> proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    >>> display = ReliabilityDiagramDisplay.from_predictions([0, 1, 1, 1], proba, n_bins=2)
    >>> display.bin_counts.tolist()
    [0, 4]
    >>> round(display.ece, 3)
    0.0
    """

    def __init__(self, bin_edges: Any, bin_accuracy: Any, bin_confidence: Any,
                 bin_counts: Any, ece: float, *, name: str | None = None) -> None:
        self.bin_edges = np.asarray(bin_edges, dtype=np.float64)
        self.bin_accuracy = np.asarray(bin_accuracy, dtype=np.float64)
        self.bin_confidence = np.asarray(bin_confidence, dtype=np.float64)
        self.bin_counts = np.asarray(bin_counts, dtype=np.int64)
        self.ece = float(ece)
        self.name = name

    @classmethod
    def from_predictions(
        cls,
        y_true: Any,
        proba: Any,
        *,
        n_bins: int = 15,
        strategy: Literal["uniform", "quantile"] = "uniform",
        labels: Any = None,
        name: str | None = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> ReliabilityDiagramDisplay:
        """Bin predicted probabilities by top-label confidence and plot.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            True labels: column indices, or labels listed in ``labels``.
        proba : array-like of shape (n_samples, n_classes)
            Predicted probabilities.
        n_bins : int, default=15
            Number of bins.
        strategy : {"uniform", "quantile"}, default="uniform"
            Equal-width or equal-mass bins, as in
            :func:`~ensemblekit.metrics.expected_calibration_error`.
        labels : array-like of shape (n_classes,), default=None
            Label of each column.
        name : str, default=None
            Legend entry.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : ReliabilityDiagramDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.

        Raises
        ------
        ValueError
            As :func:`~ensemblekit.metrics.expected_calibration_error`.
        """
        ece = expected_calibration_error(y_true, proba, n_bins=n_bins, strategy=strategy,
                                         labels=labels)  # validates every input
        p = np.asarray(proba, dtype=np.float64)
        classes = np.arange(p.shape[1]) if labels is None else np.asarray(labels)
        y = encode_labels(y_true, classes)
        confidence = p.max(axis=1)
        correct = (p.argmax(axis=1) == y).astype(np.float64)
        if strategy == "uniform":
            edges = np.linspace(0.0, 1.0, n_bins + 1)
        else:
            edges = np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1))
        bins = np.searchsorted(edges[1:-1], confidence, side="left")
        counts = np.bincount(bins, minlength=n_bins)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.bincount(bins, weights=correct, minlength=n_bins) / counts
            conf = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
        display = cls(edges, acc, conf, counts, ece, name=name)
        return display.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        n_bins: int = 15,
        strategy: Literal["uniform", "quantile"] = "uniform",
        name: str | None = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> ReliabilityDiagramDisplay:
        """Reliability of ``estimator.predict_proba(X)``.

        Parameters
        ----------
        estimator : fitted classifier
            With ``predict_proba`` and ``classes_``.
        X, y : array-like
            Evaluation rows and labels.
        n_bins : int, default=15
            As in :meth:`from_predictions`.
        strategy : {"uniform", "quantile"}, default="uniform"
            As in :meth:`from_predictions`.
        name : str, default=None
            Legend entry; defaults to the estimator's class name.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : ReliabilityDiagramDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        if not callable(getattr(estimator, "predict_proba", None)):
            raise ValueError(
                f"estimator must be a fitted classifier with predict_proba, got "
                f"{type(estimator).__name__}."
            )
        return cls.from_predictions(
            y, estimator.predict_proba(X), n_bins=n_bins, strategy=strategy,
            labels=estimator.classes_, name=name or type(estimator).__name__, ax=ax, **kwargs,
        )

    def plot(self, ax: Any = None, **kwargs: Any) -> ReliabilityDiagramDisplay:
        """Draw accuracy per confidence bin, the diagonal, and the bin counts below.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            The reliability panel; the counts go to an inset panel below it. When
            None, a new figure with the counts in a second panel.
        **kwargs : dict
            Passed to ``Axes.bar``.

        Returns
        -------
        display : ReliabilityDiagramDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        if ax is None:
            plt = pyplot()
            _, (ax, count_ax) = plt.subplots(
                2, 1, sharex=True, figsize=(5, 6), gridspec_kw={"height_ratios": (3, 1)}
            )
        else:
            count_ax = ax.inset_axes([0.0, -0.42, 1.0, 0.25], sharex=ax)
        widths = np.diff(self.bin_edges)
        left = self.bin_edges[:-1]
        height = np.nan_to_num(self.bin_accuracy)
        label = f"{self.name + ': ' if self.name else ''}ECE = {self.ece:.4f}"
        options = {"alpha": 0.8, "edgecolor": "k", **kwargs}
        self.bars_ = ax.bar(left, height, width=widths, align="edge", label=label, **options)
        filled = self.bin_counts > 0
        ax.plot(self.bin_confidence[filled], self.bin_accuracy[filled], "k.", ms=4)
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy of the top label")
        ax.legend(loc="upper left")
        count_ax.bar(left, self.bin_counts, width=widths, align="edge", color="gray",
                     edgecolor="k")
        count_ax.set_ylabel("count")
        count_ax.set_xlabel("confidence (top-label probability)")
        self.count_ax_ = count_ax
        self.ax_ = ax
        self.figure_ = ax.figure
        return self
