"""Ensemble estimators with the scikit-learn interface."""

from ._base import BaseNeuralClassifier
from ._deep_ensemble import DeepEnsembleClassifier

__all__ = ["BaseNeuralClassifier", "DeepEnsembleClassifier"]
