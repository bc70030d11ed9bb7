"""Loss-landscape and function-space analysis of trained ensembles.

Plain functions over fitted estimators (read by duck typing: ``estimators_``,
``checkpoints_``, ``checkpoint_epochs_``) or arrays:

* trajectories: :func:`checkpoint_proba` evaluates every recorded checkpoint,
  :func:`similarity_matrices` compares them in weight space (cosine) and function
  space (disagreement), :func:`function_space_embedding` embeds functions with
  t-SNE or PCA;
* walks between solutions: :func:`linear_path`, :func:`plane` and the trained
  low-loss :func:`bezier_path` of Garipov et al. (2018).

Many weight vectors of one architecture are evaluated together in grouped passes,
and every interpolated or sampled weight vector gets its BatchNorm statistics
recomputed on training rows before it is evaluated. Record trajectories by fitting
an estimator with ``checkpoint_epochs``.
"""

from ._bezier import bezier_path
from ._paths import linear_path, plane
from ._trajectory import checkpoint_proba, function_space_embedding, similarity_matrices

__all__ = [
    "bezier_path",
    "checkpoint_proba",
    "function_space_embedding",
    "linear_path",
    "plane",
    "similarity_matrices",
]
