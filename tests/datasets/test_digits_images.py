"""Digits as (N, 1, 8, 8) images."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from ensemblekit.datasets import load_digits_images


def test_matches_sklearn_digits_scaled_by_16():
    X, y = load_digits_images(return_X_y=True)
    ref = load_digits()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, ref.target)
    np.testing.assert_allclose(X[:, 0], ref.images / 16.0, rtol=0, atol=1e-7)
    assert X.min() == 0.0 and X.max() == 1.0


def test_bunch():
    data = load_digits_images()
    assert data.data.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(data.target_names, np.arange(10))
    X, y = load_digits_images(return_X_y=True)
    np.testing.assert_array_equal(data.data, X)
    np.testing.assert_array_equal(data.target, y)
