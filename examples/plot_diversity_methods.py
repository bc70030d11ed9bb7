"""
=======================================
Diversity of the four methods compared
=======================================

The central observation of Fort, Hu & Lakshminarayanan (2019): networks trained from
independent initialisations disagree with each other far more than networks sampled
around one trained solution, at the same accuracy. We fit the four estimators of
ensemblekit with one training recipe on a noisy 4-class problem (the one of
:ref:`sphx_glr_auto_examples_plot_grid_search_n_estimators.py`) and compare what their members (or
posterior samples) predict on held-out data:

* :class:`~ensemblekit.DeepEnsembleClassifier`: 8 independently trained networks;
* :class:`~ensemblekit.SWAGClassifier`: 8 samples of a Gaussian fitted to the SGD
  iterates of one run;
* :class:`~ensemblekit.DropoutClassifier`: 8 networks thinned by fixed dropout masks;
* :class:`~ensemblekit.SubspaceSamplingClassifier`: 8 samples of a diagonal Gaussian
  fitted to the last checkpoints of one run.

Every method's members come out of one ``predict_member_proba`` call with shape
``(n_members, n_samples, n_classes)``, so the same metrics apply to all of them.
"""

# %%
import numpy as np
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

from ensemblekit import (
    DeepEnsembleClassifier,
    DropoutClassifier,
    SubspaceSamplingClassifier,
    SWAGClassifier,
)

X, y = make_classification(n_samples=1500, n_features=20, n_informative=10, n_classes=4,
                           n_clusters_per_class=2, flip_y=0.05, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X.astype(np.float32), y, test_size=0.5, stratify=y, random_state=0
)
recipe = dict(max_epochs=40, lr=1e-3, batch_size=64, random_state=0,
              module__hidden_layer_sizes=(128, 128), module__dropout=0.1)
methods = {
    "deep ensemble": DeepEnsembleClassifier(n_estimators=8, **recipe),
    "SWAG": SWAGClassifier(n_samples=8, **recipe),
    "MC dropout": DropoutClassifier(n_samples=8, **recipe),
    "diagonal Gaussian subspace": SubspaceSamplingClassifier(
        method="diagonal_gaussian", n_samples=8, **recipe),
}
member_proba = {name: clf.fit(X_train, y_train).predict_member_proba(X_test)
                for name, clf in methods.items()}

# %%
# Diversity and quality
# ---------------------
# * *member accuracy*: mean accuracy of the members alone;
# * *disagreement*: fraction of test points on which two members predict different
#   labels, averaged over pairs;
# * *JS diversity*: entropy of the mean prediction minus the mean entropy of the
#   members (nats), the paper's measure of how different the predictive
#   distributions are;
# * *ensemble NLL*: negative log-likelihood of the averaged prediction (nats).
from ensemblekit.metrics import (
    accuracy,
    js_diversity,
    mean_pairwise_disagreement,
    negative_log_likelihood,
)

print(f"{'method':28s} {'member acc':>10} {'disagree':>9} {'JS':>7} {'ens. NLL':>9}")
for name, proba in member_proba.items():
    member_acc = np.mean([accuracy(y_test, p) for p in proba])
    print(f"{name:28s} {member_acc:10.3f} {mean_pairwise_disagreement(proba):9.3f} "
          f"{js_diversity(proba):7.3f} {negative_log_likelihood(y_test, proba.mean(0)):9.3f}")

# %%
# The diversity-accuracy plane
# ----------------------------
# Each point is one member: its accuracy, and its disagreement with the method's first
# member divided by its own error rate (:func:`~ensemblekit.metrics.normalized_disagreement`).
# The two curves (:func:`~ensemblekit.metrics.diversity_accuracy_limits`, drawn for the
# accuracy of the deep ensemble's first member) are reference points: the lower one is
# the reference with some of its predictions moved to other labels, the upper one a
# predictor of that accuracy whose errors are independent of the reference's.
#
# SWAG and subspace samples lie on or near the lower curve: they differ from their
# reference little more than a copy of it with a few labels changed. Independent
# members are as accurate and disagree several times more. MC dropout samples disagree
# too, but each thinned network is less accurate, so they move left as well as up.
import matplotlib.pyplot as plt

from ensemblekit.metrics import diversity_accuracy_limits, normalized_disagreement

fig, ax = plt.subplots(figsize=(6, 4))
reference_accuracy = accuracy(y_test, member_proba["deep ensemble"][0])
grid = np.linspace(0.5, reference_accuracy, 50)
lower, upper = diversity_accuracy_limits(grid, reference_accuracy, n_classes=4)
ax.plot(grid, lower, color="black", linestyle="--", label="lower limit")
ax.plot(grid, upper, color="black", linestyle=":", label="upper limit")
for name, proba in member_proba.items():
    acc = [accuracy(y_test, p) for p in proba[1:]]
    div = [normalized_disagreement(p, proba[0], y_test) for p in proba[1:]]
    ax.scatter(acc, div, label=name, alpha=0.8)
ax.set_xlabel("accuracy of the member")
ax.set_ylabel("disagreement / error rate")
ax.legend(fontsize="small")
fig.tight_layout()
