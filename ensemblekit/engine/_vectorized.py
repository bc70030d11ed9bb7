"""Vectorised engine: the names of its parts, in one place for existing imports.

The engine lives in modules with one reason to change each: :mod:`._dispatch` (which
engine runs, feasibility, fallbacks), :mod:`._stacking` (stacked networks and optimizer
state), :mod:`._loop` (the training loop and out-of-memory halving), :mod:`._augment`
(augmentation) and :mod:`._predict` (prediction).
"""

from __future__ import annotations

from ._augment import AugmentCallback, augment_seed
from ._dispatch import (
    ELEMENTWISE_OPTIMIZERS,
    ENGINES,
    PRECISIONS,
    EngineChoice,
    train_members,
    vectorization_blocker,
)
from ._loop import fit_vectorized
from ._predict import predict_member_logits
from ._stacking import stack_members

__all__ = [
    "ELEMENTWISE_OPTIMIZERS",
    "ENGINES",
    "PRECISIONS",
    "AugmentCallback",
    "EngineChoice",
    "augment_seed",
    "fit_vectorized",
    "predict_member_logits",
    "stack_members",
    "train_members",
    "vectorization_blocker",
]
