"""Displays of training trajectories and loss landscapes."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..landscape import (
    bezier_path,
    checkpoint_proba,
    function_space_embedding,
    linear_path,
    plane,
    similarity_matrices,
)
from ._base import axes


class SimilarityMatrixDisplay:
    """Heat maps of weight-space cosine and prediction disagreement between checkpoints.

    The two panels of Fort, Hu & Lakshminarayanan (2019): cosine similarity of the
    flattened weights and biases, and the fraction of points whose top-1 labels
    differ, over all recorded checkpoints of all members (``imshow`` with the
    ``bwr`` colour map and ``origin="lower"``, as in the paper). Thin lines separate
    the members.

    Parameters
    ----------
    cosine : ndarray of shape (K, K)
        Weight cosine similarities.
    disagreement : ndarray of shape (K, K)
        Prediction disagreements.
    member : ndarray of shape (K,), default=None
        Member of each row (lines are drawn between members).
    epoch : ndarray of shape (K,), default=None
        Epoch of each row.

    Attributes
    ----------
    images_ : list of matplotlib.image.AxesImage
        The two heat maps.
    ax_ : ndarray of 2 matplotlib Axes
        Cosine panel, then disagreement panel.
    figure_ : matplotlib.figure.Figure
        The figure.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.plotting import SimilarityMatrixDisplay
    >>> display = SimilarityMatrixDisplay(np.eye(3), 1 - np.eye(3)).plot()
    >>> display.ax_.shape
    (2,)
    """

    def __init__(self, cosine: Any, disagreement: Any, *, member: Any = None,
                 epoch: Any = None) -> None:
        self.cosine = np.asarray(cosine, dtype=np.float64)
        self.disagreement = np.asarray(disagreement, dtype=np.float64)
        self.member = None if member is None else np.asarray(member)
        self.epoch = None if epoch is None else np.asarray(epoch)

    @classmethod
    def from_estimator(cls, estimator: Any, X: Any, *, ax: Any = None,
                       **kwargs: Any) -> SimilarityMatrixDisplay:
        """Compute the matrices of an estimator fitted with ``checkpoint_epochs`` and plot.

        Parameters
        ----------
        estimator : fitted estimator
            Fitted with ``checkpoint_epochs``.
        X : array-like of shape (n_samples, ...)
            Rows on which disagreement is measured.
        ax : sequence of 2 matplotlib Axes, default=None
            Where to draw; new axes when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : SimilarityMatrixDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        result = similarity_matrices(estimator, X)
        display = cls(result.cosine, result.disagreement, member=result.member,
                      epoch=result.epoch)
        return display.plot(ax=ax, **kwargs)

    def plot(self, ax: Any = None, *, cmap: str = "bwr", colorbar: bool = True,
             **kwargs: Any) -> SimilarityMatrixDisplay:
        """Draw the two heat maps.

        Parameters
        ----------
        ax : sequence of 2 matplotlib Axes, default=None
            Where to draw; a new figure with two panels when None.
        cmap : str, default="bwr"
            Colour map of both panels.
        colorbar : bool, default=True
            Add a colour bar to each panel.
        **kwargs : dict
            Passed to ``Axes.imshow``.

        Returns
        -------
        display : SimilarityMatrixDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        ax = axes(ax, 2, figsize=(10, 4.2))
        self.images_ = []
        panels = (
            (self.cosine, "Weight cosine similarity", -1.0, 1.0),
            (self.disagreement, "Prediction disagreement", 0.0, 1.0),
        )
        for axis, (matrix, title, low, high) in zip(ax, panels):
            options = {"cmap": cmap, "origin": "lower", "vmin": low, "vmax": high, **kwargs}
            image = axis.imshow(matrix, **options)
            self.images_.append(image)
            axis.set_title(title)
            axis.set_xlabel("checkpoint")
            axis.set_ylabel("checkpoint")
            if self.member is not None:
                for edge in np.flatnonzero(np.diff(self.member)) + 0.5:
                    axis.axhline(edge, color="k", lw=0.6)
                    axis.axvline(edge, color="k", lw=0.6)
            if colorbar:
                axis.figure.colorbar(image, ax=axis)
        self.ax_ = ax
        self.figure_ = ax[0].figure
        return self


class FunctionSpaceDisplay:
    """Trajectories (and samples) of functions embedded in a plane with t-SNE or PCA.

    Each function is its softmax output on the evaluation rows; all functions are
    embedded together (:func:`ensemblekit.landscape.function_space_embedding`).
    Trajectories are drawn as lines of circles with their first point starred, and
    sample sets as squares, as in the paper's t-SNE figures.

    Parameters
    ----------
    trajectories : ndarray of shape (n_members, n_checkpoints, 2)
        Embedded trajectories.
    samples : dict of str to ndarray of shape (n_functions, 2), default=None
        Embedded sample sets by name.

    Attributes
    ----------
    lines_ : list of matplotlib Line2D
        One per trajectory.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.plotting import FunctionSpaceDisplay
    >>> rng = np.random.default_rng(0)
    >>> proba = rng.dirichlet(np.ones(3), size=(2, 5, 8))   # 2 runs x 5 checkpoints
    >>> display = FunctionSpaceDisplay.from_predictions(proba, method="pca")
    >>> display.trajectories.shape                          # 2-d point of each function
    (2, 5, 2)
    """

    def __init__(self, trajectories: Any, samples: dict[str, Any] | None = None) -> None:
        self.trajectories = np.asarray(trajectories, dtype=np.float64)
        self.samples = {k: np.asarray(v, dtype=np.float64) for k, v in (samples or {}).items()}

    @classmethod
    def from_predictions(
        cls,
        trajectory_proba: Any,
        samples: dict[str, Any] | None = None,
        *,
        method: Literal["tsne", "pca"] = "tsne",
        random_state: Any = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> FunctionSpaceDisplay:
        """Embed probabilities jointly and plot.

        Parameters
        ----------
        trajectory_proba : array-like of shape (n_members, n_checkpoints, n_samples, n_classes)
            Probabilities along each trajectory (e.g. from
            :func:`ensemblekit.landscape.checkpoint_proba`).
        samples : dict of str to array-like of shape (n_functions, n_samples, n_classes)
            Other functions on the same rows (e.g. posterior samples), by name.
        method : {"tsne", "pca"}, default="tsne"
            The embedding.
        random_state : int, RandomState instance or None, default=None
            Passed to the embedding.
        ax : matplotlib Axes, default=None
            Where to draw.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : FunctionSpaceDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.

        Raises
        ------
        ValueError
            If the sample sets are not on the trajectories' rows and classes.
        """
        traj = np.asarray(trajectory_proba, dtype=np.float64)
        if traj.ndim != 4:
            raise ValueError(
                "trajectory_proba must have shape (n_members, n_checkpoints, n_samples, "
                f"n_classes), got {traj.shape}."
            )
        sets = {k: np.asarray(v, dtype=np.float64) for k, v in (samples or {}).items()}
        for name, value in sets.items():
            if value.ndim != 3 or value.shape[1:] != traj.shape[2:]:
                raise ValueError(
                    f"samples[{name!r}] must have shape (n_functions, {traj.shape[2]}, "
                    f"{traj.shape[3]}) to match the trajectories, got {value.shape}."
                )
        m, k = traj.shape[:2]
        rows = [traj.reshape(m * k, *traj.shape[2:]), *sets.values()]
        points = function_space_embedding(np.concatenate(rows), method,
                                          random_state=random_state)
        embedded = {}
        offset = m * k
        for name, value in sets.items():
            embedded[name] = points[offset : offset + len(value)]
            offset += len(value)
        display = cls(points[: m * k].reshape(m, k, 2), embedded)
        return display.plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        X: Any,
        samples: dict[str, Any] | None = None,
        *,
        method: Literal["tsne", "pca"] = "tsne",
        random_state: Any = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> FunctionSpaceDisplay:
        """Embed an estimator's recorded trajectories (and other estimators' functions).

        Parameters
        ----------
        estimator : fitted estimator
            Fitted with ``checkpoint_epochs``.
        X : array-like of shape (n_samples, ...)
            Evaluation rows.
        samples : dict of str to fitted estimator, default=None
            Estimators whose ``predict_member_proba(X)`` functions are embedded too
            (e.g. SWAG or subspace samplers), by name.
        method : {"tsne", "pca"}, default="tsne"
            As in :meth:`from_predictions`.
        random_state : int, RandomState instance or None, default=None
            As in :meth:`from_predictions`.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : FunctionSpaceDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        from ._base import member_proba

        traj = checkpoint_proba(estimator, X)
        sets = {name: member_proba(est, X, f"samples[{name!r}]")
                for name, est in (samples or {}).items()}
        return cls.from_predictions(traj, sets, method=method, random_state=random_state,
                                    ax=ax, **kwargs)

    def plot(self, ax: Any = None, **kwargs: Any) -> FunctionSpaceDisplay:
        """Draw trajectories (circles, first point starred) and sample sets (squares).

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw.
        **kwargs : dict
            Passed to ``Axes.plot`` for the trajectories.

        Returns
        -------
        display : FunctionSpaceDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        ax = axes(ax)
        self.lines_ = []
        for m, path in enumerate(self.trajectories):
            (line,) = ax.plot(path[:, 0], path[:, 1], "o-", ms=4, lw=0.8,
                              label=f"trajectory {m}", **kwargs)
            ax.plot(path[0, 0], path[0, 1], "*", ms=14, color=line.get_color(),
                    markeredgecolor="k")
            self.lines_.append(line)
        for name, points in self.samples.items():
            ax.plot(points[:, 0], points[:, 1], "s", ms=4, alpha=0.7, label=name)
        ax.set_xlabel("embedding 1")
        ax.set_ylabel("embedding 2")
        ax.legend(fontsize="small")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self


class LossLandscapeDisplay:
    """Loss (and accuracy) along a path or over a plane in weight space.

    Parameters
    ----------
    result : sklearn.utils.Bunch
        The output of :func:`ensemblekit.landscape.linear_path`,
        :func:`~ensemblekit.landscape.bezier_path` (``kind="path"``) or
        :func:`~ensemblekit.landscape.plane` (``kind="plane"``).
    kind : {"path", "plane"}
        Which one it is.
    label : str, default=None
        Legend entry of a path.

    Attributes
    ----------
    t, loss, accuracy, disagreement_start, disagreement_end : ndarray
        For a path.
    xx, yy, loss, accuracy, anchor_coords : ndarray
        For a plane.
    ax_ : matplotlib Axes (a pair for a path: loss, then disagreement)
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit.plotting import LossLandscapeDisplay
    >>> t = np.linspace(0, 1, 5)
    >>> path = {"t": t, "loss": 1 + 4 * t * (1 - t), "accuracy": 1 - t * (1 - t),
    ...         "disagreement_start": t / 2, "disagreement_end": (1 - t) / 2}
    >>> display = LossLandscapeDisplay(path, "path", label="line").plot()
    >>> len(display.ax_)                                    # loss, then disagreement
    2
    """

    def __init__(self, result: Any, kind: Literal["path", "plane"], *,
                 label: str | None = None) -> None:
        if kind not in ("path", "plane"):
            raise ValueError(f"kind must be one of ['path', 'plane'], got {kind!r}.")
        self.kind = kind
        self.label = label
        fields = (("t", "loss", "accuracy", "disagreement_start", "disagreement_end")
                  if kind == "path" else
                  ("xx", "yy", "loss", "accuracy", "anchor_coords", "anchor_loss",
                   "anchor_accuracy"))
        for name in fields:
            if name not in result:
                raise ValueError(f"a {kind} result needs {name!r}; got keys {sorted(result)}.")
            setattr(self, name, np.asarray(result[name]))

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        kind: Literal["linear", "bezier", "plane"] = "linear",
        start: Any = 0,
        end: Any = 1,
        members: Any = (0, 1, 2),
        n_points: int = 25,
        resolution: int = 21,
        margin: float = 0.2,
        X_train: Any = None,
        y_train: Any = None,
        random_state: Any = None,
        ax: Any = None,
        **kwargs: Any,
    ) -> LossLandscapeDisplay:
        """Compute a linear path, a Bezier curve or a plane and plot it.

        Parameters
        ----------
        estimator : fitted estimator
            An ensemble whose members are the end points or anchors.
        X, y : array-like
            Evaluation rows and labels.
        kind : {"linear", "bezier", "plane"}, default="linear"
            :func:`~ensemblekit.landscape.linear_path`,
            :func:`~ensemblekit.landscape.bezier_path` or
            :func:`~ensemblekit.landscape.plane`.
        start : int, tuple or array-like, default=0
            Passed to the path functions: the first end point (a member index, a
            ``(member, checkpoint)`` pair or a flat weight vector).
        end : int, tuple or array-like, default=1
            Passed to the path functions: the second end point.
        members : sequence of 3 anchors, default=(0, 1, 2)
            Passed to :func:`~ensemblekit.landscape.plane`: its anchors.
        n_points : int, default=25
            Passed to the path functions: points along the path.
        resolution : int, default=21
            Passed to :func:`~ensemblekit.landscape.plane`: grid points per side.
        margin : float, default=0.2
            Passed to :func:`~ensemblekit.landscape.plane`: extent beyond the anchors.
        X_train : array-like, default=None
            Passed to that function: rows for BatchNorm statistics (and for training
            the Bezier curve).
        y_train : array-like, default=None
            Passed to :func:`~ensemblekit.landscape.bezier_path` only.
        random_state : int, RandomState instance or None, default=None
            Passed to :func:`~ensemblekit.landscape.bezier_path` only.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : LossLandscapeDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        if kind == "linear":
            result = linear_path(estimator, X, y, start, end, n_points, X_train=X_train)
            display = cls(result, "path", label="linear")
        elif kind == "bezier":
            result = bezier_path(estimator, X, y, start, end, n_points, X_train=X_train,
                                 y_train=y_train, random_state=random_state)
            display = cls(result, "path", label="Bezier curve")
        elif kind == "plane":
            result = plane(estimator, X, y, members, resolution, margin, X_train=X_train)
            display = cls(result, "plane")
        else:
            raise ValueError(
                f"kind must be one of ['linear', 'bezier', 'plane'], got {kind!r}."
            )
        return display.plot(ax=ax, **kwargs)

    def plot(self, ax: Any = None, *, metric: Literal["loss", "accuracy"] = "loss",
             **kwargs: Any) -> LossLandscapeDisplay:
        """Draw the path (metric and disagreement against ``t``) or the plane (contours).

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            For a path, a pair of Axes (metric, disagreement with the ends); for a
            plane, one Axes.
        metric : {"loss", "accuracy"}, default="loss"
            What is drawn.
        **kwargs : dict
            Passed to ``Axes.plot`` (path) or ``Axes.contourf`` (plane).

        Returns
        -------
        display : LossLandscapeDisplay
            The display, drawn: ``ax_`` and ``figure_`` are set.
        """
        if metric not in ("loss", "accuracy"):
            raise ValueError(f"metric must be one of ['loss', 'accuracy'], got {metric!r}.")
        values = self.loss if metric == "loss" else self.accuracy
        ylabel = "loss (cross-entropy, nats)" if metric == "loss" else "accuracy"
        if self.kind == "path":
            ax = axes(ax, 2, figsize=(10, 4))
            label = self.label or "path"
            ax[0].plot(self.t, values, "o-", label=label, **kwargs)
            ax[0].set_xlabel("t")
            ax[0].set_ylabel(ylabel)
            ax[0].legend()
            ax[1].plot(self.t, self.disagreement_start, "o-", label=f"{label}: vs start")
            ax[1].plot(self.t, self.disagreement_end, "s--", label=f"{label}: vs end")
            ax[1].set_xlabel("t")
            ax[1].set_ylabel("prediction disagreement")
            ax[1].legend()
            self.ax_ = ax
            self.figure_ = ax[0].figure
            return self
        ax = axes(ax)
        options = {"levels": 20, "cmap": "viridis_r" if metric == "loss" else "viridis",
                   **kwargs}
        self.contour_ = ax.contourf(self.xx, self.yy, values, **options)
        ax.figure.colorbar(self.contour_, ax=ax, label=ylabel)
        ax.plot(self.anchor_coords[:, 0], self.anchor_coords[:, 1], "r*", ms=14,
                markeredgecolor="k")
        for i, (x, y) in enumerate(self.anchor_coords):
            ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(6, 6))
        ax.set_xlabel("weight-space distance along u")
        ax.set_ylabel("weight-space distance along v")
        ax.set_aspect("equal")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self


