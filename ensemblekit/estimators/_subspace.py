"""Subspace sampling around one solution: the samplers of the loss-landscape study."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from .._stacklevel import external_stacklevel
from ..engine import (
    ENGINES,
    MemberSampler,
    Progress,
    derive_seed,
    predict_logits_sequential,
    train_members,
)
from ..posteriors import (
    CheckpointCollector,
    diagonal_gaussian_samples,
    dropout_subspace_sample,
    flatten_parameters,
    pca_gaussian_samples,
    random_subspace_sample,
    refresh_rows,
    sampled_network,
    sampled_networks,
    weight_average,
)
from ._base import BaseNeuralClassifier
from ._partial_fit_doc import classifier_partial_fit_doc
from ._validation import check_float, check_int, check_option

SubspaceMethod = Literal[
    "random", "dropout", "diagonal_gaussian", "pca_gaussian", "pca_random", "weight_average"
]
METHODS: tuple[str, ...] = (
    "random",
    "dropout",
    "diagonal_gaussian",
    "pca_gaussian",
    "pca_random",
    "weight_average",
)
_CHECKPOINT_METHODS = ("diagonal_gaussian", "pca_gaussian", "weight_average")
_RANDOM_METHODS = ("random", "pca_random")
#: Late-training epochs recorded when ``collect_from_epoch`` is None.
DEFAULT_LATE_EPOCHS = 10
_COLLECTOR = "ensemblekit_checkpoints"
# Stream identifiers of the per-run draws.
_SAMPLE_STREAM = 41
_REFRESH_STREAM = 42
_SPLIT_STREAM = 43


class SubspaceSamplingClassifier(BaseNeuralClassifier):
    r"""Networks sampled in a subspace around one trained solution, and their ensembles.

    Each run trains a network to a solution :math:`\theta^*` (its final weights)
    and draws ``n_samples`` parameter vectors around it with ``method``; the
    predictive distribution averages the softmax outputs of the samples. All
    vectors are flat over every weight *and* bias of the network.

    * ``"random"``: :math:`\theta = \theta^* + s\,v`, ``v`` a standard normal
      vector normalised to unit L2 norm, :math:`s = \text{random\_scale}\cdot
      U(0,1)`. A draw is rejected when its accuracy on the run's acceptance rows is
      below ``accuracy_threshold`` and drawn again, up to ``max_tries`` draws in
      all; when every draw is rejected the last one is kept (see ``accepted_``).
    * ``"dropout"``: every element of :math:`\theta^*` is kept with probability
      :math:`1-p` and rescaled by :math:`1/(1-p)`, else zeroed, with
      :math:`p = \text{dropout\_max\_p}\cdot U(0,1)` drawn per sample.
    * ``"diagonal_gaussian"``: :math:`\theta \sim N(\mu, (c\,\sigma)^2)` with
      :math:`\mu, \sigma` the per-parameter mean and standard deviation
      (``ddof=0``) of the late-training checkpoints, ``c = gaussian_scale``.
    * ``"pca_gaussian"``: :math:`\theta = \mu + \sum_{j\le r} z_j u_j`,
      :math:`z\sim N(0, c^2 I_r)`, with :math:`u_j` the unit-norm top-``rank``
      principal directions of the mean-centred checkpoints; ``z`` is *not* scaled
      by the principal variances.
    * ``"pca_random"``: the same PCA sampler fitted to ``n_samples`` accepted
      ``"random"`` samples of the run.
    * ``"weight_average"``: the mean of the checkpoints, one network per run.

    The checkpoints are the weights at the end of each epoch from
    ``collect_from_epoch`` on. Every sampled network gets its BatchNorm statistics
    recomputed on (at most ``bn_update_size``) of the run's training rows. With
    ``n_estimators > 1`` independent runs are ensembled ("ensemble + subspace").
    The defaults follow the ensemble experiment of Fort et al.: 30 samples,
    random subspace scale 10 with rejection below 70 % accuracy and up to 5
    tries, Gaussian scale 1, PCA rank 5, checkpoints of the last 10 epochs. The
    default method is the diagonal Gaussian, whose spread adapts to the network;
    the unit-norm directions of ``"random"`` and ``"pca_gaussian"`` move a small
    network much further than the paper's convolutional networks.

    Parameters
    ----------
    module : type or torch.nn.Module or None, default=None
        The network, as in :class:`~ensemblekit.estimators.DeepEnsembleClassifier`;
        ``None`` builds an :class:`~ensemblekit.models.MLP` sized from the data.
    n_estimators : int, default=1
        Number of independent runs.
    method : str, default="diagonal_gaussian"
        Sampler: ``"random"``, ``"dropout"``, ``"diagonal_gaussian"``,
        ``"pca_gaussian"``, ``"pca_random"`` or ``"weight_average"``, see above.
    n_samples : int, default=30
        Networks drawn per run (``"weight_average"`` has one). For
        ``"pca_random"`` it is also the number of random samples the PCA is fitted to.
    collect_from_epoch : int or None, default=None
        First epoch (zero-based) whose weights are recorded as a checkpoint;
        ``None`` records the last 10 epochs (all epochs if there are fewer).
    rank : int, default=5
        Number of principal directions of the PCA samplers.
    gaussian_scale : float, default=1.0
        The multiplier ``c`` of the Gaussian samplers.
    random_scale : float, default=10.0
        Largest distance of a random-subspace draw from :math:`\theta^*`.
    dropout_max_p : float, default=0.1
        Largest drop probability of the dropout subspace, in ``[0, 1)``.
    accuracy_threshold : float, default=0.7
        Smallest accuracy on the acceptance rows (see ``acceptance_fraction``) of an
        accepted random-subspace draw, in ``[0, 1]``; 0 turns rejection off.
    max_tries : int, default=5
        Draws per random-subspace sample before the last draw is kept.
    acceptance_fraction : float, default=0.1
        Fraction of the training rows held out of each run's training (chosen with
        the run's seed) as its *acceptance set*: the rows on which the accuracy of a
        random-subspace draw is measured to accept or reject it. Rows are held out
        only by the random methods with ``accuracy_threshold > 0``; the other methods
        train on all rows. At least one row is held out, and the rows left to train a
        run on must number at least one per class in :meth:`fit` (after the
        early-stopping rows too, see ``validation_fraction``) and at least one in
        each call to :meth:`partial_fit`; otherwise a ``ValueError`` is raised.
        ``validation_fraction`` is another split: the early-stopping rows, as in the
        other estimators.
    bn_update_size : int or None, default=1024
        Training rows used to recompute each sample's BatchNorm statistics;
        ``None`` uses all of them.
    criterion : type, default=None
        Loss class taking logits; ``None`` means :class:`torch.nn.CrossEntropyLoss`.
    optimizer : type, default=torch.optim.Adam
        Optimizer class; its arguments are routed with ``optimizer__*``.
    lr : float, default=1e-3
        Learning rate.
    max_epochs : int, default=40
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
        :class:`~ensemblekit.estimators.DeepEnsembleClassifier`: the vectorised engine
        trains all runs in one batched pass, each on its own training rows (the
        acceptance rows of a run are left out of its batches, not of the data), and
        records the same checkpoints; for the same seeds it gives the same runs,
        hence the same samples, as ``"sequential"`` up to floating-point rounding
        (networks with dropout draw other masks). ``"auto"`` falls back to
        ``"sequential"`` where the vectorised engine cannot run (skorch callbacks,
        an optimizer that is not elementwise, layers that can be neither grouped nor
        vmapped); ``engine_`` and ``engine_reason_`` say what ran and why.
    max_members_per_pass : int or None, default=None
        Vectorised engine: train (and predict) at most this many runs (and samples)
        at once, to bound memory. ``None`` takes all of them.
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
        Source of the run seeds; a run's seed fixes its initialisation, data
        order, acceptance rows and samples.
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
        run and stop the run when its validation accuracy has not improved by at
        least ``tol`` for more than ``n_iter_no_change`` epochs in a row (the rule of
        :class:`sklearn.neural_network.MLPClassifier`); the run then gets back the
        weights of its best epoch, which become its :math:`\theta^*`, and its
        checkpoints are those of the epochs up to that one (see Notes). Each run
        stops on its own; in the vectorised engine a stopped run is frozen while the
        others go on. The validation rows are drawn first, as in the other
        estimators; the acceptance rows (``acceptance_fraction``) are then drawn
        from the rows left, so the two sets never overlap.
        The validation accuracy is weighted: each validation row counts with its
        training weight, ``sample_weight`` times the ``class_weight`` of its class
        (1 without either).
    validation_fraction : float, default=0.1
        Fraction of the training rows held out for early stopping (stratified, at
        least 2 rows). Only used when ``early_stopping=True``, as in
        :class:`sklearn.neural_network.MLPClassifier`: without it no row is held out
        for validation, whatever its value. It is not the acceptance split of the
        random methods, which is ``acceptance_fraction``.
    n_iter_no_change : int, default=10
        Epochs without an improvement of at least ``tol`` tolerated before stopping.
    tol : float, default=1e-4
        Minimum improvement of the validation accuracy.
    validation_split : {"per_member", "shared"}, default="per_member"
        ``"per_member"``: each run draws its own validation rows from its seed;
        ``"shared"``: every run holds out the same rows (drawn from the first run's
        seed).
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
        per run; ``None`` otherwise.
    best_epoch_ : ndarray of shape (n_members,) or None
        With ``early_stopping=True``: zero-based epoch whose weights each run holds
        (its best validation accuracy); ``None`` otherwise.
    estimators_ : list of skorch.NeuralNetClassifier
        The trained runs, holding :math:`\theta^*`.
    engine_ : {"sequential", "vectorized"}
        Engine that trained the runs.
    engine_reason_ : str
        Why that engine (the stacked form used, or why ``"auto"`` fell back).
    sample_networks_ : list of torch.nn.Module
        The sampled networks, run after run (``n_samples_`` per run).
    n_samples_ : int
        Networks per run: ``n_samples``, or 1 for ``"weight_average"``.
    n_tries_ : ndarray of shape (n_estimators, n_samples_per_run)
        Draws each sample took (the random stage of ``"pca_random"``; 1 for the
        methods without rejection); ``n_samples_per_run`` is ``n_samples_``.
    accepted_ : ndarray of shape (n_estimators, n_samples_per_run)
        Whether each sample passed the accuracy threshold (True for the methods
        without rejection).
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
    output_kind_ : {"logits", "proba", "log_proba"}
        What the module returns, found at ``fit`` from the criterion and the
        module's outputs on a few training rows (skorch's conventions:
        ``CrossEntropyLoss`` takes logits, ``NLLLoss`` probabilities or
        log-probabilities); predictions turn them into probabilities.

    See Also
    --------
    DeepEnsembleClassifier : Independently trained networks, one per mode.
    SWAGClassifier : Gaussian fitted to the SGD iterates of one run.
    DropoutClassifier : Monte Carlo dropout.

    Notes
    -----
    :meth:`predict_member_proba` returns one row per sampled network, shape
    ``(n_estimators * n_samples_, n_rows, n_classes)`` with the samples of run 0
    first.

    **Checkpoints.** A run records its weights after every epoch from
    ``collect_from_epoch`` on (epochs counted over the run's whole history) and
    keeps the most recent ``max_epochs - collect_from_epoch`` of them (the last 10
    with ``collect_from_epoch=None``): a fit uses exactly the epochs
    ``collect_from_epoch`` to ``max_epochs - 1``. A run stopped early uses the
    checkpoints of the epochs up to its best epoch (the last ones of the window
    ending there), so the trajectory ends where :math:`\theta^*` is; the epochs
    after it, whose weights the restore discarded, are dropped for good, and a later
    :meth:`partial_fit` extends the trajectory from the best epoch. When a run
    has fewer checkpoints than its method needs (2 for ``"diagonal_gaussian"``,
    ``rank`` for ``"pca_gaussian"``, 1 for ``"weight_average"``), which happens
    after early stopping or in the first calls to :meth:`partial_fit`, its
    samples are copies of :math:`\theta^*` (a point mass), with a warning.

    **partial_fit.** Each call trains every run one more epoch on the new rows (in
    the engine ``fit`` would use), holding out the acceptance rows of those rows as
    ``fit`` does, and then rebuilds all samples from the runs' updated state: the
    random and dropout subspaces around the new :math:`\theta^*` (draws judged on
    the new acceptance rows), the checkpoint methods from the window of
    checkpoints, which slides on by one epoch per call; BatchNorm statistics come
    from the new rows. ``k`` calls on the same rows train the runs of a fit with
    ``max_epochs=k`` (same data order, acceptance rows and optimizer state) and
    record the same checkpoints, hence draw the same samples.

    References
    ----------
    S. Fort, H. Hu, B. Lakshminarayanan. "Deep Ensembles: A Loss Landscape
    Perspective", arXiv:1912.02757.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from ensemblekit import SubspaceSamplingClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SubspaceSamplingClassifier(method="pca_gaussian", n_samples=4, rank=2,
    ...                                  max_epochs=6, random_state=0,
    ...                                  module__hidden_layer_sizes=(16,)).fit(X, y)
    >>> clf.predict_member_proba(X[:5]).shape
    (4, 5, 3)
    """

    def __init__(
        self,
        module: Any = None,
        n_estimators: int = 1,
        *,
        method: SubspaceMethod = "diagonal_gaussian",
        n_samples: int = 30,
        collect_from_epoch: int | None = None,
        rank: int = 5,
        gaussian_scale: float = 1.0,
        random_scale: float = 10.0,
        dropout_max_p: float = 0.1,
        accuracy_threshold: float = 0.7,
        max_tries: int = 5,
        acceptance_fraction: float = 0.1,
        bn_update_size: int | None = 1024,
        criterion: Any = None,
        optimizer: Any = torch.optim.Adam,
        lr: float = 1e-3,
        max_epochs: int = 40,
        batch_size: int = 128,
        predict_batch_size: int = 1024,
        device: str = "auto",
        n_jobs: int | None = None,
        devices: Any = None,
        memory: Any = None,
        engine: str = "auto",
        max_members_per_pass: int | None = None,
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
        self.method = method
        self.n_samples = n_samples
        self.collect_from_epoch = collect_from_epoch
        self.rank = rank
        self.gaussian_scale = gaussian_scale
        self.random_scale = random_scale
        self.dropout_max_p = dropout_max_p
        self.accuracy_threshold = accuracy_threshold
        self.max_tries = max_tries
        self.acceptance_fraction = acceptance_fraction
        self.bn_update_size = bn_update_size
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

    # ------------------------------------------------------------ parameters
    def _validate_params(self) -> None:
        super()._validate_params()
        check_int("n_estimators", self.n_estimators)
        method = check_option("method", self.method, METHODS)
        n_samples = check_int("n_samples", self.n_samples)
        rank = check_int("rank", self.rank)
        check_float("gaussian_scale", self.gaussian_scale, low_inclusive=True)
        check_float("random_scale", self.random_scale, low_inclusive=True)
        check_float("dropout_max_p", self.dropout_max_p, low_inclusive=True,
                    high=1.0, high_inclusive=False)
        check_float("accuracy_threshold", self.accuracy_threshold, low_inclusive=True,
                    high=1.0)
        check_int("max_tries", self.max_tries)
        check_float("acceptance_fraction", self.acceptance_fraction, high=1.0,
                    high_inclusive=False)
        if self.bn_update_size is not None:
            check_int("bn_update_size", self.bn_update_size)
        check_option("engine", self.engine, ENGINES)
        if self.max_members_per_pass is not None:
            check_int("max_members_per_pass", self.max_members_per_pass)
        max_epochs = int(self.max_epochs)
        if self.collect_from_epoch is None:
            start = max(0, max_epochs - DEFAULT_LATE_EPOCHS)
        else:
            start = check_int("collect_from_epoch", self.collect_from_epoch, min_value=0)
            if start >= max_epochs:
                raise ValueError(
                    f"collect_from_epoch={start} must be smaller than max_epochs={max_epochs}: "
                    "no checkpoint would be recorded."
                )
        n_checkpoints = max_epochs - start
        if method == "pca_gaussian" and rank > n_checkpoints:
            raise ValueError(
                f"rank={rank} exceeds the {n_checkpoints} checkpoints recorded (epochs "
                f"{start} to {max_epochs - 1}); lower rank or collect_from_epoch."
            )
        if method == "diagonal_gaussian" and n_checkpoints < 2:
            raise ValueError(
                "method='diagonal_gaussian' needs at least 2 checkpoints to estimate a "
                f"standard deviation, but only epoch {start} is recorded; lower "
                "collect_from_epoch."
            )
        if method == "pca_random" and rank > n_samples:
            raise ValueError(
                f"rank={rank} exceeds n_samples={n_samples}, the number of random-subspace "
                "samples the PCA of method='pca_random' is fitted to."
            )
        # Checkpoints are recorded from epoch ``start`` on, in a window of the
        # ``n_checkpoints`` most recent ones; ``collect_from_epoch=None`` starts at 0
        # with a window of the last DEFAULT_LATE_EPOCHS epochs. A fit records the same
        # epochs either way; continued training (partial_fit) slides the window on.
        self._collect_start = start if self.collect_from_epoch is not None else 0
        self._collect_window = n_checkpoints
        # A run stops at most n_iter_no_change + 1 epochs after its best one, whose
        # window of checkpoints must still be there.
        self._collect_keep = n_checkpoints + (int(self.n_iter_no_change) + 1
                                              if self.early_stopping else 0)

    _member_attributes: ClassVar[dict[str, str]] = {
        "sample_networks_": "chunk", "n_samples_": "shared", "n_tries_": "row",
        "accepted_": "row", "engine_": "shared", "engine_reason_": "shared",
    }

    def _trains_jointly(self) -> bool:
        return self.engine != "sequential"

    def _n_members(self) -> int:
        return int(self.n_estimators)

    def _member_callbacks(self, seed: int) -> list[Any]:
        if self.method in _CHECKPOINT_METHODS:
            keep = self._collect_keep
            return [(_COLLECTOR, CheckpointCollector(self._collect_start, keep))]
        return []

    def _rejects(self) -> bool:
        return self.method in _RANDOM_METHODS and float(self.accuracy_threshold) > 0

    # ------------------------------------------------------------ fitting
    def _n_acceptance_rows(self, n_rows: int) -> int:
        """Acceptance rows held out of ``n_rows``: ``acceptance_fraction`` of them,
        rounded, and at least 1."""
        return max(1, round(float(self.acceptance_fraction) * n_rows))

    def _check_training_rows(self, n_rows: int, n_valid: int, piece: bool) -> None:
        """Refuse hold-outs that leave a run too few rows to train on.

        ``n_rows`` rows reach the run, ``n_valid`` of them held out for early
        stopping; the acceptance rows are held out of the rest. :meth:`fit` needs at
        least one training row per class, as the stratified validation split needs
        of the rows it leaves; a :meth:`partial_fit` call (``piece``), whose rows may
        lack classes, needs one.
        """
        need = 1 if piece else len(self.classes_)
        n_pool = n_rows - n_valid
        n_accept = self._n_acceptance_rows(n_pool)
        n_train = n_pool - n_accept
        if n_train >= need:
            return
        fraction = float(self.acceptance_fraction)
        held = (f"method={self.method!r} holds out acceptance_fraction={fraction} of "
                f"the {_rows(n_pool)}")
        if n_valid:
            held = (f"early_stopping=True holds out validation_fraction="
                    f"{float(self.validation_fraction)} of the {n_rows} training rows "
                    f"({_rows(n_valid)}) for validation, and {held} left")
        elif piece:
            held += " passed to partial_fit"
        else:
            held += " of the training data"
        held += (f" as acceptance rows (rounded, and at least 1: {_rows(n_accept)}), "
                 f"leaving {_rows(n_train)} to train each run on")
        if piece:
            # Smallest call that leaves a training row: n - max(1, round(f * n)) >= 1.
            # Every n below 0.5 / (1 - f) fails, so the search starts just under it.
            smallest = max(2, int(0.5 / (1.0 - fraction)) - 1)
            while smallest - self._n_acceptance_rows(smallest) < 1:
                smallest += 1
            lower = ("" if smallest == 2 else ", lower acceptance_fraction (below 0.75 "
                     "a call of 2 rows is enough)")
            raise ValueError(
                f"{held}. Each call needs at least {smallest} rows with this "
                "acceptance_fraction (at least one acceptance row and one training row): "
                f"pass more rows per call{lower}, or set accuracy_threshold=0 to hold "
                "out no acceptance rows."
            )
        # The most rows any fractions leave: 1 acceptance row and, with early
        # stopping, max(2, n_classes) validation rows (the stratified split's minimum).
        least_valid = max(2, need) if n_valid else 0
        if n_rows - 1 - least_valid >= need:
            names = ("validation_fraction or acceptance_fraction" if n_valid
                     else "acceptance_fraction")
            advice = f"Lower {names}, or pass more rows."
        else:
            held_least = "1 acceptance row" + (
                f" and {least_valid} validation rows" if n_valid else "")
            advice = (f"No fraction leaves enough of these {n_rows} rows, as at least "
                      f"{held_least} are held out: pass more rows, or set "
                      "accuracy_threshold=0 to hold out no acceptance rows.")
        raise ValueError(
            f"{held}, fewer than the {need} classes; at least one training row per "
            f"class is needed. {advice}"
        )

    def _acceptance_split(self, pool: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A run's (training rows, acceptance rows): ``acceptance_fraction`` of ``pool``
        drawn with the run's seed."""
        n_rows = len(pool)
        n_accept = self._n_acceptance_rows(n_rows)
        generator = torch.Generator().manual_seed(derive_seed(seed, _SPLIT_STREAM))
        order = torch.randperm(n_rows, generator=generator).numpy()
        return pool[np.sort(order[n_accept:])], pool[np.sort(order[:n_accept])]

    def _hold_out_acceptance_rows(self, net: NeuralNetClassifier, pool: np.ndarray,
                                  seed: int) -> None:
        # The run trains on its own rows of the full data (its sampler draws only
        # them, in the order it would draw the rows of X[train] alone), so every engine
        # trains all runs on one array; the acceptance rows travel with the net.
        train, accept = self._acceptance_split(pool, seed)
        # An attribute, as skorch stores routed parameters (its set_params would
        # re-initialise parts of a fitted net).
        net.iterator_train__sampler = MemberSampler(len(train), seed, rows=train)
        net.acceptance_rows_ = accept

    def _make_member(
        self,
        seed: int,
        index: int,
        X: np.ndarray,
        device: str,
        progress: Progress | None,
        bootstrap: bool = False,
        output_kind: str = "logits",
        sample_weight: np.ndarray | None = None,
        split: tuple[np.ndarray, np.ndarray] | None = None,
        y: np.ndarray | None = None,
    ) -> NeuralNetClassifier:
        net = super()._make_member(seed, index, X, device, progress, bootstrap, output_kind,
                                   sample_weight, split, y)
        if self._rejects():
            pool = np.arange(len(X)) if split is None else split[0]
            piece = bool(getattr(self, "_first_partial_fit", False))
            # fit's first member (built without y) comes before the early-stopping rows
            # are drawn; the members built with them are checked with them.
            if y is not None or piece or not self.early_stopping:
                self._check_training_rows(len(X), 0 if split is None else len(split[1]),
                                          piece)
            self._hold_out_acceptance_rows(net, pool, seed)
        return net

    def partial_fit(self, X: Any, y: Any, classes: Any = None,
                    sample_weight: Any = None) -> SubspaceSamplingClassifier:
        return self._partial_fit(X, y, classes, sample_weight)

    partial_fit.__doc__ = classifier_partial_fit_doc(
        "run", "Train every run for one more epoch on ``(X, y)`` and draw the samples again.",
        behaviour=(
            "The random methods hold out the acceptance rows of the new rows. The "
            "samples are then rebuilt from the updated runs (see Notes: the checkpoint "
            "window slides on by one epoch)."),
        raises=(
            "the acceptance rows of a random method would leave no training row (a "
            "call needs at least one acceptance row and one training row: 2 rows for an "
            "``acceptance_fraction`` below 0.75)"))

    def _continue_members(self, nets: Any, X: np.ndarray, y: np.ndarray, seeds: Any,
                          sample_weight: np.ndarray | None) -> None:
        if self._rejects():
            self._check_training_rows(len(X), 0, piece=True)
        for net, seed in zip(nets, seeds):
            if self._rejects():
                self._hold_out_acceptance_rows(net, np.arange(len(X)), int(seed))
            elif hasattr(net, "acceptance_rows_"):
                del net.acceptance_rows_
        choice = train_members(
            nets, X, y, seeds, None, engine=self.engine,
            max_members_per_pass=self.max_members_per_pass, sample_weight=sample_weight,
            initialize=False, epochs=1,
        )
        self.engine_ = choice.engine
        self.engine_reason_ = choice.reason
        self._draw_samples(nets, X, y, seeds)

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
            nets, X, y, seeds, progress, engine=self.engine,
            max_members_per_pass=self.max_members_per_pass, sample_weight=sample_weight,
        )
        if self.verbose > 0:
            print(f"[{type(self).__name__}] engine: {choice.engine} ({choice.reason})")
        self.engine_ = choice.engine
        self.engine_reason_ = choice.reason
        self._draw_samples(nets, X, y, seeds)

    def _draw_samples(self, nets: Sequence[NeuralNetClassifier], X: np.ndarray,
                      y: np.ndarray, seeds: Sequence[int]) -> None:
        """Build every run's samples from its current state and its rows of ``X``."""
        networks: list[nn.Module] = []
        tries, accepted = [], []
        short: list[str] = []
        for index, (net, seed) in enumerate(zip(nets, seeds)):
            rows = net.get_params_for("iterator_train")["sampler"].rows
            X_train = X if rows is None else X[rows.numpy()]
            valid_rows = getattr(net, "acceptance_rows_", np.arange(0))
            refresh = torch.Generator().manual_seed(derive_seed(seed, _REFRESH_STREAM))
            X_refresh = X_train[refresh_rows(len(X_train), self.bn_update_size, refresh)]
            generator = torch.Generator().manual_seed(derive_seed(seed, _SAMPLE_STREAM))
            have, need = self._checkpoints_for(net)
            if have < need:
                short.append(f"run {index}: {have} of {need}")
                theta = flatten_parameters(net.module_).detach().cpu()
                n = 1 if self.method == "weight_average" else int(self.n_samples)
                thetas, run_tries, run_accepted = theta.repeat(n, 1), [1] * n, [True] * n
            else:
                thetas, run_tries, run_accepted = self._draw(
                    net, generator, X_refresh, X[valid_rows], y[valid_rows]
                )
            networks += sampled_networks(net.module_, thetas, X_refresh, self.predict_batch_size)
            tries.append(run_tries)
            accepted.append(run_accepted)
        self.sample_networks_ = networks
        self.n_samples_ = len(networks) // len(nets)
        self.n_tries_ = np.array(tries, dtype=np.int64)
        self.accepted_ = np.array(accepted, dtype=bool)
        if short:
            warnings.warn(
                f"method={self.method!r} has too few checkpoints for some runs ("
                f"{'; '.join(short)} needed); their samples are copies of the run's "
                "weights. Train more epochs (or call partial_fit more often), or lower "
                "collect_from_epoch.",
                UserWarning,
                stacklevel=external_stacklevel(),
            )

    def _checkpoints_for(self, net: NeuralNetClassifier) -> tuple[int, int]:
        """(checkpoints the run has, checkpoints its method needs); (0, 0) for the
        methods that use none."""
        if self.method not in _CHECKPOINT_METHODS:
            return 0, 0
        need = {"diagonal_gaussian": 2, "pca_gaussian": int(self.rank)}.get(self.method, 1)
        return len(_trajectory(net, self._collect_window)), need

    def _draw(
        self,
        net: NeuralNetClassifier,
        generator: torch.Generator,
        X_refresh: np.ndarray,
        X_valid: np.ndarray,
        y_valid: np.ndarray,
    ) -> tuple[torch.Tensor, list[int], list[bool]]:
        n_samples = int(self.n_samples)
        method = self.method
        if method in _RANDOM_METHODS:
            thetas, tries, accepted = self._random_samples(
                net.module_, generator, X_refresh, X_valid, y_valid
            )
            if method == "pca_random":
                thetas = pca_gaussian_samples(
                    thetas, int(self.rank), n_samples, float(self.gaussian_scale), generator
                )
            return thetas, tries, accepted
        if method == "dropout":
            theta = flatten_parameters(net.module_).cpu()
            p_max = float(self.dropout_max_p)
            thetas = torch.stack(
                [dropout_subspace_sample(theta, p_max, generator) for _ in range(n_samples)]
            )
        else:
            points = torch.stack(_trajectory(net, self._collect_window))
            if method == "diagonal_gaussian":
                thetas = diagonal_gaussian_samples(
                    points, n_samples, float(self.gaussian_scale), generator
                )
            elif method == "pca_gaussian":
                thetas = pca_gaussian_samples(
                    points, int(self.rank), n_samples, float(self.gaussian_scale), generator
                )
            else:
                thetas = weight_average(points)[None]
        return thetas, [1] * len(thetas), [True] * len(thetas)

    def _random_samples(
        self,
        module: nn.Module,
        generator: torch.Generator,
        X_refresh: np.ndarray,
        X_valid: np.ndarray,
        y_valid: np.ndarray,
    ) -> tuple[torch.Tensor, list[int], list[bool]]:
        theta = flatten_parameters(module).cpu()
        threshold = float(self.accuracy_threshold)
        samples, tries, accepted = [], [], []
        max_tries = int(self.max_tries) if self._rejects() else 1
        for _ in range(int(self.n_samples)):
            attempts, ok = 0, True
            while attempts < max_tries:
                attempts += 1
                candidate = random_subspace_sample(theta, float(self.random_scale), generator)
                if not self._rejects():
                    break
                network = sampled_network(module, candidate, X_refresh, self.predict_batch_size)
                logits = predict_logits_sequential([network], X_valid, self.predict_batch_size)
                ok = float(np.mean(logits[0].argmax(axis=1) == y_valid)) >= threshold
                if ok:
                    break
            samples.append(candidate)
            tries.append(attempts)
            accepted.append(ok)
        return torch.stack(samples), tries, accepted

    # ------------------------------------------------------------ prediction
    def _member_logits(self, X: np.ndarray) -> np.ndarray:
        # All posterior samples are evaluated together, grouped like ensemble members.
        return self._predict_logits(self.sample_networks_, X)


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _trajectory(net: NeuralNetClassifier, window: int) -> list[torch.Tensor]:
    """The checkpoints a run's subspace is built from.

    The last ``window`` recorded checkpoints up to the epoch whose weights the run
    holds: its best epoch when early stopping restored it in the last training
    call, its last epoch otherwise. Checkpoints of the epochs a restore discarded
    are dropped from the run's record, so training continued later (``partial_fit``)
    extends the trajectory the held weights actually followed.
    """
    collector = dict(net.callbacks_)[_COLLECTOR]
    history = net.history
    held = len(history) - 1
    if len(history) and history[-1].get("valid_acc") is not None:
        flagged = [i for i, row in enumerate(history) if row.get("valid_acc_best")]
        held = flagged[-1] if flagged else held
    kept = [i for i, e in enumerate(collector.epochs) if e <= held]
    if len(kept) < len(collector.epochs):
        collector.checkpoints = [collector.checkpoints[i] for i in kept]
        collector.epochs = [collector.epochs[i] for i in kept]
    return collector.checkpoints[-window:]
