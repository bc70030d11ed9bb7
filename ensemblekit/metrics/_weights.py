"""Similarity and distance between networks in weight space."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.spatial.distance import pdist, squareform
from torch import nn

from ._validation import to_numpy

#: A network's weights: a module, a state dict, or an already flattened vector.
WeightsLike = nn.Module | Mapping[str, Any] | np.ndarray | torch.Tensor | Sequence[float]


def _is_floating(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point()
    return np.issubdtype(np.asarray(value).dtype, np.floating)


def _named_weights(weights: Any, include_buffers: bool, name: str) -> dict[str, np.ndarray] | None:
    """Floating-point entries by name, or None for a flat vector."""
    if isinstance(weights, nn.Module):
        items = weights.state_dict().items() if include_buffers else weights.named_parameters()
    elif isinstance(weights, Mapping):
        items = weights.items()
    else:
        return None
    named = {str(key): to_numpy(value) for key, value in items if _is_floating(value)}
    if not named:
        raise ValueError(f"{name} holds no floating-point parameters.")
    return named


def _flat_vector(weights: Any, name: str) -> np.ndarray:
    arr = to_numpy(weights)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{name} must be an nn.Module, a state dict or a non-empty 1-D vector of weights, "
            f"got an array of shape {arr.shape}."
        )
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    return arr.astype(np.float64)


def _stack(weights: Sequence[Any], names: Sequence[str], include_buffers: bool) -> np.ndarray:
    """Flatten every network in the same order of entries; shape (n_networks, n_weights)."""
    named = [_named_weights(w, include_buffers, n) for w, n in zip(weights, names)]
    reference = next((i for i, entries in enumerate(named) if entries is not None), None)
    rows = []
    for entries, w, name in zip(named, weights, names):
        if entries is None:
            rows.append(_flat_vector(w, name))
            continue
        ref_entries, ref_name = named[reference], names[reference]
        if entries.keys() != ref_entries.keys():
            only_here = sorted(set(entries) - set(ref_entries))
            only_there = sorted(set(ref_entries) - set(entries))
            raise ValueError(
                f"{name} and {ref_name} have different parameter names: only in {name}: "
                f"{only_here[:5]}, only in {ref_name}: {only_there[:5]}. A state dict keeps "
                "every floating-point entry, buffers included; compare modules with "
                "include_buffers=True, or filter the state dict."
            )
        for key, value in ref_entries.items():
            if entries[key].shape != value.shape:
                raise ValueError(
                    f"Parameter {key!r} has shape {entries[key].shape} in {name} but "
                    f"{value.shape} in {ref_name}."
                )
        # Flatten in the reference's order so that entries line up by name.
        rows.append(
            np.concatenate([entries[key].astype(np.float64).ravel() for key in ref_entries])
        )
    sizes = {row.size for row in rows}
    if len(sizes) > 1:
        raise ValueError(
            "The networks have different numbers of weights: "
            + ", ".join(f"{n}: {row.size}" for n, row in zip(names, rows))
            + "."
        )
    stacked = np.stack(rows)
    if not np.all(np.isfinite(stacked)):
        raise ValueError("The weights contain NaN or infinite values.")
    return stacked


def _cosine_matrix(stacked: np.ndarray, names: Sequence[str]) -> np.ndarray:
    gram = stacked @ stacked.T
    squared_norms = np.diag(gram).copy()
    if np.any(squared_norms == 0):
        zero = names[int(np.argmax(squared_norms == 0))]
        raise ValueError(
            f"{zero} has all weights equal to zero; its cosine similarity is undefined."
        )
    # sqrt(|a|^2 |b|^2) rather than |a| |b|: identical vectors then give exactly 1.
    cosine = gram / np.sqrt(np.outer(squared_norms, squared_norms))
    # BLAS need not return a bitwise symmetric product.
    return np.clip((cosine + cosine.T) / 2.0, -1.0, 1.0)


def weight_cosine_similarity(
    a: WeightsLike, b: WeightsLike, *, include_buffers: bool = False
) -> float:
    r"""Cosine similarity of two networks' flattened weight vectors.

    .. math:: \cos(\theta_a, \theta_b) = \frac{\theta_a^\top \theta_b}
              {\lVert\theta_a\rVert_2 \, \lVert\theta_b\rVert_2}

    where :math:`\theta` concatenates *all* floating-point weights **and biases** of a
    network, as in Fort, Hu & Lakshminarayanan (2019). Integer entries (such as BatchNorm's
    ``num_batches_tracked``) never count. Entries are matched by name, so their order does not
    matter.

    Parameters
    ----------
    a, b : nn.Module, mapping of str to tensor or array, or 1-D array-like
        Each network as

        - an ``nn.Module``: its parameters (``named_parameters()``), plus its floating-point
          buffers such as BatchNorm running statistics if ``include_buffers=True`` (then
          exactly the floating-point entries of its ``state_dict()``);
        - a state dict: every floating-point entry as it stands (a state dict cannot tell
          parameters from buffers, so ``include_buffers`` does not apply);
        - a flat vector, matched position by position (a module or state dict compared with
          it is flattened in its own order of entries).
    include_buffers : bool, default=False
        Include the floating-point buffers of modules.

    Returns
    -------
    float
        Cosine similarity in [-1, 1].

    Raises
    ------
    ValueError
        If the two sets of weights have different names, shapes or sizes, or a vector is all
        zeros.

    Examples
    --------
    >>> import torch
    >>> from ensemblekit.metrics import weight_cosine_similarity
    >>> net = torch.nn.Linear(3, 2)
    >>> weight_cosine_similarity(net, net.state_dict())
    1.0
    >>> weight_cosine_similarity([1.0, 0.0], [1.0, 1.0])  # 1 / sqrt(2)
    0.707...
    """
    stacked = _stack([a, b], ["a", "b"], include_buffers)
    return float(_cosine_matrix(stacked, ["a", "b"])[0, 1])


def weight_distance(a: WeightsLike, b: WeightsLike, *, include_buffers: bool = False) -> float:
    r"""Euclidean distance between two networks' flattened weight vectors.

    .. math:: \lVert \theta_a - \theta_b \rVert_2

    The weights are gathered as in :func:`weight_cosine_similarity`.

    Parameters
    ----------
    a, b : nn.Module, mapping of str to tensor or array, or 1-D array-like
        The two networks; see :func:`weight_cosine_similarity`.
    include_buffers : bool, default=False
        Include the floating-point buffers of modules.

    Returns
    -------
    float
        Distance, at least 0.

    Examples
    --------
    >>> from ensemblekit.metrics import weight_distance
    >>> weight_distance([0.0, 0.0], [3.0, 4.0])
    5.0
    """
    stacked = _stack([a, b], ["a", "b"], include_buffers)
    return float(np.linalg.norm(stacked[0] - stacked[1]))


def _matrix_input(
    weights: Iterable[WeightsLike] | np.ndarray | torch.Tensor,
) -> tuple[list[Any], list[str]]:
    if isinstance(weights, (np.ndarray, torch.Tensor)):
        arr = to_numpy(weights)
        if arr.ndim != 2:
            raise ValueError(
                "An array of weights must be 2-D, one flattened network per row, "
                f"got shape {arr.shape}."
            )
        items: list[Any] = list(arr)
    elif isinstance(weights, (nn.Module, Mapping)) or not isinstance(weights, Iterable):
        raise ValueError(
            "weights must be a list of networks (modules, state dicts or flat vectors) "
            f"or a 2-D array with one network per row, got {type(weights).__name__}."
        )
    else:
        items = list(weights)
    if not items:
        raise ValueError("weights is empty.")
    return items, [f"weights[{i}]" for i in range(len(items))]


def weight_cosine_similarity_matrix(
    weights: Iterable[WeightsLike] | np.ndarray | torch.Tensor, *, include_buffers: bool = False
) -> np.ndarray:
    """Cosine similarity between every pair in a list of networks.

    Entry ``(i, j)`` is :func:`weight_cosine_similarity` of ``weights[i]`` and
    ``weights[j]``; the matrix is symmetric with ones on the diagonal. Use it for the
    checkpoint-by-checkpoint matrix of a training trajectory or between independent runs.

    Parameters
    ----------
    weights : list of nn.Module, state dict or 1-D array-like, or 2-D array
        The networks, in any mix of the forms accepted by :func:`weight_cosine_similarity`,
        or one flattened network per row of a 2-D array; all must have the same parameter
        names and shapes.
    include_buffers : bool, default=False
        Include the floating-point buffers of modules.

    Returns
    -------
    ndarray of shape (n_networks, n_networks)
        Cosine similarities in [-1, 1].

    Examples
    --------
    >>> from ensemblekit.metrics import weight_cosine_similarity_matrix
    >>> weight_cosine_similarity_matrix([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    array([[1., 0., 1.],
           [0., 1., 0.],
           [1., 0., 1.]])
    """
    items, names = _matrix_input(weights)
    stacked = _stack(items, names, include_buffers)
    return _cosine_matrix(stacked, names)


def weight_distance_matrix(
    weights: Iterable[WeightsLike] | np.ndarray | torch.Tensor, *, include_buffers: bool = False
) -> np.ndarray:
    """Euclidean distance between every pair in a list of networks.

    Entry ``(i, j)`` is :func:`weight_distance` of ``weights[i]`` and ``weights[j]``; the
    matrix is symmetric with a zero diagonal. Differences are formed explicitly rather than
    from inner products, so close checkpoints keep their precision.

    Parameters
    ----------
    weights : list of nn.Module, state dict or 1-D array-like, or 2-D array
        The networks; see :func:`weight_cosine_similarity_matrix`.
    include_buffers : bool, default=False
        Include the floating-point buffers of modules.

    Returns
    -------
    ndarray of shape (n_networks, n_networks)
        Distances, at least 0.

    Examples
    --------
    >>> from ensemblekit.metrics import weight_distance_matrix
    >>> weight_distance_matrix([[0.0, 0.0], [3.0, 4.0]])
    array([[0., 5.],
           [5., 0.]])
    """
    items, names = _matrix_input(weights)
    stacked = _stack(items, names, include_buffers)
    return squareform(pdist(stacked, metric="euclidean"))
