"""ensemblekit: deep ensembles and their Bayesian rivals as scikit-learn estimators.

Independently initialised networks land in different modes of the loss landscape
and disagree in function space; samples drawn around one solution stay inside one
mode. ensemblekit puts both kinds of method behind the same ``fit`` /
``predict_proba`` / ``predict_member_proba`` surface, with the metrics and tools
to compare them.
"""

from .estimators import (
    DeepEnsembleClassifier,
    DeepEnsembleRegressor,
    DropoutClassifier,
    DropoutRegressor,
    SubspaceSamplingClassifier,
    SWAGClassifier,
    SWAGRegressor,
)

__version__ = "0.1.0"

__all__ = [
    "DeepEnsembleClassifier",
    "DeepEnsembleRegressor",
    "DropoutClassifier",
    "DropoutRegressor",
    "SWAGClassifier",
    "SWAGRegressor",
    "SubspaceSamplingClassifier",
    "__version__",
]
