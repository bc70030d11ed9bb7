"""Deep ensembles: independently initialised networks, averaged."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from skorch import NeuralNetClassifier

from .._stacklevel import external_stacklevel
from ..engine import ENGINES, PRECISIONS, Progress, train_members
from ._base import BaseNeuralClassifier
from ._partial_fit_doc import classifier_partial_fit_doc
from ._validation import check_int, check_option

#: How members draw their batches (``batches``).
BATCHES = ("permutation", "with_replacement")


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
    n_jobs : int or None, default=None
        Groups of members trained at the same time through :class:`joblib.Parallel`:
        loky worker processes by default, the workers of a Dask cluster inside
        ``joblib.parallel_backend("dask")``. ``None`` means 1 unless a joblib backend
        context sets it; ``-1`` means all CPUs. The members equal those of ``n_jobs=1``.
        Ignored when ``devices`` is given.
    devices : "all", list of str or None, default=None
        Shard the members over these devices (one group and one worker process per
        device) and gather them on the first one after training; ``"all"`` means
        every visible CUDA device (the CPU when there is none). ``None`` trains on
        ``device``.
    memory : str, joblib.Memory or None, default=None
        Cache of trained members, as in :class:`sklearn.pipeline.Pipeline`: a folder
        or a :class:`joblib.Memory` whose folder is used. Each member is stored under
        a key of everything that determines it (data, parameters, its seed) and
        loaded instead of trained when asked for again, so a ``GridSearchCV`` over
        ``n_estimators`` trains each member once. Needs an integer ``random_state``.
    engine : {"auto", "sequential", "vectorized"}, default="auto"
        How members are trained. ``"sequential"`` trains one skorch net after the
        other. ``"vectorized"`` stacks all members into one grouped network (each
        convolution ``M`` times wider with ``groups=M``, each linear layer a batched
        matrix product) and trains them in one batched pass, each member on its own
        batches; for the same seeds it gives the same members as ``"sequential"``
        up to floating-point rounding (with dropout on CUDA the masks differ). It
        raises a ValueError when it cannot run (skorch callbacks, an optimizer that
        is not elementwise, layers that can be neither grouped nor vmapped).
        ``"auto"`` uses ``"vectorized"`` when possible and ``"sequential"``
        otherwise; ``engine_`` and ``engine_reason_`` say what ran and why.
    max_members_per_pass : int or None, default=None
        Vectorised engine: train (and predict) at most this many members at once,
        to bound memory. ``None`` takes all members; on CUDA a pass that runs out
        of memory is retried with half as many members.
    augment : callable or None, default=None
        Training-time augmentation ``augment(x_batch, generator) -> x_batch``
        applied to each member's batch (on the training device in the vectorised
        engine), with draws from a generator seeded by the member's seed; for
        example :func:`ensemblekit.datasets.random_crop_flip`.
    lr_schedule : callable or None, default=None
        ``lr_schedule(epoch) -> multiplier`` of the learning rate at each (zero-based)
        epoch, applied identically by both engines; for example
        :class:`ensemblekit.engine.StepSchedule` ``(step_size=10, gamma=0.5)`` halves
        it every 10 epochs. It must be picklable for the estimator to be.
    precision : {"fp32", "bf16"}, default="fp32"
        Vectorised engine: ``"bf16"`` trains under bfloat16 autocast (fast on
        recent GPUs). Parameters, optimizer and prediction stay in float32. The
        sequential engine ignores it, with a warning.
    bootstrap : bool, default=False
        Train each member on its own bootstrap resample (bagging). By default every
        member sees all the data, in its own order.
    batches : {"permutation", "with_replacement"}, default="permutation"
        How each member's batches are drawn. ``"permutation"``: every epoch visits
        each row once, in the member's own order. ``"with_replacement"``: every row
        of every batch is drawn uniformly with replacement (``ceil(n / batch_size)``
        steps per epoch), as in the code released with Fort, Hu & Lakshminarayanan
        (2019), which draws each batch with ``np.random.choice(N, batch_size)``.
        Both engines draw the same rows for the same seeds.
    warm_start : bool, default=False
        When refitting with a larger ``n_estimators``, keep the fitted members and
        train only the new ones; they get the seeds a full fit would give them.
    checkpoint_epochs : None, "all", int or list of int, default=None
        Record each trained network's trajectory: its flattened parameters (all
        weights and biases) after these zero-based epochs, in ``checkpoints_``.
        ``"all"``: every epoch; an int ``k``: every ``k``-th epoch (epochs ``k-1,
        2k-1, ...``); a list: those epochs, each in ``[0, max_epochs - 1]``.
        Both engines record the same vectors. See :mod:`ensemblekit.landscape`.
    checkpoint_dir : str or path-like or None, default=None
        Folder where ``checkpoints_`` is memory-mapped (a ``.npy`` file per fit)
        instead of held in memory; created if missing.
    random_state : int, RandomState instance or None, default=None
        Source of the member seeds. Torch's global generator is forked around each
        member, so the caller's random stream is left untouched.
    verbose : int, default=0
        ``1`` shows a progress bar over member-epochs; ``2`` also prints each
        member's epoch table when the sequential engine trains (the vectorised
        engine does not run skorch's training loop, so it has no such table).
    callbacks : list of skorch callbacks, default=None
        Callbacks copied to every member.
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the training loss, multiplying ``sample_weight``
        (see :meth:`fit`): ``"balanced"`` gives class ``k`` the weight
        ``n_samples / (n_classes * n_k)``, a dict maps class labels (as in ``y``,
        strings too) to weights, missing classes weighing 1; computed by
        :func:`sklearn.utils.class_weight.compute_class_weight` on the training labels.
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the training rows for each
        member and stop the member when its validation accuracy has not improved by
        at least ``tol`` for more than ``n_iter_no_change`` epochs in a row (the rule
        of :class:`sklearn.neural_network.MLPClassifier`); the member then gets back
        the weights of its best epoch. Each member stops on its own; in the
        vectorised engine a stopped member's state is frozen at its stopping epoch
        while the others go on.
        The validation accuracy is weighted: each validation row counts with its
        training weight, ``sample_weight`` times the ``class_weight`` of its class
        (1 without either).
    validation_fraction : float, default=0.1
        Fraction of the training rows held out for early stopping (stratified, at
        least 2 rows). Only used when ``early_stopping=True``, as in
        :class:`sklearn.neural_network.MLPClassifier`.
    n_iter_no_change : int, default=10
        Epochs without an improvement of at least ``tol`` tolerated before stopping.
    tol : float, default=1e-4
        Minimum improvement of the validation accuracy.
    validation_split : {"per_member", "shared"}, default="per_member"
        ``"per_member"``: each member draws its own validation rows from its seed;
        ``"shared"``: every member holds out the same rows (drawn from the first
        member's seed), the protocol of a single held-out set.
    **kwargs : dict
        Parameters routed to the members as in skorch: ``module__*``,
        ``optimizer__*``, ``criterion__*``, ``iterator_train__*``,
        ``iterator_valid__*``, ``callbacks__*``, ``dataset__*``.

    Attributes
    ----------
    loss_curve_ : list of list of float
        Training loss (the weighted mean over the member's training rows) after each
        epoch, one list per member (``estimators_[i]``).
    n_iter_ : ndarray of shape (n_members,)
        Epochs each member trained.
    validation_scores_ : list of list of float or None
        With ``early_stopping=True``: validation accuracy after each epoch, one list
        per member; ``None`` otherwise.
    best_epoch_ : ndarray of shape (n_members,) or None
        With ``early_stopping=True``: zero-based epoch whose weights each member
        holds (its best validation accuracy); ``None`` otherwise.
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
        Device the members are on: ``device``, or the first of ``devices``.
    n_members_trained_ : int
        Members the last call to :meth:`fit` trained.
    n_members_loaded_ : int
        Members the last call to :meth:`fit` loaded from ``memory``.
    output_kind_ : {"logits", "proba", "log_proba"}
        What the module returns, found at ``fit`` from the criterion and the
        module's outputs on a few training rows (skorch's conventions:
        ``CrossEntropyLoss`` takes logits, ``NLLLoss`` probabilities or
        log-probabilities); predictions turn them into probabilities.
    engine_ : {"sequential", "vectorized"}
        Engine that trained the last members.
    engine_reason_ : str
        Why: the stacked form the vectorised engine used, or why ``"auto"`` fell
        back to the sequential engine.
    checkpoints_ : ndarray of shape (n_runs, n_checkpoints, n_params), float32
        Only with ``checkpoint_epochs``: flat parameters of each trained network
        (``estimators_[i]``) after each epoch of ``checkpoint_epochs_``, on the CPU;
        an ``np.memmap`` when ``checkpoint_dir`` is given. Epochs that training never
        reached (a callback stopped it early) are NaN.
    checkpoint_buffers_ : ndarray of shape (n_runs, n_checkpoints, n_buffer_values)
        Only with ``checkpoint_epochs``: the BatchNorm running means and variances
        at the same checkpoints (no columns without BatchNorm), kept apart from the
        parameters.
    checkpoint_epochs_ : ndarray of shape (n_checkpoints,)
        Zero-based epochs of the checkpoints.

    See Also
    --------
    sklearn.ensemble.BaggingClassifier : Bagging of any scikit-learn estimator.
    SWAGClassifier : Samples around one solution from the SGD iterates.
    DropoutClassifier : Monte Carlo dropout around one solution.
    SubspaceSamplingClassifier : Subspace samples around one solution.

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
        n_jobs: int | None = None,
        devices: Any = None,
        memory: Any = None,
        engine: str = "auto",
        max_members_per_pass: int | None = None,
        augment: Any = None,
        lr_schedule: Any = None,
        precision: str = "fp32",
        bootstrap: bool = False,
        batches: str = "permutation",
        warm_start: bool = False,
        checkpoint_epochs: Any = None,
        checkpoint_dir: Any = None,
        random_state: Any = None,
        verbose: int = 0,
        callbacks: list[Any] | None = None,
        class_weight: Any = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        validation_split: str = "per_member",
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
        self.n_jobs = n_jobs
        self.devices = devices
        self.memory = memory
        self.engine = engine
        self.max_members_per_pass = max_members_per_pass
        self.augment = augment
        self.lr_schedule = lr_schedule
        self.precision = precision
        self.bootstrap = bootstrap
        self.batches = batches
        self.warm_start = warm_start
        self.checkpoint_epochs = checkpoint_epochs
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.class_weight = class_weight
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.validation_split = validation_split
        self._store_routed(kwargs)

    def _validate_params(self) -> None:
        super()._validate_params()
        self._validate_method_params()

    def _validate_method_params(self) -> None:
        # Shared with the regressor of the same method.
        check_int("n_estimators", self.n_estimators)
        check_option("engine", self.engine, ENGINES)
        check_option("precision", self.precision, PRECISIONS)
        check_option("batches", self.batches, BATCHES)
        if self.max_members_per_pass is not None:
            check_int("max_members_per_pass", self.max_members_per_pass)
        if self.augment is not None and not callable(self.augment):
            raise ValueError(
                "augment must be None or a callable (x_batch, generator) -> x_batch, "
                f"got {self.augment!r}."
            )
        if self.lr_schedule is not None and not callable(self.lr_schedule):
            raise ValueError(
                "lr_schedule must be None or a callable epoch -> learning-rate multiplier, "
                f"got {self.lr_schedule!r}."
            )

    _member_attributes: ClassVar[dict[str, str]] = {
        "engine_": "shared", "engine_reason_": "shared",
    }

    def partial_fit(self, X: Any, y: Any, classes: Any = None,
                    sample_weight: Any = None) -> DeepEnsembleClassifier:
        return self._partial_fit(X, y, classes, sample_weight)

    partial_fit.__doc__ = classifier_partial_fit_doc(
        "member", "Train every member for one more epoch on ``(X, y)``.")

    def _continue_members(self, nets: Any, X: np.ndarray, y: np.ndarray, seeds: Any,
                          sample_weight: np.ndarray | None) -> None:
        choice = train_members(
            nets, X, y, seeds, None,
            engine=self.engine,
            max_members_per_pass=self.max_members_per_pass,
            augment=self.augment,
            lr_schedule=self.lr_schedule,
            precision=self.precision,
            sample_weight=sample_weight,
            initialize=False,
            epochs=1,
        )
        self.engine_ = choice.engine
        self.engine_reason_ = choice.reason

    def _n_members(self) -> int:
        return int(self.n_estimators)

    def _trains_jointly(self) -> bool:
        return self.engine != "sequential"

    def _bootstrap(self) -> bool:
        return bool(self.bootstrap)

    def _batches_with_replacement(self) -> bool:
        return self.batches == "with_replacement"

    def _fit_members(
        self,
        nets: Sequence[NeuralNetClassifier],
        X: np.ndarray,
        y: np.ndarray,
        seeds: Sequence[int],
        progress: Progress,
        sample_weight: np.ndarray | None = None,
    ) -> None:
        choice = train_members(
            nets, X, y, seeds, progress,
            engine=self.engine,
            max_members_per_pass=self.max_members_per_pass,
            augment=self.augment,
            lr_schedule=self.lr_schedule,
            precision=self.precision,
            sample_weight=sample_weight,
        )
        if choice.engine == "sequential" and self.precision != "fp32":
            warnings.warn(
                f"precision={self.precision!r} applies to the vectorised engine only; the "
                f"sequential engine trained in float32 ({choice.reason}).",
                UserWarning,
                stacklevel=external_stacklevel(),
            )
        if self.verbose > 0:
            print(f"[{type(self).__name__}] engine: {choice.engine} ({choice.reason})")
        self.engine_ = choice.engine
        self.engine_reason_ = choice.reason
