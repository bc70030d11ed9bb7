"""Posterior approximations around one trained network.

Tensor-level building blocks of :class:`~ensemblekit.estimators.SWAGClassifier`,
:class:`~ensemblekit.estimators.DropoutClassifier` and
:class:`~ensemblekit.estimators.SubspaceSamplingClassifier`, usable on their own:

* flat parameter vectors (:func:`flatten_parameters`, :func:`assign_parameters`);
* SWAG moments and samples (:class:`SWAGMoments`) and the callback collecting them
  during training (:class:`SWAGCollector`);
* the subspace samplers of the loss-landscape study: random, dropout, diagonal
  Gaussian and PCA Gaussian subspaces, and weight averaging of checkpoints
  (recorded by :class:`CheckpointCollector`);
* BatchNorm statistics recomputed for sampled weights (:func:`refresh_batchnorm`);
* Monte Carlo dropout as fixed thinned networks (:func:`thinned_network`).

Every sampler draws from an explicit ``torch.Generator``; nothing here touches
torch's global random state.
"""

from ._batchnorm import batchnorm_layers, refresh_batchnorm
from ._callbacks import CheckpointCollector, SWAGCollector
from ._dropout import SUPPORTED_DROPOUT, dropout_layers, dropout_mask, thinned_network
from ._networks import refresh_rows, sampled_network, sampled_networks
from ._subspace import (
    diagonal_gaussian_samples,
    dropout_subspace_sample,
    pca_gaussian_samples,
    pca_subspace,
    random_direction,
    random_subspace_sample,
    weight_average,
)
from ._swag import COVARIANCES, SWAGMoments
from ._vector import assign_parameters, flatten_parameters

__all__ = [
    "COVARIANCES",
    "SUPPORTED_DROPOUT",
    "CheckpointCollector",
    "SWAGCollector",
    "SWAGMoments",
    "assign_parameters",
    "batchnorm_layers",
    "diagonal_gaussian_samples",
    "dropout_layers",
    "dropout_mask",
    "dropout_subspace_sample",
    "flatten_parameters",
    "pca_gaussian_samples",
    "pca_subspace",
    "random_direction",
    "random_subspace_sample",
    "refresh_batchnorm",
    "refresh_rows",
    "sampled_network",
    "sampled_networks",
    "thinned_network",
    "weight_average",
]
