"""SWAG: a Gaussian posterior fitted to the SGD iterates of one training run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from skorch import NeuralNetClassifier

from ..engine import ENGINES, Progress, derive_seed, train_members
from ..posteriors import SWAGCollector, refresh_rows, sampled_networks
from ._base import BaseNeuralClassifier
from ._validation import check_float, check_int, check_option

SWAGMethod = Literal["swa", "diagonal", "lowrank"]
METHODS: tuple[str, ...] = ("swa", "diagonal", "lowrank")
DEFAULT_MAX_RANK = 20
_COLLECTOR = "ensemblekit_swag"
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
        First epoch of the SWA phase used.
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
        choice = train_members(
            nets, X, y, seeds, progress, engine=self.engine,
            max_members_per_pass=self.max_members_per_pass, sample_weight=sample_weight,
        )
        self.engine_ = choice.engine
        self.engine_reason_ = choice.reason
        networks: list[torch.nn.Module] = []
        moments = []
        for net, seed in zip(nets, seeds):
            run_moments = dict(net.callbacks_)[_COLLECTOR].moments
            if self.method == "swa":
                thetas = run_moments.mean.to(torch.float32)[None]
            else:
                generator = torch.Generator().manual_seed(derive_seed(seed, _SAMPLE_STREAM))
                thetas = run_moments.sample(
                    int(self.n_samples), generator, covariance=self.method, scale=self.scale
                )
            refresh = torch.Generator().manual_seed(derive_seed(seed, _REFRESH_STREAM))
            rows = refresh_rows(len(X), self.bn_update_size, refresh)
            networks += sampled_networks(net.module_, thetas, X[rows], self.predict_batch_size)
            moments.append(run_moments)
        self.moments_ = moments
        self.sample_networks_ = networks
        self.swa_start_, self.max_rank_ = self._swa_schedule

    # ------------------------------------------------------------ prediction
    def _member_logits(self, X: np.ndarray) -> np.ndarray:
        # All posterior samples are evaluated together, grouped like ensemble members.
        return self._predict_logits(self.sample_networks_, X)
