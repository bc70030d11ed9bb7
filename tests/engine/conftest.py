"""Shared fixtures of the engine tests: tiny data, tiny networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tabular():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


@pytest.fixture(scope="session")
def images():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(42, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0, :4].mean(axis=(1, 2)) > 0).astype(int) + (X[:, 0, 4:, :4].mean(axis=(1, 2)) > 0.2)
    return X, y.astype(int)


@pytest.fixture(autouse=True)
def _one_thread():
    # The networks here are tiny: one thread avoids OpenMP start-up and spin costs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
