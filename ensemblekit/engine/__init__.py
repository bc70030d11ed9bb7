"""Training engines: how ensemble members are trained and evaluated.

The sequential engine trains one skorch net per member; the vectorised engine
stacks all members into one grouped network and trains them in one batched pass.
Every engine draws a member's initial weights, data order and dropout masks from
the member's seed alone, so engines are interchangeable.

Every random draw a member makes in training (dropout layers, functional dropout,
noise drawn in a forward method) comes from the member's own stream, so members do
not depend on which members share their pass. On the CPU the stacked forms
reproduce the sequential engine's draws exactly; on CUDA the grouped dropout masks
depend on the member's seed alone but differ from those of CUDA's fused dropout
kernel. A stacked form is used only after a training step on copies of the members
reproduced their outputs and gradients; one that fails in training falls back
(grouped, then ``vmap``, then sequential).
"""

from ._checkpoints import CheckpointCallback, CheckpointStore, resolve_checkpoint_epochs
from ._grouped import GroupedNetwork, GroupingError, check_grouped, group_modules
from ._monitor import MemberMonitor, MonitorCallback, StopCallback
from ._predict import MemberPredictor
from ._progress import Progress, ProgressCallback
from ._randomness import (
    MemberSampler,
    derive_seed,
    draw_member_seeds,
    epoch_indices,
    seeded_torch,
)
from ._schedule import LRScheduleCallback, StepSchedule
from ._sequential import (
    ModuleCopy,
    fit_sequential,
    init_seed,
    initialize_member,
    module_device,
    predict_logits_sequential,
    reset_module_parameters,
    train_seed,
)
from ._vectorized import (
    ELEMENTWISE_OPTIMIZERS,
    ENGINES,
    PRECISIONS,
    AugmentCallback,
    EngineChoice,
    augment_seed,
    fit_vectorized,
    predict_member_logits,
    stack_members,
    train_members,
    vectorization_blocker,
)
from ._vmap import VmapNetwork
from ._weights import SampleWeightedLoss, weighted_targets

__all__ = [
    "ELEMENTWISE_OPTIMIZERS",
    "ENGINES",
    "PRECISIONS",
    "AugmentCallback",
    "CheckpointCallback",
    "CheckpointStore",
    "EngineChoice",
    "GroupedNetwork",
    "GroupingError",
    "LRScheduleCallback",
    "MemberMonitor",
    "MemberPredictor",
    "MemberSampler",
    "ModuleCopy",
    "MonitorCallback",
    "Progress",
    "ProgressCallback",
    "SampleWeightedLoss",
    "StepSchedule",
    "StopCallback",
    "VmapNetwork",
    "augment_seed",
    "check_grouped",
    "derive_seed",
    "draw_member_seeds",
    "epoch_indices",
    "fit_sequential",
    "fit_vectorized",
    "group_modules",
    "init_seed",
    "initialize_member",
    "module_device",
    "predict_logits_sequential",
    "predict_member_logits",
    "reset_module_parameters",
    "resolve_checkpoint_epochs",
    "seeded_torch",
    "stack_members",
    "train_members",
    "train_seed",
    "vectorization_blocker",
    "weighted_targets",
]
