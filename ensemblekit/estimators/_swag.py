"""SWAG: a Gaussian posterior fitted to the SGD iterates of one training run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback

from ..engine import (
    ENGINES,
    EngineChoice,
    MemberMonitor,
    MonitorCallback,
    Progress,
    StopCallback,
    derive_seed,
    train_members,
)
from ..posteriors import SWAGCollector, flatten_parameters, refresh_rows, sampled_networks
from ._base import BaseNeuralClassifier
from ._partial_fit_doc import classifier_partial_fit_doc
from ._validation import check_float, check_int, check_option

SWAGMethod = Literal["swa", "diagonal", "lowrank"]
METHODS: tuple[str, ...] = ("swa", "diagonal", "lowrank")
DEFAULT_MAX_RANK = 20
_COLLECTOR = "ensemblekit_swag"
_SWA_SCORES = "ensemblekit_swa_scores"
# Stream identifiers: posterior draws and BatchNorm refresh rows never share a stream.
_SAMPLE_STREAM = 21
_REFRESH_STREAM = 22


class SWAGClassifier(BaseNeuralClassifier):
    r"""SWAG (stochastic weight averaging Gaussian) and MultiSWAG.

    Each run trains a network for ``max_epochs`` epochs. From epoch ``swa_start``
    on (the SWA phase) the learning rate is held at ``swa_lr`` and, at the end of
    every ``swa_freq``-th epoch, the parameters are added to running first and
    second moments; the deviations of the last ``max_rank`` iterates from the
    running mean are kept as the columns of a matrix ``D``
    (see :class:`~ensemblekit.posteriors.SWAGMoments`). With
    :math:`\bar\theta` the SWA mean, :math:`\sigma^2` the per-parameter variance
    of the collected iterates and ``K'`` the number of deviation columns actually
    collected (not ``max_rank``), ``method`` picks the posterior:

    * ``"swa"``: the point estimate :math:`\bar\theta` (one network per run);
    * ``"diagonal"``: :math:`\theta = \bar\theta + \sqrt{s}\,\sigma\odot z_1`,
      i.e. :math:`N(\bar\theta, s\,\Sigma_{diag})`;
    * ``"lowrank"``: :math:`\theta = \bar\theta + \sqrt{s}\,(\sigma\odot z_1
      + D z_2/\sqrt{K'-1})`, i.e. :math:`N(\bar\theta, s\,(\Sigma_{diag} +
      D D^\top/(K'-1)))`,

    with :math:`z_1, z_2` standard normal, :math:`\Sigma_{diag} = diag(\sigma^2)` and
    ``s = scale``. The default ``scale=None`` gives the distributions of Maddox et
    al. (2019): SWAG-Diagonal :math:`N(\bar\theta, \Sigma_{diag})` (``s = 1``) and
    SWAG :math:`\bar\theta + \Sigma_{diag}^{1/2} z_1/\sqrt2 + D z_2/\sqrt{2(K'-1)}`
    (``s = 1/2``). The ``n_samples``
    networks of each run are drawn once, at the end of :meth:`fit`, from a
    generator seeded by the run's seed, and every one of them gets its BatchNorm
    statistics recomputed on (at most ``bn_update_size``) training rows. Prediction
    is therefore deterministic and each row's prediction is independent of the
    other rows. With ``n_estimators > 1`` independent runs are ensembled
    (MultiSWAG).

    Parameters
    ----------
    module : type or torch.nn.Module or None, default=None
        The network, as in :class:`~ensemblekit.estimators.DeepEnsembleClassifier`;
        ``None`` builds an :class:`~ensemblekit.models.MLP` sized from the data.
    n_estimators : int, default=1
        Number of independent SWAG runs; more than one gives MultiSWAG.
    method : {"swa", "diagonal", "lowrank"}, default="lowrank"
        Posterior approximation, see above.
    n_samples : int, default=30
        Networks drawn per run (ignored by ``"swa"``, which has one).
    swa_start : int or None, default=None
        First epoch (zero-based) of the SWA phase; ``None`` means
        ``max_epochs // 2``. Must be smaller than ``max_epochs``.
    swa_freq : int, default=1
        Collect the parameters every ``swa_freq`` epochs of the SWA phase.
    swa_lr : float or None, default=None
        Constant learning rate of the SWA phase, set on the optimizer at the start
        of each SWA epoch; ``None`` keeps the optimizer's rate. A learning-rate
        scheduler among ``callbacks`` may override it.
    max_rank : int or None, default=None
        Maximum number ``K`` of deviation columns. ``None`` means
        ``min(20, n_collected)``, where ``n_collected`` is the number of epochs
        collected, ``len(range(swa_start, max_epochs, swa_freq))``; an explicit value
        larger than ``n_collected`` is an error.
    scale : float or None, default=None
        Multiplier ``s`` of the whole covariance (the deviations from
        :math:`\bar\theta` are multiplied by its square root), as in the authors'
        reference code. ``None`` means the published posterior of ``method``:
        1 for ``"diagonal"``, 1/2 for ``"lowrank"``. Ignored by ``"swa"``.
    bn_update_size : int or None, default=1024
        Training rows used to recompute each sample's BatchNorm statistics
        (drawn with the run's seed); ``None`` uses all rows. Networks without
        BatchNorm skip the refresh.
    criterion : type, default=None
        Loss class taking logits; ``None`` means :class:`torch.nn.CrossEntropyLoss`.
    optimizer : type, default=torch.optim.Adam
        Optimizer class; its arguments are routed with ``optimizer__*``.
    lr : float, default=1e-3
        Learning rate before the SWA phase.
    max_epochs : int, default=50
        Epochs of each run, the SWA phase included.
    batch_size : int, default=128
        Training batch size.
    predict_batch_size : int, default=1024
        Rows evaluated at once at prediction time, and per forward pass of the
        BatchNorm refresh (whose statistics do not depend on it, see
        :func:`~ensemblekit.posteriors.refresh_batchnorm`).
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
        trains all runs (MultiSWAG) in one batched pass and collects each run's SWAG
        moments from the stacked parameters; for the same seeds it gives the same
        moments as ``"sequential"`` up to floating-point rounding.
    max_members_per_pass : int or None, default=None
        Vectorised engine: train at most this many runs at once.
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
        order, posterior draws and refresh rows.
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
        Shorten each run's pretraining (the epochs before ``swa_start``), never its
        SWA phase: each run holds out a stratified ``validation_fraction`` of the
        training rows and stops pretraining when its validation accuracy has not
        improved by at least ``tol`` for more than ``n_iter_no_change`` epochs in a
        row (the rule of :class:`sklearn.neural_network.MLPClassifier`, as in
        :class:`~ensemblekit.estimators.DeepEnsembleClassifier`), or at ``swa_start``.
        It then gets back the weights of its best pretraining epoch, and its SWA
        phase runs from them for ``max_epochs - swa_start`` epochs exactly as without
        early stopping (see Notes). Needs ``swa_start >= 1``.
        The validation accuracy is weighted: each validation row counts with its
        training weight, ``sample_weight`` times the ``class_weight`` of its class
        (1 without either).
    validation_fraction : float, default=0.1
        Fraction of the training rows held out for early stopping (stratified, at
        least 2 rows). Only used when ``early_stopping=True``, as in
        :class:`sklearn.neural_network.MLPClassifier`.
    n_iter_no_change : int, default=10
        Pretraining epochs without an improvement of at least ``tol`` tolerated
        before the SWA phase starts.
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
        Epochs each member trained, pretraining and SWA phase together.
    validation_scores_ : list of list of float or None
        With ``early_stopping=True``: validation accuracy after each epoch, one list
        per run, the SWA-phase epochs included (recorded for information only; they
        never stop the run); ``None`` otherwise.
    best_epoch_ : ndarray of shape (n_members,) or None
        With ``early_stopping=True``: zero-based pretraining epoch whose weights
        started each run's SWA phase; ``None`` otherwise.
    n_collected_ : ndarray of shape (n_estimators,)
        Parameter vectors each run's moments hold (``moments_[i].n_collected``).
    estimators_ : list of skorch.NeuralNetClassifier
        The trained runs, holding the final SGD iterate.
    moments_ : list of SWAGMoments
        The collected moments of each run.
    engine_ : {"sequential", "vectorized"}
        Engine that trained the runs.
    engine_reason_ : str
        Why that engine (the stacked form used, or why ``"auto"`` fell back).
    sample_networks_ : list of torch.nn.Module
        The sampled networks, run after run: ``n_estimators * n_samples`` of them
        (``n_estimators`` for ``"swa"``), BatchNorm refreshed.
    seeds_ : ndarray of shape (n_estimators,)
        Seed of each run.
    swa_start_ : int
        First epoch of the SWA phase used (with early stopping, the epoch before
        which pretraining ended at the latest; see Notes).
    max_rank_ : int
        Maximum number of deviation columns used.
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
    SubspaceSamplingClassifier : Other samplers around one solution.
    DropoutClassifier : Monte Carlo dropout.

    Notes
    -----
    With ``early_stopping=True`` a run trains in two phases. Pretraining runs at
    most ``swa_start`` epochs under the stopping rule; when it stops (or reaches
    ``swa_start``) the run's best pretraining weights are put back (the optimizer
    state, e.g. Adam's moments, stays that of the last epoch run). The SWA phase
    then continues the run, from its own epoch count (data order and random draws
    go on as in :meth:`partial_fit`), for ``max_epochs - swa_start`` epochs at
    ``swa_lr``, collecting every ``swa_freq``-th of them counted from the run's own
    SWA start: run ``i``'s SWA phase covers its epochs ``n_iter_[i] - (max_epochs -
    swa_start_)`` to ``n_iter_[i] - 1``. The SWA phase is never cut short and no
    "best" SWA epoch is restored: its iterates are the posterior, and the SWAG
    protocol (Maddox et al., 2019) pretrains to convergence and then collects. Both
    engines give the same runs for networks without dropout; the vectorised engine
    trains together the runs that stopped after the same number of epochs.

    :meth:`predict_member_proba` returns one row per sampled network, shape
    ``(n_estimators * n_samples, n_rows, n_classes)`` with the samples of run 0
    first; :meth:`predict_proba` is their mean (Bayesian model averaging).

    References
    ----------
    W. Maddox, T. Garipov, P. Izmailov, D. Vetrov, A. G. Wilson. "A Simple
    Baseline for Bayesian Uncertainty in Deep Learning", NeurIPS 2019.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from ensemblekit import SWAGClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SWAGClassifier(n_samples=4, max_epochs=8, swa_start=4, random_state=0,
    ...                      module__hidden_layer_sizes=(16,)).fit(X, y)
    >>> clf.predict_member_proba(X[:5]).shape
    (4, 5, 3)
    >>> clf.moments_[0].rank
    4
    """

    def __init__(
        self,
        module: Any = None,
        n_estimators: int = 1,
        *,
        method: SWAGMethod = "lowrank",
        n_samples: int = 30,
        swa_start: int | None = None,
        swa_freq: int = 1,
        swa_lr: float | None = None,
        max_rank: int | None = None,
        scale: float | None = None,
        bn_update_size: int | None = 1024,
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
        self.swa_start = swa_start
        self.swa_freq = swa_freq
        self.swa_lr = swa_lr
        self.max_rank = max_rank
        self.scale = scale
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
        self._validate_method_params()

    def _validate_method_params(self) -> None:
        # Shared with the regressor of the same method.
        check_int("n_estimators", self.n_estimators)
        check_option("method", self.method, METHODS)
        check_option("engine", self.engine, ENGINES)
        if self.max_members_per_pass is not None:
            check_int("max_members_per_pass", self.max_members_per_pass)
        check_int("n_samples", self.n_samples)
        check_int("swa_freq", self.swa_freq)
        if self.scale is not None:
            check_float("scale", self.scale, low_inclusive=True)
        if self.swa_lr is not None:
            check_float("swa_lr", self.swa_lr)
        if self.bn_update_size is not None:
            check_int("bn_update_size", self.bn_update_size)
        max_epochs = int(self.max_epochs)
        if self.swa_start is None:
            swa_start = max_epochs // 2
        else:
            swa_start = check_int("swa_start", self.swa_start, min_value=0)
            if swa_start >= max_epochs:
                raise ValueError(
                    f"swa_start={swa_start} must be smaller than max_epochs={max_epochs}: "
                    "the SWA phase would collect nothing."
                )
        if getattr(self, "early_stopping", False) is True and swa_start < 1:
            raise ValueError(
                f"early_stopping=True shortens the pretraining epochs before swa_start, "
                f"but swa_start={swa_start} leaves none; set swa_start >= 1 or "
                "early_stopping=False."
            )
        n_collected = len(range(swa_start, max_epochs, int(self.swa_freq)))
        if self.max_rank is None:
            max_rank = min(DEFAULT_MAX_RANK, n_collected)
        else:
            max_rank = check_int("max_rank", self.max_rank)
            if max_rank > n_collected:
                raise ValueError(
                    f"max_rank={max_rank} exceeds the {n_collected} parameter vectors the SWA "
                    f"phase collects (epochs {swa_start} to {max_epochs - 1}, every "
                    f"{self.swa_freq}); lower max_rank or lengthen the SWA phase."
                )
        if self.method == "lowrank" and max_rank < 2:
            raise ValueError(
                "method='lowrank' needs at least 2 deviation columns, but the SWA phase "
                f"collects {n_collected} and max_rank={max_rank}; lengthen the SWA phase or "
                "use method='diagonal'."
            )
        # Public ``*_`` attributes appear only once fitting succeeds.
        self._swa_schedule = (swa_start, max_rank)

    _member_attributes: ClassVar[dict[str, str]] = {
        "moments_": "item", "sample_networks_": "chunk",
        "swa_start_": "shared", "max_rank_": "shared",
        "engine_": "shared", "engine_reason_": "shared",
    }

    def _trains_jointly(self) -> bool:
        return self.engine != "sequential"

    def _n_members(self) -> int:
        return int(self.n_estimators)

    def _member_callbacks(self, seed: int) -> list[Any]:
        swa_start, max_rank = self._swa_schedule
        collector = SWAGCollector(
            swa_start=swa_start, swa_freq=int(self.swa_freq), swa_lr=self.swa_lr,
            max_rank=max_rank,
        )
        return [(_COLLECTOR, collector)]

    # ------------------------------------------------------------ fitting
    def _fit_members(
        self,
        nets: Sequence[NeuralNetClassifier],
        X: np.ndarray,
        y: np.ndarray,
        seeds: Sequence[int],
        progress: Progress,
        sample_weight: np.ndarray | None = None,
    ) -> None:
        seeds = [int(s) for s in seeds]
        swa_start, _ = self._swa_schedule
        monitored = any(isinstance(_callback(entry), MonitorCallback)
                        for net in nets for entry in net.callbacks or [])
        if not monitored:
            choices = [train_members(
                nets, X, y, seeds, progress, engine=self.engine,
                max_members_per_pass=self.max_members_per_pass, sample_weight=sample_weight,
            )]
        else:
            # Early stopping shortens the pretraining only: each run stops (or reaches
            # swa_start) and gets back its best pretraining weights, then its SWA
            # phase runs from them, from the run's own epoch count on.
            choices = [train_members(
                nets, X, y, seeds, progress, engine=self.engine,
                max_members_per_pass=self.max_members_per_pass, sample_weight=sample_weight,
                epochs=swa_start,
            )]
            recorders = [_start_swa_phase(net) for net in nets]
            choices += _continue_runs(self, nets, X, y, seeds, sample_weight, progress,
                                           int(self.max_epochs) - swa_start)
            for net, recorder in zip(nets, recorders):
                recorder.write_history(net)
                net.callbacks_ = [(name, cb) for name, cb in net.callbacks_
                                  if cb is not recorder]
        _set_engine(self, choices)
        _draw_posterior(self, nets, X, seeds)
        self.swa_start_, self.max_rank_ = self._swa_schedule

    # ------------------------------------------------------------ partial fit
    def partial_fit(self, X: Any, y: Any, classes: Any = None,
                    sample_weight: Any = None) -> SWAGClassifier:
        return self._partial_fit(X, y, classes, sample_weight)

    partial_fit.__doc__ = classifier_partial_fit_doc(
        "run", "Train every run for one more epoch on ``(X, y)`` and redraw its posterior.",
        behaviour=(
            "Epochs are numbered per run from 0 over all calls: an epoch ``e >= "
            "swa_start`` (``None``: ``max_epochs // 2``, as in :meth:`fit`) runs at "
            "``swa_lr`` and is collected when ``(e - swa_start) % swa_freq == 0``, so "
            "the moments grow call after call (after an early-stopped :meth:`fit`, each "
            "run's own SWA start counts). After each call the ``n_samples`` networks of "
            "every run are drawn again from its moments, from the run's seed, and "
            "BatchNorm refreshed on the rows of this call. Before a run has collected "
            "any iterate (``n_collected_`` is 0: every call so far ran before "
            "``swa_start``) its networks are copies of its current weights, a point "
            "estimate; while it holds a single deviation, ``method=\"lowrank\"`` draws "
            "from the diagonal part alone (the low-rank term needs two)."))

    def _continue_members(self, nets: Any, X: np.ndarray, y: np.ndarray, seeds: Any,
                          sample_weight: np.ndarray | None) -> None:
        _set_engine(self, _continue_runs(self, nets, X, y, seeds, sample_weight, None, 1))
        _draw_posterior(self, nets, X, seeds)

    @property
    def n_collected_(self) -> np.ndarray:
        """Iterates each run has collected, shape (n_estimators,)."""
        return np.array([m.n_collected for m in self.moments_], dtype=np.int64)

    # ------------------------------------------------------------ prediction
    def _member_logits(self, X: np.ndarray) -> np.ndarray:
        # All posterior samples are evaluated together, grouped like ensemble members.
        return self._predict_logits(self.sample_networks_, X)


def _callback(entry: Any) -> Any:
    return entry[1] if isinstance(entry, tuple) else entry


class _ValidationScores(Callback):
    """Validation accuracy after each epoch of the SWA phase, with no stopping rule.

    The early-stopping monitor's rows and scoring, run by both engines (skorch's
    ``on_epoch_end`` or the vectorised engine's ``on_stacked_epoch_end``); the scores
    are written into the run's history afterwards, never flagged as best epochs.
    """

    def __init__(self, monitor: MemberMonitor) -> None:
        self.monitor = monitor
        self.scores: list[float] = []

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self.on_stacked_epoch_end(len(net.history) - 1, net.module_)

    def on_stacked_epoch_end(self, epoch: int, module: torch.nn.Module) -> None:
        self.scores.append(self.monitor.score(module))

    def write_history(self, net: Any) -> None:
        rows = net.history[len(net.history) - len(self.scores):]
        for row, score in zip(rows, self.scores):
            row[self.monitor.key] = score
            row[f"{self.monitor.key}_best"] = False


def _start_swa_phase(net: Any) -> _ValidationScores:
    """End a run's pretraining: its SWA phase starts at its epoch count, and its
    validation rows are scored (without a stopping rule) from now on."""
    callbacks = dict(net.callbacks_)
    monitor = next(cb for cb in callbacks.values() if isinstance(cb, MonitorCallback))
    callbacks[_COLLECTOR].swa_start = len(net.history)
    recorder = _ValidationScores(monitor.monitor)
    net.callbacks_ = [
        (name, cb) for name, cb in net.callbacks_
        if not isinstance(cb, (MonitorCallback, StopCallback))
    ] + [(_SWA_SCORES, recorder)]
    return recorder


def _continue_runs(
    estimator: Any,
    nets: Sequence[NeuralNetClassifier],
    X: np.ndarray,
    y: np.ndarray,
    seeds: Sequence[int],
    sample_weight: np.ndarray | None,
    progress: Progress | None,
    epochs: int,
) -> list[EngineChoice]:
    """Train fitted runs ``epochs`` more epochs, each from its own epoch count.

    :func:`~ensemblekit.engine.train_members` trains together the runs of one epoch
    count (runs stopped apart by early stopping form several groups).
    """
    return [train_members(
        list(nets), X, y, [int(s) for s in seeds], progress,
        engine=estimator.engine, max_members_per_pass=estimator.max_members_per_pass,
        sample_weight=sample_weight, initialize=False, epochs=epochs,
    )]


def _set_engine(estimator: Any, choices: Sequence[EngineChoice]) -> None:
    vectorized = [c for c in choices if c.engine == "vectorized"]
    if len(vectorized) == len(choices):
        estimator.engine_, estimator.engine_reason_ = "vectorized", choices[0].reason
    else:
        fallback = next(c for c in choices if c.engine != "vectorized")
        estimator.engine_, estimator.engine_reason_ = "sequential", fallback.reason


def _draw_posterior(
    estimator: Any, nets: Sequence[NeuralNetClassifier], X: np.ndarray, seeds: Sequence[int]
) -> None:
    """Draw each run's networks from its moments (from its seed), BatchNorm refreshed.

    A run that has collected nothing yet (``partial_fit`` before ``swa_start``)
    gives copies of its current weights; with fewer than 2 deviations the
    low-rank term is left out (it needs ``K' >= 2``).
    """
    networks: list[torch.nn.Module] = []
    moments = []
    n_draws = 1 if estimator.method == "swa" else int(estimator.n_samples)
    for net, seed in zip(nets, seeds):
        run_moments = dict(net.callbacks_)[_COLLECTOR].moments
        if run_moments.n_collected == 0:
            current = flatten_parameters(net.module_).float().cpu()
            thetas = current[None].repeat(n_draws, 1)
        elif estimator.method == "swa":
            thetas = run_moments.mean.to(torch.float32)[None]
        else:
            generator = torch.Generator().manual_seed(derive_seed(seed, _SAMPLE_STREAM))
            covariance = estimator.method
            scale = estimator.scale
            if covariance == "lowrank" and run_moments.rank < 2:
                # The diagonal part of the low-rank posterior, at its scale (1/2).
                covariance = "diagonal"
                scale = 0.5 if scale is None else scale
            thetas = run_moments.sample(n_draws, generator, covariance=covariance,
                                        scale=scale)
        refresh = torch.Generator().manual_seed(derive_seed(seed, _REFRESH_STREAM))
        rows = refresh_rows(len(X), estimator.bn_update_size, refresh)
        networks += sampled_networks(net.module_, thetas, X[rows], estimator.predict_batch_size)
        moments.append(run_moments)
    estimator.moments_ = moments
    estimator.sample_networks_ = networks
