"""Ensemble estimators with the scikit-learn interface.

:class:`DeepEnsembleClassifier` trains independent networks (many modes);
:class:`SWAGClassifier`, :class:`DropoutClassifier` and
:class:`SubspaceSamplingClassifier` sample functions around one solution (one mode per
member). All expose ``predict_member_proba`` with the members or posterior samples on
the first axis.
"""

from ._base import BaseNeuralClassifier
from ._deep_ensemble import DeepEnsembleClassifier
from ._dropout import DropoutClassifier
from ._subspace import SubspaceSamplingClassifier
from ._swag import SWAGClassifier

__all__ = [
    "BaseNeuralClassifier",
    "DeepEnsembleClassifier",
    "DropoutClassifier",
    "SWAGClassifier",
    "SubspaceSamplingClassifier",
]
