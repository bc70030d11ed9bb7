"""Ensemble estimators with the scikit-learn interface.

:class:`DeepEnsembleClassifier` trains independent networks (many modes);
:class:`SWAGClassifier`, :class:`DropoutClassifier` and
:class:`SubspaceSamplingClassifier` sample functions around one solution (one mode per
member). All expose ``predict_member_proba`` with the members or posterior samples on
the first axis. :class:`DeepEnsembleRegressor`, :class:`SWAGRegressor` and
:class:`DropoutRegressor` are their regression counterparts, with ``predict_member``
returning each member's mean and standard deviation.
"""

from ._base import BaseNeuralClassifier, BaseNeuralEnsemble
from ._deep_ensemble import DeepEnsembleClassifier
from ._dropout import DropoutClassifier
from ._regression import BaseNeuralRegressor
from ._regressors import DeepEnsembleRegressor, DropoutRegressor, SWAGRegressor
from ._subspace import SubspaceSamplingClassifier
from ._swag import SWAGClassifier

__all__ = [
    "BaseNeuralClassifier",
    "BaseNeuralEnsemble",
    "BaseNeuralRegressor",
    "DeepEnsembleClassifier",
    "DeepEnsembleRegressor",
    "DropoutClassifier",
    "DropoutRegressor",
    "SWAGClassifier",
    "SWAGRegressor",
    "SubspaceSamplingClassifier",
]
