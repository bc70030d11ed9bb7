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

# Names imported "as" themselves are the engine's interface to the rest of the
# package (estimators, posteriors, landscape): importable here, not public API.
from ._checkpoints import CheckpointCallback as CheckpointCallback
from ._checkpoints import CheckpointStore as CheckpointStore
from ._checkpoints import resolve_checkpoint_epochs as resolve_checkpoint_epochs
from ._dispatch import ENGINES, PRECISIONS, EngineChoice, train_members
from ._grouped import GroupedNetwork, GroupingError, check_grouped, group_modules
from ._losses import GaussianNLLCriterion, SquaredErrorCriterion, split_mean_variance
from ._monitor import MemberMonitor as MemberMonitor
from ._monitor import MonitorCallback as MonitorCallback
from ._monitor import StopCallback as StopCallback
from ._predict import MemberPredictor, predict_member_logits
from ._progress import Progress as Progress
from ._progress import ProgressCallback as ProgressCallback
from ._randomness import MemberSampler as MemberSampler
from ._randomness import derive_seed as derive_seed
from ._randomness import draw_member_seeds as draw_member_seeds
from ._randomness import epoch_indices as epoch_indices
from ._randomness import seeded_torch as seeded_torch
from ._schedule import StepSchedule
from ._sequential import ModuleCopy as ModuleCopy
from ._sequential import fit_sequential as fit_sequential
from ._sequential import initialize_member as initialize_member
from ._sequential import module_device as module_device
from ._sequential import predict_logits_sequential
from ._stacking import stack_members
from ._vmap import VmapNetwork
from ._weights import SampleWeightedLoss as SampleWeightedLoss
from ._weights import weighted_targets as weighted_targets

# The public API.
__all__ = [
    "ENGINES",
    "PRECISIONS",
    "EngineChoice",
    "GaussianNLLCriterion",
    "GroupedNetwork",
    "GroupingError",
    "MemberPredictor",
    "SquaredErrorCriterion",
    "StepSchedule",
    "VmapNetwork",
    "check_grouped",
    "group_modules",
    "predict_logits_sequential",
    "predict_member_logits",
    "split_mean_variance",
    "stack_members",
    "train_members",
]
