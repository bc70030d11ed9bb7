"""Monte Carlo dropout: thinned networks sampled from one dropout-trained network."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from .._stacklevel import external_stacklevel
from ..engine import (
    ENGINES,
    PRECISIONS,
    Progress,
    derive_seed,
    initialize_member,
    predict_logits_sequential,
    train_members,
)
from ..posteriors import SUPPORTED_DROPOUT, dropout_layers, thinned_network
from ..posteriors._dropout import thinned_copies
from ._base import BaseNeuralClassifier
from ._partial_fit_doc import classifier_partial_fit_doc
from ._validation import check_int, check_option

#: Dropout rate of the default MLP when ``module__dropout`` is not given.
DEFAULT_DROPOUT = 0.1
_MASK_STREAM = 31


class _ThinnedCache:
    """An estimator's thinned networks, valid while its runs and their weights are."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref[nn.Module]] = []
        self.key: tuple[Any, ...] | None = None
        self.modules: list[nn.Module] | None = None

    def valid(self, modules: Sequence[nn.Module], key: tuple[Any, ...]) -> bool:
        return (key == self.key and len(modules) == len(self.refs)
                and all(ref() is mod for ref, mod in zip(self.refs, modules)))


# Fitted state kept beside the estimator rather than in it: built on the first
# prediction, never pickled or cloned, dropped with the estimator.
_THINNED: weakref.WeakKeyDictionary[Any, _ThinnedCache] = weakref.WeakKeyDictionary()


def _thinned_networks(estimator: Any, sample_shape: tuple[int, ...]) -> list[nn.Module] | None:
    """Every run's thinned networks as standalone modules (run-major), or None.

    Rebuilt when the runs, their weights (tracked by the tensors' version counters
    and storage), the seeds, ``n_samples_`` or the sample shape change. ``None``
    when a run's masks cannot be fixed ahead of the inputs.
    """
    modules = [net.module_ for net in estimator.estimators_]
    tensors = [t for mod in modules for t in (*mod.parameters(), *mod.buffers())]
    key = (tuple(int(s) for s in estimator.seeds_), int(estimator.n_samples_), sample_shape,
           tuple((t._version, t.data_ptr(), t.device) for t in tensors))
    cache = _THINNED.get(estimator)
    if cache is None:
        cache = _THINNED[estimator] = _ThinnedCache()
    if not cache.valid(modules, key):
        thinned: list[nn.Module] | None = []
        for module, seed in zip(modules, estimator.seeds_):
            seeds = [derive_seed(int(seed), _MASK_STREAM, s)
                     for s in range(estimator.n_samples_)]
            copies = thinned_copies(module, seeds, sample_shape)
            if copies is None:
                thinned = None
                break
            thinned.extend(copies)
        cache.refs = [weakref.ref(mod) for mod in modules]
        cache.key = key
        cache.modules = thinned
    return cache.modules


class DropoutClassifier(BaseNeuralClassifier):
    """Monte Carlo dropout: average over networks thinned by fixed dropout masks.

    Each run trains a network with dropout. At prediction time every dropout layer
    is active with its training rate while the rest of the network, BatchNorm
    included, stays in evaluation mode (running statistics used, never updated).
    Each of the ``n_samples`` Monte Carlo samples is one *fixed thinned network*:
    for every dropout layer one mask over the feature dimensions (whole channels
    for ``Dropout1d/2d/3d``) is drawn from a generator seeded by the run's seed and
    the sample index, and shared by all inputs (see
    :func:`~ensemblekit.posteriors.thinned_network`).

    This differs from the usual per-input Monte Carlo dropout, which draws a new
    mask for every row, only in how the masks are shared across rows: for any one
    input the distribution of a sample's output, hence the predictive mean in the
    limit of many samples, is the same. Sharing makes each sample a function
    (the object compared in function space, e.g. by disagreement), and makes
    predictions deterministic and independent of row order and batching.

    Parameters
    ----------
    module : type or torch.nn.Module or None, default=None
        The network; it must contain a dropout layer with a positive rate
        (:class:`torch.nn.Dropout`, ``Dropout1d``, ``Dropout2d`` or ``Dropout3d``).
        ``None`` builds an :class:`~ensemblekit.models.MLP` sized from the data,
        with ``module__dropout=0.1`` unless that parameter is routed.
    n_estimators : int, default=1
        Number of independently trained networks; their samples are pooled.
    n_samples : int, default=30
        Thinned networks per run.
    criterion : type, default=None
        Loss class taking logits; ``None`` means :class:`torch.nn.CrossEntropyLoss`.
    optimizer : type, default=torch.optim.Adam
        Optimizer class; its arguments are routed with ``optimizer__*``.
    lr : float, default=1e-3
        Learning rate.
    max_epochs : int, default=50
        Training epochs of each run.
    batch_size : int, default=128
        Training batch size.
    predict_batch_size : int, default=1024
        Rows evaluated at once at prediction time.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available.
    n_jobs : int or None, default=None
        Groups of runs trained at the same time through :class:`joblib.Parallel`:
        loky worker processes by default, the workers of a Dask cluster inside
        ``joblib.parallel_backend("dask")``. ``None`` means 1 unless a joblib backend
        context sets it; ``-1`` means all CPUs. The runs equal those of ``n_jobs=1``.
        Ignored when ``devices`` is given.
    devices : "all", list of str or None, default=None
        Shard the runs over these devices (one group and one worker process per
        device) and gather them on the first one after training; ``"all"`` means
        every visible CUDA device (the CPU when there is none). ``None`` trains on
        ``device``.
    memory : str, joblib.Memory or None, default=None
        Cache of trained runs, as in :class:`sklearn.pipeline.Pipeline`: a folder
        or a :class:`joblib.Memory` whose folder is used. Each run is stored under
        a key of everything that determines it (data, parameters, its seed) and
        loaded instead of trained when asked for again, so a ``GridSearchCV`` over
        ``n_estimators`` trains each run once. Needs an integer ``random_state``.
    engine : {"auto", "sequential", "vectorized"}, default="auto"
        How the runs are trained, as in
        :class:`~ensemblekit.estimators.DeepEnsembleClassifier`: ``"vectorized"``
        trains all runs in one batched pass, ``"sequential"`` one skorch net after
        the other, ``"auto"`` the first when possible. Each run draws its training
        dropout masks from its own seed in both engines. On the CPU the two engines
        draw the same masks, so they give the same runs up to floating-point
        rounding; on CUDA the vectorised engine's masks differ from those of CUDA's
        fused dropout kernel, so the runs are other draws from the same
        distribution, not the same networks.
    max_members_per_pass : int or None, default=None
        Vectorised engine: train at most this many runs at once, to bound memory.
        ``None`` takes all runs; on CUDA a pass that runs out of memory is retried
        with half as many runs. The runs do not depend on it. Prediction evaluates
        at most this many thinned networks in one grouped pass.
    precision : {"fp32", "bf16"}, default="fp32"
        Vectorised engine: ``"bf16"`` trains under bfloat16 autocast (fast on
        recent GPUs). Parameters, optimizer and prediction stay in float32. The
        sequential engine ignores it, with a warning.
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
        Source of the run seeds; a run's seed fixes its initialisation, data order,
        training dropout and the masks of its samples.
    verbose : int, default=0
        ``1`` shows a progress bar; ``2`` also prints each run's epoch table when
        the sequential engine trains.
    callbacks : list of skorch callbacks, default=None
        Callbacks copied to every run.
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
        Parameters routed to the runs' skorch nets (``module__*``, ``optimizer__*``,
        ...), as in :class:`~ensemblekit.estimators.DeepEnsembleClassifier`.

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
        The trained runs.
    seeds_ : ndarray of shape (n_estimators,)
        Seed of each run.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Size of the second axis of ``X``.
    input_shape_ : tuple of int
        Shape of one sample, ``X.shape[1:]``.
    device_ : str
        Device the runs are on: ``device``, or the first of ``devices``.
    n_members_trained_ : int
        Runs the last call to :meth:`fit` trained.
    n_members_loaded_ : int
        Runs the last call to :meth:`fit` loaded from ``memory``.
    output_kind_ : {"logits", "proba", "log_proba"}
        What the module returns, found at ``fit`` from the criterion and the
        module's outputs on a few training rows (skorch's conventions:
        ``CrossEntropyLoss`` takes logits, ``NLLLoss`` probabilities or
        log-probabilities); predictions turn them into probabilities.
    n_samples_ : int
        Thinned networks per run used at prediction time.
    engine_ : {"sequential", "vectorized"}
        Engine that trained the runs (the last ones, after :meth:`partial_fit`).
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
    DeepEnsembleClassifier : Independently trained networks, one per mode.
    SWAGClassifier : Gaussian fitted to the SGD iterates of one run.
    SubspaceSamplingClassifier : Dropout, random and Gaussian subspaces of the weights.

    Notes
    -----
    :meth:`predict_member_proba` returns one row per thinned network, shape
    ``(n_estimators * n_samples, n_rows, n_classes)`` with the samples of run 0
    first. The thinned networks are evaluated together, in grouped passes of up to
    ``max_members_per_pass`` networks: on the first prediction each one is built
    as a standalone copy of its run with every dropout layer replaced by its fixed
    mask, and the copies are kept (not pickled) until the runs change. This holds
    ``n_estimators * n_samples`` copies of the network in memory; networks whose
    masks cannot be fixed ahead of the inputs are evaluated one sample at a time.

    References
    ----------
    Y. Gal, Z. Ghahramani. "Dropout as a Bayesian Approximation: Representing
    Model Uncertainty in Deep Learning", ICML 2016.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from ensemblekit import DropoutClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DropoutClassifier(n_samples=6, max_epochs=5, random_state=0,
    ...                         module__hidden_layer_sizes=(16,)).fit(X, y)
    >>> clf.predict_member_proba(X[:5]).shape
    (6, 5, 3)
    """

    def __init__(
        self,
        module: Any = None,
        n_estimators: int = 1,
        *,
        n_samples: int = 30,
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
        precision: str = "fp32",
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
        self.n_samples = n_samples
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
        self.precision = precision
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
        check_int("n_samples", self.n_samples)
        check_option("engine", self.engine, ENGINES)
        check_option("precision", self.precision, PRECISIONS)
        if self.max_members_per_pass is not None:
            check_int("max_members_per_pass", self.max_members_per_pass)

    _member_attributes: ClassVar[dict[str, str]] = {
        "n_samples_": "shared", "engine_": "shared", "engine_reason_": "shared",
    }

    def _trains_jointly(self) -> bool:
        return self.engine != "sequential"

    def partial_fit(self, X: Any, y: Any, classes: Any = None,
                    sample_weight: Any = None) -> DropoutClassifier:
        return self._partial_fit(X, y, classes, sample_weight)

    partial_fit.__doc__ = classifier_partial_fit_doc(
        "member", "Train every member for one more epoch on ``(X, y)``.")

    def _continue_members(self, nets: Any, X: np.ndarray, y: np.ndarray, seeds: Any,
                          sample_weight: np.ndarray | None) -> None:
        self._train(nets, X, y, seeds, None, sample_weight, initialize=False, epochs=1)

    def _train(self, nets: Sequence[Any], X: np.ndarray, y: np.ndarray, seeds: Sequence[int],
               progress: Progress | None, sample_weight: np.ndarray | None,
               **kwargs: Any) -> None:
        # Shared with the regressor of the same method.
        choice = train_members(
            nets, X, y, seeds, progress,
            engine=self.engine,
            max_members_per_pass=self.max_members_per_pass,
            precision=self.precision,
            sample_weight=sample_weight,
            **kwargs,
        )
        if choice.engine == "sequential" and self.precision != "fp32":
            warnings.warn(
                f"precision={self.precision!r} applies to the vectorised engine only; the "
                f"sequential engine trained in float32 ({choice.reason}).",
                UserWarning,
                stacklevel=external_stacklevel(),
            )
        self.engine_ = choice.engine
        self.engine_reason_ = choice.reason

    def _n_members(self) -> int:
        return int(self.n_estimators)

    def _module_spec(self, X: np.ndarray) -> tuple[Any, dict[str, Any]]:
        module, kwargs = super()._module_spec(X)
        if self.module is None:
            kwargs.setdefault("dropout", DEFAULT_DROPOUT)
        return module, kwargs

    def _fit_members(
        self,
        nets: Sequence[NeuralNetClassifier],
        X: np.ndarray,
        y: np.ndarray,
        seeds: Sequence[int],
        progress: Progress,
        sample_weight: np.ndarray | None = None,
    ) -> None:
        # Building the first run (as training will rebuild it, from the same seed)
        # lets a network without dropout fail before any training.
        initialize_member(nets[0], seeds[0])
        if not dropout_layers(nets[0].module_):
            names = ", ".join(cls.__name__ for cls in SUPPORTED_DROPOUT)
            raise ValueError(
                f"{type(self).__name__} needs a module with a dropout layer of positive rate "
                f"({names}), but {type(nets[0].module_).__name__} has none. With "
                "module=None, set module__dropout > 0."
            )
        self._train(nets, X, y, seeds, progress, sample_weight)
        if self.verbose > 0:
            print(f"[{type(self).__name__}] engine: {self.engine_} ({self.engine_reason_})")
        self.n_samples_ = int(self.n_samples)

    def _member_logits(self, X: np.ndarray) -> np.ndarray:
        # All thinned networks in grouped passes when they can be fixed as standalone
        # networks (the same masks as the loop below, which is the fallback).
        thinned = _thinned_networks(self, tuple(X.shape[1:]))
        if thinned is not None:
            return self._predict_logits(thinned, X)
        return self._member_logits_loop(X)

    def _member_logits_loop(self, X: np.ndarray) -> np.ndarray:
        n_samples = self.n_samples_
        out: np.ndarray | None = None
        for m, (net, seed) in enumerate(zip(self.estimators_, self.seeds_)):
            for s in range(n_samples):
                with thinned_network(net.module_, derive_seed(int(seed), _MASK_STREAM, s)):
                    logits = predict_logits_sequential([net.module_], X, self.predict_batch_size)
                if out is None:
                    out = np.empty((len(self.estimators_) * n_samples, *logits.shape[1:]),
                                   dtype=np.float32)
                out[m * n_samples + s] = logits[0]
        assert out is not None
        return out
