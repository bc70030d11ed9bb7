"""Deep ensembles: independently initialised networks, averaged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from skorch import NeuralNetClassifier

from ..engine import Progress, fit_sequential
from ._base import BaseNeuralClassifier
from ._validation import check_int, check_option

ENGINES = ("auto", "sequential")


class DeepEnsembleClassifier(BaseNeuralClassifier):
    """Deep ensemble of independently trained neural networks.

    Each member is a skorch :class:`~skorch.NeuralNetClassifier` trained from its
    own seed: the seed fixes the member's initial weights, its data order and its
    dropout masks. The predictive distribution is the mean of the members' softmax
    outputs. Independent initialisations land in different modes of the loss
    landscape, which is what makes the members disagree and the ensemble better
    calibrated than any single network.

    Parameters
    ----------
    module : type or torch.nn.Module or None, default=None
        The network. A class is instantiated once per member with the routed
        ``module__*`` parameters; constructor arguments named ``in_features``,
        ``num_classes``, ``in_channels`` and ``input_size`` are filled from the
        data when not routed. An instance is deep-copied for each member and its
        parameters re-drawn (its top-level ``reset_parameters`` when it has one,
        else each layer's). ``None`` builds an :class:`~ensemblekit.models.MLP`
        sized from the data. The module must return logits.
    n_estimators : int, default=5
        Number of members.
    criterion : type, default=None
        Loss class taking logits; ``None`` means :class:`torch.nn.CrossEntropyLoss`.
    optimizer : type, default=torch.optim.Adam
        Optimizer class; its arguments are routed with ``optimizer__*``.
    lr : float, default=1e-3
        Learning rate.
    max_epochs : int, default=50
        Training epochs of each member.
    batch_size : int, default=128
        Training batch size of each member.
    predict_batch_size : int, default=1024
        Rows evaluated at once at prediction time.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available.
    engine : {"auto", "sequential"}, default="auto"
        How members are trained. ``"sequential"`` trains one skorch net after the
        other; ``"auto"`` picks the fastest engine that supports the module.
    bootstrap : bool, default=False
        Train each member on its own bootstrap resample (bagging). By default every
        member sees all the data, in its own order.
    warm_start : bool, default=False
        When refitting with a larger ``n_estimators``, keep the fitted members and
        train only the new ones; they get the seeds a full fit would give them.
    random_state : int, RandomState instance or None, default=None
        Source of the member seeds. Torch's global generator is forked around each
        member, so the caller's random stream is left untouched.
    verbose : int, default=0
        ``1`` shows a progress bar over member-epochs; ``2`` also prints each
        member's epoch table.
    callbacks : list of skorch callbacks, default=None
        Callbacks copied to every member.
    **kwargs : dict
        Parameters routed to the members as in skorch: ``module__*``,
        ``optimizer__*``, ``criterion__*``, ``iterator_train__*``,
        ``iterator_valid__*``, ``callbacks__*``, ``dataset__*``.

    Attributes
    ----------
    estimators_ : list of skorch.NeuralNetClassifier
        The fitted members.
    seeds_ : ndarray of shape (n_estimators,)
        Seed of each member.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Size of the second axis of ``X`` (features, or channels for images).
    input_shape_ : tuple of int
        Shape of one sample, ``X.shape[1:]``.
    device_ : str
        Device the members were trained on.
    engine_ : str
        Engine that trained the last members.

    See Also
    --------
    sklearn.ensemble.BaggingClassifier : Bagging of any scikit-learn estimator.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from ensemblekit import DeepEnsembleClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DeepEnsembleClassifier(n_estimators=3, max_epochs=5, random_state=0,
    ...                              module__hidden_layer_sizes=(16,))
    >>> clf = clf.fit(X, y)
    >>> clf.predict_member_proba(X[:4]).shape
    (3, 4, 3)
    >>> clf.predict_proba(X[:4]).sum(axis=1).round(6).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """

    def __init__(
        self,
        module: Any = None,
        n_estimators: int = 5,
        *,
        criterion: Any = None,
        optimizer: Any = torch.optim.Adam,
        lr: float = 1e-3,
        max_epochs: int = 50,
        batch_size: int = 128,
        predict_batch_size: int = 1024,
        device: str = "auto",
        engine: str = "auto",
        bootstrap: bool = False,
        warm_start: bool = False,
        random_state: Any = None,
        verbose: int = 0,
        callbacks: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.module = module
        self.n_estimators = n_estimators
        self.criterion = criterion
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.predict_batch_size = predict_batch_size
        self.device = device
        self.engine = engine
        self.bootstrap = bootstrap
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self._store_routed(kwargs)

    def _validate_params(self) -> None:
        super()._validate_params()
        check_int("n_estimators", self.n_estimators)
        check_option("engine", self.engine, ENGINES)

    def _n_members(self) -> int:
        return int(self.n_estimators)

    def _bootstrap(self) -> bool:
        return bool(self.bootstrap)

    def _fit_members(
        self,
        nets: Sequence[NeuralNetClassifier],
        X: np.ndarray,
        y: np.ndarray,
        seeds: Sequence[int],
        progress: Progress,
    ) -> None:
        fit_sequential(nets, X, y, seeds, progress)
        self.engine_ = "sequential"
