"""
===================================
Images: an ensemble of small CNNs
===================================

The estimators take image arrays ``(N, C, H, W)`` as they are. Here five
:class:`~ensemblekit.models.SmallCNN` networks, the paper's small convolutional
network, learn the 8x8 handwritten digits as one-channel images
(:func:`~ensemblekit.datasets.load_digits_images`, bundled with scikit-learn, no
download). The network's input size is filled in from the data.

On CIFAR-10 the same code trains the paper's networks: pass
``load_cifar10()`` images scaled to floats and, for instance, ``MediumCNN``.
"""

# %%
import numpy as np
from sklearn.model_selection import train_test_split

from ensemblekit import DeepEnsembleClassifier
from ensemblekit.datasets import load_digits_images
from ensemblekit.models import SmallCNN

X, y = load_digits_images(return_X_y=True)            # float32 (1797, 1, 8, 8) in [0, 1]
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.5, stratify=y, random_state=0
)
clf = DeepEnsembleClassifier(SmallCNN, n_estimators=5, max_epochs=20, lr=3e-3,
                             batch_size=64, random_state=0)
clf.fit(X_train, y_train)
print("engine:", clf.engine_, "-", clf.engine_reason_)
print("one member:", clf.estimators_[0].module_.__class__.__name__,
      sum(p.numel() for p in clf.estimators_[0].module_.parameters()), "parameters")

# %%
# Members and ensemble
# --------------------
from ensemblekit.metrics import accuracy, brier_score, negative_log_likelihood

member_proba = clf.predict_member_proba(X_test)      # (5, n_test, 10)
for m, proba in enumerate(member_proba):
    print(f"member {m}: accuracy {accuracy(y_test, proba):.3f}  "
          f"NLL {negative_log_likelihood(y_test, proba):.3f}")
proba = member_proba.mean(axis=0)
print(f"ensemble: accuracy {accuracy(y_test, proba):.3f}  "
      f"NLL {negative_log_likelihood(y_test, proba):.3f}  Brier {brier_score(y_test, proba):.3f}")

# %%
# Where the members disagree
# --------------------------
# The mutual information between label and member (the "BALD" score) is large where
# members are individually confident but about different classes. The test images
# with the largest values are the ambiguous ones.
import matplotlib.pyplot as plt

from ensemblekit.metrics import mutual_information

mi = mutual_information(member_proba)                 # (n_test,), nats
worst = np.argsort(mi)[::-1][:8]
fig, axes = plt.subplots(1, 8, figsize=(10, 2))
for ax, i in zip(axes, worst):
    ax.imshow(X_test[i, 0], cmap="gray_r")
    votes = np.bincount(member_proba[:, i].argmax(axis=1), minlength=10)
    ax.set_title(f"true {y_test[i]}\nvotes {votes.argmax()}:{votes.max()}/5", fontsize=8)
    ax.axis("off")
fig.suptitle("test digits on which the members disagree most")
fig.tight_layout()
