"""Plots of ensembles in the style of scikit-learn's Displays.

Each Display computes its data in ``from_estimator`` / ``from_predictions`` (class
methods), keeps it as attributes, and draws it with ``plot(ax=None, **kwargs)``,
which sets ``ax_`` and ``figure_``:

* :class:`SimilarityMatrixDisplay`: weight cosine and prediction disagreement
  between checkpoints of training trajectories;
* :class:`FunctionSpaceDisplay`: t-SNE (or PCA) of trajectories and samples;
* :class:`DiversityAccuracyDisplay`: the diversity-accuracy plane with its two
  reference curves;
* :class:`EnsembleSizeDisplay`: a metric against the number of members;
* :class:`LossLandscapeDisplay`: loss along a path or over a plane in weight space;
* :class:`ReliabilityDiagramDisplay`: top-label reliability with bin counts and ECE;
* :class:`ShiftDisplay`: a metric against corruption intensity.

matplotlib is an optional dependency (the ``plot`` extra); pyplot is imported only
when something is drawn.
"""

try:
    import matplotlib  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a test that hides matplotlib
    raise ImportError(
        "ensemblekit.plotting needs matplotlib: install it with "
        "`pip install ensemblekit[plot]` (or `pip install matplotlib`)."
    ) from exc

from ._calibration import ReliabilityDiagramDisplay
from ._diversity import DiversityAccuracyDisplay
from ._landscape import FunctionSpaceDisplay, LossLandscapeDisplay, SimilarityMatrixDisplay
from ._performance import EnsembleSizeDisplay, ShiftDisplay

__all__ = [
    "DiversityAccuracyDisplay",
    "EnsembleSizeDisplay",
    "FunctionSpaceDisplay",
    "LossLandscapeDisplay",
    "ReliabilityDiagramDisplay",
    "ShiftDisplay",
    "SimilarityMatrixDisplay",
]
