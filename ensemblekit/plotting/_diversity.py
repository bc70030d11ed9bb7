"""The diversity-accuracy plane."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics import diversity_accuracy_limits
from ._base import as_mapping, axes, encode_labels, member_proba


def _accuracy_and_diversity(
    proba: np.ndarray, y: np.ndarray, reference_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    labels = proba.argmax(axis=-1)
    accuracy = (labels == y).mean(axis=-1)
    changed = (labels != reference_labels).mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return accuracy, changed / (1.0 - accuracy)


class DiversityAccuracyDisplay:
    """Functions in the diversity-accuracy plane of Fort, Hu & Lakshminarayanan (2019).

    Each function is a point with x = its accuracy :math:`a` and y = the fraction of
    points whose top-1 label differs from the reference solution's, divided by
    :math:`1 - a`. The reference is a green star at ``(a_ref, 0)``, the other
    independent solutions red stars, and the two reference curves of
    :func:`ensemblekit.metrics.diversity_accuracy_limits` (perturbed reference and
    random average case) are drawn for :math:`a \\in [1/C, a_{ref}]`.

    Parameters
    ----------
    accuracy : dict of str to ndarray of shape (n_functions,)
        Accuracy of each function, by method.
    diversity : dict of str to ndarray of shape (n_functions,)
        Normalised diversity of each function, by method.
    reference_accuracy : float
        Accuracy of the reference solution.
    n_classes : int
        Number of classes.
    independent_accuracy, independent_diversity : ndarray, default=None
        The other independent solutions.

    Attributes
    ----------
    curve_accuracy : ndarray of shape (100,)
        Accuracies at which the reference curves are evaluated.
    lower, upper : ndarray of shape (100,)
        The normalised reference curves.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.plotting import DiversityAccuracyDisplay
    >>> y = np.array([0, 1, 0, 1])
    >>> reference = np.eye(2)[[0, 1, 0, 0]]            # right on 3 of 4 points
    >>> samples = {"samples": np.eye(2)[[[0, 1, 1, 0], [0, 1, 0, 0]]]}
    >>> display = DiversityAccuracyDisplay.from_predictions(y, reference, samples)
    >>> display.accuracy["samples"], display.diversity["samples"]
    (array([0.5 , 0.75]), array([0.5, 0. ]))
    """

    def __init__(
        self,
        accuracy: dict[str, Any],
        diversity: dict[str, Any],
        reference_accuracy: float,
        n_classes: int,
        *,
        independent_accuracy: Any = None,
        independent_diversity: Any = None,
    ) -> None:
        self.accuracy = {k: np.asarray(v, dtype=np.float64) for k, v in accuracy.items()}
        self.diversity = {k: np.asarray(v, dtype=np.float64) for k, v in diversity.items()}
        self.reference_accuracy = float(reference_accuracy)
        self.n_classes = int(n_classes)
        self.independent_accuracy = (None if independent_accuracy is None
                                     else np.asarray(independent_accuracy, dtype=np.float64))
        self.independent_diversity = (None if independent_diversity is None
                                      else np.asarray(independent_diversity, dtype=np.float64))
        self.curve_accuracy = np.linspace(1.0 / self.n_classes, self.reference_accuracy, 100)
        if self.reference_accuracy > 1.0 / self.n_classes:
            self.lower, self.upper = diversity_accuracy_limits(
                self.curve_accuracy, self.reference_accuracy, self.n_classes
            )
        else:  # a reference no better than chance has no meaningful curves
            self.lower = self.upper = np.full_like(self.curve_accuracy, np.nan)

    @classmethod
    def from_predictions(
        cls,
        y_true: Any,
        reference_proba: Any,
        proba: Any,
        *,
        independent_proba: Any = None,
        labels: Any = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> DiversityAccuracyDisplay:
        """Place sampled functions in the plane of a reference solution and plot.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            True labels: column indices, or labels listed in ``labels``.
        reference_proba : array-like of shape (n_samples, n_classes)
            Probabilities of the reference solution.
        proba : array-like of shape (n_functions, n_samples, n_classes) or dict of them
            The functions to place, by method name.
        independent_proba : array-like of shape (n_runs, n_samples, n_classes), default=None
            Other independent solutions (red stars).
        labels : array-like of shape (n_classes,), default=None
            Label of each probability column.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : DiversityAccuracyDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.

        Raises
        ------
        ValueError
            On mismatched shapes or unknown labels.
        """
        reference = np.asarray(reference_proba, dtype=np.float64)
        if reference.ndim != 2:
            raise ValueError(
                f"reference_proba must have shape (n_samples, n_classes), got {reference.shape}."
            )
        n_samples, n_classes = reference.shape
        classes = np.arange(n_classes) if labels is None else np.asarray(labels)
        if len(classes) != n_classes:
            raise ValueError(f"labels has {len(classes)} entries for {n_classes} columns.")
        y = encode_labels(y_true, classes)
        if y.shape != (n_samples,):
            raise ValueError(f"y_true must have shape ({n_samples},), got {y.shape}.")
        ref_labels = reference.argmax(axis=1)
        accuracy, diversity = {}, {}
        for name, value in as_mapping(proba, "samples").items():
            value = np.asarray(value, dtype=np.float64)
            if value.ndim == 2:
                value = value[None]
            if value.shape[1:] != reference.shape:
                raise ValueError(
                    f"proba[{name!r}] must have shape (n_functions, {n_samples}, {n_classes}), "
                    f"got {value.shape}."
                )
            accuracy[name], diversity[name] = _accuracy_and_diversity(value, y, ref_labels)
        ind_acc = ind_div = None
        if independent_proba is not None:
            ind = np.asarray(independent_proba, dtype=np.float64)
            if ind.ndim != 3 or ind.shape[1:] != reference.shape:
                raise ValueError(
                    f"independent_proba must have shape (n_runs, {n_samples}, {n_classes}), "
                    f"got {ind.shape}."
                )
            ind_acc, ind_div = _accuracy_and_diversity(ind, y, ref_labels)
        display = cls(
            accuracy, diversity, float(np.mean(ref_labels == y)), n_classes,
            independent_accuracy=ind_acc, independent_diversity=ind_div,
        )
        return display.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        reference: Any,
        X: Any,
        y: Any,
        samples: Any,
        *,
        reference_member: int = 0,
        ax: Any = None,
        **kwargs: Any,
    ) -> DiversityAccuracyDisplay:
        """Use member ``reference_member`` of an ensemble as the reference and plot.

        Parameters
        ----------
        reference : fitted estimator
            Its member ``reference_member`` is the reference solution; its other
            members are the independent solutions.
        X, y : array-like
            Evaluation rows and labels.
        samples : fitted estimator or dict of str to fitted estimator
            Estimators whose ``predict_member_proba(X)`` functions are placed
            (posterior samples of SWAG, dropout or subspace samplers), by name.
        reference_member : int, default=0
            Index of the reference member.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : DiversityAccuracyDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        members = member_proba(reference, X, "reference")
        if isinstance(reference_member, bool) or not isinstance(reference_member, int) \
                or not -len(members) <= reference_member < len(members):
            raise ValueError(
                f"reference_member must be a member index in [0, {len(members) - 1}], got "
                f"{reference_member!r}."
            )
        reference_member %= len(members)
        others = np.delete(members, reference_member, axis=0)
        functions = {name: member_proba(est, X, f"samples[{name!r}]")
                     for name, est in as_mapping(samples, "samples").items()}
        return cls.from_predictions(
            y, members[reference_member], functions,
            independent_proba=others if len(others) else None,
            labels=reference.classes_, ax=ax, **kwargs,
        )

    def plot(self, ax: Any = None, **kwargs: Any) -> DiversityAccuracyDisplay:
        """Draw the functions, the stars and the two reference curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to ``Axes.scatter`` for the functions.

        Returns
        -------
        display : DiversityAccuracyDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        ax = axes(ax)
        for name in self.accuracy:
            ax.scatter(self.accuracy[name], self.diversity[name], s=12, alpha=0.7,
                       label=name, **kwargs)
        ax.plot(self.curve_accuracy, self.lower, "k--", lw=1, label="perturbed reference")
        ax.plot(self.curve_accuracy, self.upper, "k:", lw=1, label="random average case")
        if self.independent_accuracy is not None:
            ax.plot(self.independent_accuracy, self.independent_diversity, "r*", ms=12,
                    label="independent solutions")
        ax.plot([self.reference_accuracy], [0.0], "g*", ms=14, label="reference")
        ax.set_xlabel("accuracy")
        ax.set_ylabel("prediction diversity\nfraction of labels changed / (1 - accuracy)")
        ax.legend(fontsize="small")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self
