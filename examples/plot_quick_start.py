"""
===========
Quick start
===========

Train one network and a five-member deep ensemble with the same recipe on
scikit-learn's handwritten digits, and compare them on held-out data.

The ensemble is :class:`~ensemblekit.DeepEnsembleClassifier`: five copies of the same
network, each from its own random initialisation and with its own data order, whose
predicted probabilities are averaged. With no ``module`` it builds a small MLP sized
from the data, like scikit-learn's ``MLPClassifier``.
"""

# %%
# Data
# ----
# 1,797 8x8 images of digits as 64 pixel counts in 0..16; we scale them to [0, 1]
# and hold out a stratified half.
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype("float32")
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.5, stratify=y, random_state=0
)

# %%
# One network and an ensemble
# ---------------------------
# ``n_estimators=1`` is a single network trained exactly as each member is.
# ``module__hidden_layer_sizes`` is routed to the network's constructor, as in skorch.
from ensemblekit import DeepEnsembleClassifier

recipe = dict(max_epochs=30, lr=1e-2, batch_size=64, random_state=0,
              module__hidden_layer_sizes=(64,))
single = DeepEnsembleClassifier(n_estimators=1, **recipe).fit(X_train, y_train)
ensemble = DeepEnsembleClassifier(n_estimators=5, **recipe).fit(X_train, y_train)

# %%
# ``predict_proba`` returns the ensemble's predictive distribution, the mean of the
# members' probabilities; ``predict_member_proba`` keeps the member axis first.
member_proba = ensemble.predict_member_proba(X_test)
print("member axis:", member_proba.shape)        # (n_members, n_samples, n_classes)
print("ensemble   :", ensemble.predict_proba(X_test).shape)

# %%
# Scores
# ------
# * **accuracy**: fraction of test points whose most probable class is right;
# * **NLL** (negative log-likelihood, in nats, a *mean* over points): how much
#   probability the model put on the true class; it punishes confident mistakes;
# * **Brier score**: squared error between the predicted distribution and the one-hot
#   label, *summed* over classes and averaged over points (range 0 to 2);
# * **disagreement**: fraction of test points on which two members predict different
#   labels, averaged over pairs of members.
#
# Labels of digits are already ``0..9``, the column indices the metrics expect.
from ensemblekit.metrics import (
    accuracy,
    brier_score,
    mean_pairwise_disagreement,
    negative_log_likelihood,
)

for name, model in [("single network", single), ("5-member ensemble", ensemble)]:
    proba = model.predict_proba(X_test)
    print(f"{name:18s} accuracy {accuracy(y_test, proba):.3f}  "
          f"NLL {negative_log_likelihood(y_test, proba):.3f}  "
          f"Brier {brier_score(y_test, proba):.3f}")
print(f"members disagree on {mean_pairwise_disagreement(member_proba):.1%} of test points")

# %%
# Each member alone is about as good as the single network; their average is better
# on every score, because the members make different mistakes.
import matplotlib.pyplot as plt
import numpy as np

member_nll = [negative_log_likelihood(y_test, p) for p in member_proba]
ensemble_nll = negative_log_likelihood(y_test, ensemble.predict_proba(X_test))
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(np.arange(5), member_nll, color="tab:gray", label="each member")
ax.axhline(ensemble_nll, color="tab:blue", label="ensemble of the 5")
ax.set_xlabel("member")
ax.set_ylabel("test NLL (nats)")
ax.legend(loc="lower right")
fig.tight_layout()
