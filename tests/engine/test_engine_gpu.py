"""The vectorised engine on CUDA: bf16, channels-last, on-device augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_nets import ResidualBNNet

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.datasets import random_crop_flip
from ensemblekit.engine import stack_members
from ensemblekit.models import ResNet20v1

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_resnet_groups_on_cuda():
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(ResNet20v1(input_size=8).cuda())
    _, form = stack_members(members, (3, 8, 8), channels_last=True)
    assert form == "grouped"


def test_cuda_fit_matches_sequential(images):
    X, y = images
    params = dict(module=ResidualBNNet, n_estimators=3, max_epochs=2, batch_size=16,
                  optimizer=torch.optim.SGD, lr=0.05, device="cuda", random_state=0)
    seq = DeepEnsembleClassifier(engine="sequential", **params).fit(X, y)
    vec = DeepEnsembleClassifier(engine="vectorized", **params).fit(X, y)
    np.testing.assert_allclose(vec.predict_member_proba(X), seq.predict_member_proba(X),
                               atol=5e-3)


def test_bf16_augment_on_cuda():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    clf = DeepEnsembleClassifier(
        ResNet20v1, n_estimators=4, max_epochs=1, batch_size=16, device="cuda",
        engine="vectorized", precision="bf16", augment=random_crop_flip, random_state=0,
    ).fit(X, y)
    assert clf.engine_ == "vectorized"
    assert np.isfinite(clf.predict_member_proba(X)).all()
