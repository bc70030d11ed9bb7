"""Training engines: how ensemble members are trained and evaluated.

The sequential engine trains one skorch net per member. Every engine draws a
member's initial weights, data order and dropout masks from the member's seed
alone, so engines are interchangeable.
"""

from ._progress import Progress, ProgressCallback
from ._randomness import (
    MemberSampler,
    derive_seed,
    draw_member_seeds,
    epoch_indices,
    seeded_torch,
)
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

__all__ = [
    "MemberSampler",
    "ModuleCopy",
    "Progress",
    "ProgressCallback",
    "derive_seed",
    "draw_member_seeds",
    "epoch_indices",
    "fit_sequential",
    "init_seed",
    "initialize_member",
    "module_device",
    "predict_logits_sequential",
    "reset_module_parameters",
    "seeded_torch",
    "train_seed",
]
