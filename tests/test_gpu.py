"""Device tests: run only where CUDA is available (``pytest -m gpu``)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from ensemblekit import DeepEnsembleClassifier, SWAGClassifier

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_auto_device_uses_cuda(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(n_estimators=2, max_epochs=2, random_state=0).fit(X, y)
    assert clf.device_.startswith("cuda")
    assert next(clf.estimators_[0].module_.parameters()).is_cuda


@pytest.mark.parametrize("make", [
    lambda: DeepEnsembleClassifier(n_estimators=2, max_epochs=3, random_state=0, device="cuda"),
    lambda: SWAGClassifier(n_samples=3, max_epochs=4, random_state=0, device="cuda"),
], ids=["deep_ensemble", "swag"])
def test_fit_on_gpu_predict_on_cpu_after_unpickling(iris, tmp_path, make):
    X, y = iris
    clf = make().fit(X, y)
    expected = clf.predict_proba(X)
    path = tmp_path / "clf.pkl"
    path.write_bytes(pickle.dumps(clf))
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(f"""
        import pickle, warnings, numpy as np, torch
        assert not torch.cuda.is_available()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = pickle.loads(open({str(path)!r}, "rb").read())
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "p.npy")!r}, clf.predict_proba(X))
    """)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-4)
