"""Metrics of ensembles: diversity, quality, calibration, OOD detection, weight-space geometry.

Functions take numpy arrays (torch tensors are converted): member probabilities of shape
``(n_members, n_samples, n_classes)``, or class probabilities of shape ``(n_samples,
n_classes)``. Probabilities must be finite, non-negative and sum to 1 along the class axis
within an absolute tolerance of ``1e-3``; anything else raises a ValueError. True labels are
integer column indices ``0 .. n_classes - 1`` unless a ``labels`` array maps them.
Logarithms are natural (nats).

Regression metrics score the Gaussian mixture of the members: member means and standard
deviations of shape ``(n_members, n_samples)`` or ``(n_members, n_samples, n_targets)``
(what a regressor's ``predict_member`` returns) with true targets ``y_true``.
"""

from ._calibration import (
    accuracy,
    brier_score,
    ensemble_proba,
    expected_calibration_error,
    negative_log_likelihood,
)
from ._curves import EnsembleSizeCurve, ensemble_size_curve
from ._diversity import (
    disagreement,
    diversity_accuracy_limits,
    mean_pairwise_disagreement,
    normalized_disagreement,
    pairwise_disagreement,
)
from ._information import js_diversity, mutual_information, pairwise_kl
from ._ood import (
    expected_entropy,
    fpr_at_95_tpr,
    max_probability,
    ood_aupr,
    ood_auroc,
    predictive_entropy,
)
from ._regression import (
    crps,
    gaussian_nll,
    interval_calibration_curve,
    interval_calibration_error,
    interval_coverage,
    interval_width,
    mixture_cdf,
    predictive_interval,
)
from ._scorers import get_scorer, get_scorer_names, make_ood_scorer
from ._weights import (
    weight_cosine_similarity,
    weight_cosine_similarity_matrix,
    weight_distance,
    weight_distance_matrix,
)

__all__ = [
    "EnsembleSizeCurve",
    "accuracy",
    "brier_score",
    "crps",
    "disagreement",
    "diversity_accuracy_limits",
    "ensemble_proba",
    "ensemble_size_curve",
    "expected_calibration_error",
    "expected_entropy",
    "fpr_at_95_tpr",
    "gaussian_nll",
    "get_scorer",
    "get_scorer_names",
    "interval_calibration_curve",
    "interval_calibration_error",
    "interval_coverage",
    "interval_width",
    "js_diversity",
    "make_ood_scorer",
    "max_probability",
    "mean_pairwise_disagreement",
    "mixture_cdf",
    "mutual_information",
    "negative_log_likelihood",
    "normalized_disagreement",
    "ood_aupr",
    "ood_auroc",
    "pairwise_disagreement",
    "pairwise_kl",
    "predictive_entropy",
    "predictive_interval",
    "weight_cosine_similarity",
    "weight_cosine_similarity_matrix",
    "weight_distance",
    "weight_distance_matrix",
]
