"""
=======================================
Calibration and the reliability diagram
=======================================

A classifier is *calibrated* when, among the points it labels with confidence 0.8, 80 %
are right. A reliability diagram bins the test points by the confidence of the
predicted class (the top-label probability) and plots each bin's accuracy against its
mean confidence; a calibrated model lies on the diagonal. The expected calibration
error (ECE) is the gap between the two, averaged over bins weighted by their share of
points (here 10 equal-width bins; see :func:`ensemblekit.metrics.expected_calibration_error`).

Networks trained until they fit their training data are overconfident: their
confidence exceeds their accuracy. Averaging independently trained networks softens
the confident mistakes, which is why deep ensembles are better calibrated than their
members (Lakshminarayanan et al. 2017; Fort et al. 2019).
"""

# %%
# Data and models: 4 overlapping classes with 5 % of labels flipped, two hidden layers
# that can memorise the training half, 40 epochs.
import numpy as np
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

from ensemblekit import DeepEnsembleClassifier

X, y = make_classification(n_samples=1500, n_features=20, n_informative=10, n_classes=4,
                           n_clusters_per_class=2, flip_y=0.05, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X.astype(np.float32), y, test_size=0.5, stratify=y, random_state=0
)
ensemble = DeepEnsembleClassifier(n_estimators=5, max_epochs=40, lr=1e-3, batch_size=64,
                                  random_state=0, module__hidden_layer_sizes=(128, 128))
ensemble.fit(X_train, y_train)
member_proba = ensemble.predict_member_proba(X_test)   # (5, n_test, 4)
single_proba = member_proba[0]                         # one network alone
ensemble_proba = member_proba.mean(axis=0)             # = ensemble.predict_proba(X_test)

# %%
# Reliability diagrams
# --------------------
# :class:`~ensemblekit.plotting.ReliabilityDiagramDisplay` bins the points exactly as
# :func:`~ensemblekit.metrics.expected_calibration_error` does (here 10 equal-width
# bins, closed on the right): the bars are each bin's accuracy, the dots its mean
# confidence, the panel below the number of points per bin, and the legend the ECE.
import matplotlib.pyplot as plt

from ensemblekit.metrics import accuracy, expected_calibration_error
from ensemblekit.plotting import ReliabilityDiagramDisplay

for name, proba in [("one network", single_proba), ("ensemble of 5", ensemble_proba)]:
    display = ReliabilityDiagramDisplay.from_predictions(y_test, proba, n_bins=10, name=name)
    display.ax_.set_title(name)
    print(f"{name:14s} accuracy {accuracy(y_test, proba):.3f}  "
          f"ECE {expected_calibration_error(y_test, proba, n_bins=10):.3f}  "
          f"mean confidence {proba.max(axis=1).mean():.3f}")

# %%
# Where most points are, the single network's bars fall short of the diagonal: it is
# more confident than it is accurate. The ensemble's mean confidence is lower and
# closer to its accuracy. Bins with few points (at low confidence) are noisy.
#
# Where the confident predictions sit
# -----------------------------------
# Histograms of the top-label confidence: a network that memorised its training data
# puts most test points at a confidence near 1, including many of its mistakes.
fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
for ax, (name, proba) in zip(axes, [("one network", single_proba),
                                    ("ensemble of 5", ensemble_proba)]):
    correct = proba.argmax(axis=1) == y_test
    ax.hist([proba.max(axis=1)[correct], proba.max(axis=1)[~correct]], bins=10,
            range=(0.25, 1), stacked=True, label=["right", "wrong"])
    ax.set_title(name)
    ax.set_xlabel("confidence")
axes[0].set_ylabel("test points")
axes[0].legend()
fig.tight_layout()
