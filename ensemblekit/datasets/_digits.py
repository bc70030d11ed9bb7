"""scikit-learn's bundled digits as a tiny image dataset."""

from __future__ import annotations

from typing import Literal, overload

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import Bunch

__all__ = ["load_digits_images"]


@overload
def load_digits_images(return_X_y: Literal[False] = ...) -> Bunch: ...
@overload
def load_digits_images(return_X_y: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...


def load_digits_images(return_X_y: bool = False) -> Bunch | tuple[np.ndarray, np.ndarray]:
    """Load scikit-learn's handwritten digits as ``(N, 1, 8, 8)`` float32 images.

    The 1,797 8x8 grey-scale digits of :func:`sklearn.datasets.load_digits`, in the same
    order, laid out as single-channel images for the convolutional networks
    (``SmallCNN(in_channels=1, input_size=8)``). Pixel counts, integers in 0-16, are divided
    by 16, so values lie in [0, 1]. The data ship with scikit-learn, so this needs no
    download: it is the default for quick runs and examples.

    Parameters
    ----------
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``data`` (float32, shape ``(1797, 1, 8, 8)``), ``target`` (int64, shape
        ``(1797,)``) and ``target_names`` (``arange(10)``).
    (data, target) : tuple of ndarray
        If ``return_X_y`` is True.

    Examples
    --------
    >>> X, y = load_digits_images(return_X_y=True)
    >>> X.shape, X.dtype, float(X.min()), float(X.max())
    ((1797, 1, 8, 8), dtype('float32'), 0.0, 1.0)
    >>> y[:5]
    array([0, 1, 2, 3, 4])
    """
    digits = load_digits()
    data = (digits.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    target = digits.target.astype(np.int64)
    if return_X_y:
        return data, target
    return Bunch(data=data, target=target, target_names=np.arange(10))
