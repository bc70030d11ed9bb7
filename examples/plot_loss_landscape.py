"""
===========================================
Loss landscape along a path and on a plane
===========================================

Fort, Hu & Lakshminarayanan (2019) explain the strength of deep ensembles with the
geometry of the loss landscape: networks trained from independent initialisations
end in different low-loss regions (*modes*), their weight vectors are nearly
orthogonal, and even along a low-loss path between two of them the functions differ
from both ends. :mod:`ensemblekit.landscape` computes these analyses from a fitted
estimator and :mod:`ensemblekit.plotting` draws them.

We train three small networks on the digits, recording every epoch
(``checkpoint_epochs="all"``), and look at

1. the weight cosine and prediction disagreement between all checkpoints;
2. the loss along the straight line between two members, and along a trained
   quadratic Bezier curve (Garipov et al. 2018);
3. the loss on the plane through the three members.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ensemblekit import DeepEnsembleClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    (X / 16.0).astype(np.float32), y, test_size=0.33, stratify=y, random_state=0
)
ensemble = DeepEnsembleClassifier(n_estimators=3, max_epochs=16, lr=2e-3, batch_size=64,
                                  module__hidden_layer_sizes=(32,),
                                  checkpoint_epochs="all", random_state=0)
ensemble.fit(X_train, y_train)
print("checkpoints:", ensemble.checkpoints_.shape)   # (members, epochs, parameters)

# %%
# Trajectories: one mode per run
# -------------------------------
# Weight cosine similarity (over all weights and biases) and the fraction of test
# points on which two checkpoints predict different labels, for all 3 x 16
# checkpoints. Within a run, consecutive checkpoints are similar in weights and
# agree late in training; checkpoints of different runs are nearly orthogonal.
from ensemblekit.landscape import similarity_matrices
from ensemblekit.plotting import SimilarityMatrixDisplay

display = SimilarityMatrixDisplay.from_estimator(ensemble, X_test)
result = similarity_matrices(ensemble, X_test)
last = result.epoch == result.epoch.max()
cos = result.cosine[np.ix_(last, last)]
dis = result.disagreement[np.ix_(last, last)]
pairs = ~np.eye(len(cos), dtype=bool)
print(f"final networks of different runs: cosine {cos[pairs].mean():.3f}, "
      f"disagreement {dis[pairs].mean():.3f}")

# %%
# A path between two members
# --------------------------
# The straight line between members 0 and 1 crosses a region of high loss, where the
# networks in between disagree with both ends far more than the ends disagree with
# each other. The Bezier curve, whose bend is trained to minimise the loss along it,
# finds a low-loss tunnel; its points still disagree with each end about as much as
# the two ends disagree with each other, so the tunnel joins the two solutions in
# weight space without making them one function.
from ensemblekit.plotting import LossLandscapeDisplay

fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
linear = LossLandscapeDisplay.from_estimator(ensemble, X_test, y_test, kind="linear",
                                             n_points=21, X_train=X_train, ax=ax)
bezier = LossLandscapeDisplay.from_estimator(ensemble, X_test, y_test, kind="bezier",
                                             n_points=21, X_train=X_train, y_train=y_train,
                                             random_state=0, ax=ax)
fig.tight_layout()

# %%
# A plane through three members
# -----------------------------
# The plane spanned by the three final networks (coordinates are distances in weight
# space). Each member sits in its own basin of low loss.
plane = LossLandscapeDisplay.from_estimator(ensemble, X_test, y_test, kind="plane",
                                            resolution=15, X_train=X_train)
