"""Training trajectories in weight space and function space."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sklearn.utils import Bunch

from . import _access
from ._evaluate import evaluate_weights, log_softmax


def checkpoint_proba(estimator: Any, X: Any) -> np.ndarray:
    """Class probabilities of every recorded checkpoint of every trained network.

    Each checkpoint is evaluated with the BatchNorm statistics recorded with it
    (``checkpoint_buffers_``); checkpoints are evaluated together in grouped passes.

    Parameters
    ----------
    estimator : fitted estimator
        Fitted with ``checkpoint_epochs`` (it has ``checkpoints_`` and
        ``checkpoint_epochs_``).
    X : array-like of shape (n_samples, ...)
        Inputs shaped like the training inputs.

    Returns
    -------
    proba : ndarray of shape (n_members, n_checkpoints, n_samples, n_classes)
        Softmax outputs, float64; columns follow ``estimator.classes_``.

    Raises
    ------
    ValueError
        If the estimator was fitted without checkpoints or ``X`` is misshaped.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from ensemblekit import DeepEnsembleClassifier
    >>> from ensemblekit.landscape import checkpoint_proba
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=3, checkpoint_epochs="all",
    ...                              random_state=0).fit(X, y)
    >>> checkpoint_proba(clf, X[:5]).shape
    (2, 3, 5, 3)
    """
    checkpoints, _ = _access.check_checkpoints(estimator)
    X = _access.check_X(estimator, X)
    n_members, n_checkpoints, n_params = checkpoints.shape
    flat = checkpoints.reshape(n_members * n_checkpoints, n_params)
    buffers = getattr(estimator, "checkpoint_buffers_", None)
    if buffers is not None:
        buffers = buffers.reshape(n_members * n_checkpoints, -1)
    logits = evaluate_weights(
        _access.template(estimator), flat, X, buffers=buffers, X_refresh=X,
        batch_size=_access.batch_size(estimator), group_size=_access.group_size(estimator),
    )
    proba = np.exp(log_softmax(logits, _access.output_kind(estimator)))
    return proba.reshape(n_members, n_checkpoints, *proba.shape[1:])


def _cosine_matrix(weights: Any, chunk: int = 1 << 18) -> np.ndarray:
    n = weights.shape[0]
    gram = np.zeros((n, n))
    # Column chunks keep memory bounded for memory-mapped checkpoints.
    for start in range(0, weights.shape[1], chunk):
        block = np.asarray(weights[:, start : start + chunk], dtype=np.float64)
        gram += block @ block.T
    norms = np.sqrt(np.diag(gram))
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = gram / np.outer(norms, norms)
    return np.clip(cosine, -1.0, 1.0)


def _disagreement_matrix(labels: np.ndarray) -> np.ndarray:
    out = np.zeros((len(labels), len(labels)))
    for i in range(len(labels)):
        out[i] = np.mean(labels[i] != labels, axis=1)
    return out


def similarity_matrices(estimator: Any, X: Any) -> Bunch:
    """Weight-space cosine and function-space disagreement between all checkpoints.

    Rows and columns run over the ``K = n_members * n_checkpoints`` recorded
    checkpoints, member by member (all checkpoints of member 0, then member 1, ...).

    - cosine similarity of the flattened weights *and* biases,
      :math:`\\theta_i^\\top \\theta_j / (\\lVert\\theta_i\\rVert \\lVert\\theta_j\\rVert)`
      (Fort, Hu & Lakshminarayanan 2019, section 3; BatchNorm statistics excluded);
    - disagreement, the fraction of rows of ``X`` whose top-1 labels differ.

    Parameters
    ----------
    estimator : fitted estimator or array-like of shape (n_members, n_checkpoints, n_params)
        An estimator fitted with ``checkpoint_epochs``, or the weight vectors
        themselves (a 2-D array is one trajectory).
    X : array-like of shape (n_samples, ...) or (n_members, n_checkpoints, n_samples, n_classes)
        Inputs for an estimator; for weight arrays, the probabilities of each
        weight vector (e.g. from :func:`checkpoint_proba`).

    Returns
    -------
    result : sklearn.utils.Bunch
        ``cosine`` and ``disagreement``, each of shape (K, K); ``member`` and
        ``epoch`` of shape (K,): the member and the zero-based epoch of each row
        (the checkpoint index when arrays are given); ``checkpoint`` (K,), the
        position of each row in its trajectory; ``proba`` of shape
        (n_members, n_checkpoints, n_samples, n_classes).

    Raises
    ------
    ValueError
        Estimator without checkpoints, or arrays whose shapes do not match.

    Examples
    --------
    >>> import numpy as np
    >>> weights = np.array([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 2.0]]])
    >>> proba = np.array([[[[0.9, 0.1]], [[0.8, 0.2]]], [[[0.2, 0.8]], [[0.3, 0.7]]]])
    >>> result = similarity_matrices(weights, proba)
    >>> result.cosine.round(3)
    array([[1.   , 0.707, 0.   , 0.   ],
           [0.707, 1.   , 0.707, 0.707],
           [0.   , 0.707, 1.   , 1.   ],
           [0.   , 0.707, 1.   , 1.   ]])
    >>> result.disagreement
    array([[0., 0., 1., 1.],
           [0., 0., 1., 1.],
           [1., 1., 0., 0.],
           [1., 1., 0., 0.]])
    >>> result.member.tolist(), result.epoch.tolist()
    ([0, 0, 1, 1], [0, 1, 0, 1])
    """
    if hasattr(estimator, "estimators_") or hasattr(estimator, "get_params"):
        weights, epochs = _access.check_checkpoints(estimator)
        proba = checkpoint_proba(estimator, X)
    else:
        weights = np.asarray(estimator, dtype=np.float64)
        if weights.ndim == 2:
            weights = weights[None]
        proba = np.asarray(X, dtype=np.float64)
        if proba.ndim == 3:
            proba = proba[None]
        if weights.ndim != 3 or proba.ndim != 4:
            raise ValueError(
                "weights must have shape (n_members, n_checkpoints, n_params) and the "
                "probabilities (n_members, n_checkpoints, n_samples, n_classes); got "
                f"{np.shape(estimator)} and {np.shape(X)}."
            )
        if weights.shape[:2] != proba.shape[:2]:
            raise ValueError(
                f"weights cover {weights.shape[:2]} (members, checkpoints) but the "
                f"probabilities cover {proba.shape[:2]}."
            )
        epochs = np.arange(weights.shape[1])
    n_members, n_checkpoints = weights.shape[:2]
    k = n_members * n_checkpoints
    labels = proba.reshape(k, *proba.shape[2:]).argmax(axis=-1)
    return Bunch(
        cosine=_cosine_matrix(weights.reshape(k, -1)),
        disagreement=_disagreement_matrix(labels),
        member=np.repeat(np.arange(n_members), n_checkpoints),
        epoch=np.tile(np.asarray(epochs, dtype=np.int64), n_members),
        checkpoint=np.tile(np.arange(n_checkpoints), n_members),
        proba=proba,
    )


def function_space_embedding(
    proba: Any,
    method: Literal["tsne", "pca"] = "tsne",
    *,
    n_components: int = 2,
    perplexity: float | None = None,
    random_state: Any = None,
) -> np.ndarray:
    """Embed functions, each given by its softmax outputs, in a plane.

    Each function's probabilities on the evaluation rows are flattened into one
    vector of ``n_samples * n_classes`` values, as Fort, Hu & Lakshminarayanan (2019)
    do for their t-SNE of trajectories, and the vectors are embedded with
    :class:`sklearn.manifold.TSNE` (default settings) or :class:`sklearn.decomposition.PCA`.

    Parameters
    ----------
    proba : array-like of shape (..., n_samples, n_classes)
        Probabilities of each function; all leading axes index functions (for
        example ``(n_members, n_checkpoints)`` from :func:`checkpoint_proba`).
    method : {"tsne", "pca"}, default="tsne"
        The embedding.
    n_components : int, default=2
        Output dimension.
    perplexity : float or None, default=None
        The t-SNE perplexity; ``None`` takes scikit-learn's 30, lowered to
        ``(n_functions - 1) / 3`` when there are fewer than 91 functions (t-SNE needs
        it below the number of points).
    random_state : int, RandomState instance or None, default=None
        Passed to the embedding.

    Returns
    -------
    embedding : ndarray of shape (..., n_components)
        The leading axes of ``proba`` kept.

    Raises
    ------
    ValueError
        Unknown method, fewer than 2 functions, or ``proba`` with fewer than 3 axes.

    Examples
    --------
    >>> import numpy as np
    >>> proba = np.random.default_rng(0).dirichlet([1, 1, 1], size=(2, 4, 10))
    >>> function_space_embedding(proba, "pca").shape
    (2, 4, 2)
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be one of ['tsne', 'pca'], got {method!r}.")
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim < 3:
        raise ValueError(
            "proba must have shape (..., n_samples, n_classes) with at least one axis of "
            f"functions, got {proba.shape}."
        )
    lead = proba.shape[:-2]
    rows = proba.reshape(int(np.prod(lead)), -1)
    if len(rows) < 2:
        raise ValueError(f"need at least 2 functions to embed, got {len(rows)}.")
    if method == "pca":
        if n_components > min(rows.shape):
            raise ValueError(
                f"n_components={n_components} exceeds min(n_functions, n_values) = "
                f"{min(rows.shape)}."
            )
        points = PCA(n_components=n_components, random_state=random_state).fit_transform(rows)
    else:
        if perplexity is None:
            perplexity = min(30.0, max((len(rows) - 1) / 3.0, 1.0))
        if not 0 < perplexity < len(rows):
            raise ValueError(
                f"perplexity={perplexity} must lie in (0, n_functions={len(rows)})."
            )
        points = TSNE(n_components=n_components, perplexity=perplexity,
                      random_state=random_state).fit_transform(rows)
    return points.reshape(*lead, n_components)
