"""Regressor counterparts of the deep ensemble, SWAG and Monte Carlo dropout.

Each method trains and samples its networks exactly as its classifier does (the
method's own steps are the classifier's, shared below); only the task differs: real
targets, a Gaussian or squared-error head, and a Gaussian mixture as predictive
distribution (:class:`~ensemblekit.estimators._regression.BaseNeuralRegressor`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._deep_ensemble import DeepEnsembleClassifier
from ._dropout import DEFAULT_DROPOUT, DropoutClassifier
from ._regression import BaseNeuralRegressor, RegressionLoss
from ._swag import SWAGClassifier, SWAGMethod

_REGRESSION_PARAMS = """\
    loss : {"gaussian_nll", "squared_error"}, default="gaussian_nll"
        ``"gaussian_nll"``: each network returns a mean and a variance per target
        (``2 * n_targets`` outputs: the means, then raw variances passed through a
        softplus plus a floor of 1e-6) and is trained on the Gaussian negative
        log-likelihood (Lakshminarayanan et al., 2017;
        :class:`~ensemblekit.engine.GaussianNLLCriterion`). ``"squared_error"``: it
        returns ``n_targets`` means trained on the mean squared error; its own
        standard deviation is then 0 and the predictive spread is the spread of the
        members alone.
    normalize_y : bool, default=True
        Standardise each target column inside :meth:`fit` and map predictions back
        (means and standard deviations), as a
        :class:`~sklearn.compose.TransformedTargetRegressor` with a
        :class:`~sklearn.preprocessing.StandardScaler` would.
"""

_COMMON_PARAMS = """\
    optimizer : type, default=torch.optim.Adam
        Optimizer class; its arguments are routed with ``optimizer__*``.
    lr : float, default=1e-3
        Learning rate.
    max_epochs : int, default=50
        Training epochs of each network.
    batch_size : int, default=128
        Training batch size.
    predict_batch_size : int, default=1024
        Rows evaluated at once at prediction time.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available.
    n_jobs : int or None, default=None
        Groups of networks trained at the same time through :class:`joblib.Parallel`,
        as in :class:`~ensemblekit.estimators.DeepEnsembleClassifier`.
    devices : "all", list of str or None, default=None
        Shard the networks over these devices; ``None`` trains on ``device``.
    memory : str, joblib.Memory or None, default=None
        Cache of trained networks, as in
        :class:`~ensemblekit.estimators.DeepEnsembleClassifier`.
"""

_TRAJECTORY_PARAMS = """\
    checkpoint_epochs : None, "all", int or list of int, default=None
        Record each trained network's flattened parameters after these zero-based
        epochs in ``checkpoints_``, as in
        :class:`~ensemblekit.estimators.DeepEnsembleClassifier`.
    checkpoint_dir : str or path-like or None, default=None
        Folder where ``checkpoints_`` is memory-mapped instead of held in memory.
    random_state : int, RandomState instance or None, default=None
        Source of the network seeds; a network's seed fixes its initialisation,
        data order, dropout masks and posterior samples.
    verbose : int, default=0
        ``1`` shows a progress bar; ``2`` also prints each network's epoch table.
    callbacks : list of skorch callbacks, default=None
        Callbacks copied to every network.
"""

_ROUTED_PARAMS = """\
    **kwargs : dict
        Parameters routed to the networks' skorch ``NeuralNetRegressor`` as in
        skorch (``module__*``, ``optimizer__*``, ``iterator_train__*``, ...);
        ``criterion__*`` is refused (``loss`` builds the criterion).
"""

_EARLY_STOPPING_PARAMS = """\
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training rows for each network (not
        stratified: the targets are real) and stop it when its validation R^2 has not
        improved by at least ``tol`` for more than ``n_iter_no_change`` epochs in a row,
        the rule and score of :class:`sklearn.neural_network.MLPRegressor` (R^2 of the
        predicted means, :func:`~sklearn.metrics.r2_score`, weighted by
        ``sample_weight``, averaged uniformly over targets); the network then gets back
        the weights of its best epoch. Each network stops on its own; in the
        vectorised engine a stopped network's state is frozen at its stopping epoch
        while the others go on.
    validation_fraction : float, default=0.1
        Fraction of the training rows held out for early stopping (at least 2 rows).
        Only used when ``early_stopping=True``, as in
        :class:`sklearn.neural_network.MLPRegressor`.
    n_iter_no_change : int, default=10
        Epochs without an improvement of at least ``tol`` tolerated before stopping.
    tol : float, default=1e-4
        Minimum improvement of the validation R^2.
    validation_split : {"per_member", "shared"}, default="per_member"
        ``"per_member"``: each network draws its own validation rows from its seed;
        ``"shared"``: every network holds out the same rows (drawn from the first
        seed).
"""

_CURVE_ATTRIBUTES = """\
    loss_curve_ : list of list of float
        Training loss (the weighted mean over the network's training rows, in
        standardised target units when ``normalize_y=True``) after each epoch, one
        list per network (``estimators_[i]``).
    n_iter_ : ndarray of shape (n_networks,)
        Epochs each network trained.
    validation_scores_ : list of list of float or None
        With ``early_stopping=True``: validation R^2 after each epoch, one list per
        network; ``None`` otherwise.
    best_epoch_ : ndarray of shape (n_networks,) or None
        With ``early_stopping=True``: zero-based epoch whose weights each network
        holds (its best validation R^2); ``None`` otherwise.
"""

_PARTIAL_FIT_DOC = """Train every network for one more epoch on ``(X, y)``.

        For data that arrives in pieces, as ``MLPRegressor.partial_fit``: the first
        call builds the networks from their seeds and trains them one epoch (and,
        with ``normalize_y=True``, fixes the target scaling from its ``y``); each later
        call continues every network (weights, optimizer state, data order and random
        draws go on from its epoch count) for one epoch on the new rows, in the engine
        ``fit`` would use. Early stopping does not apply; ``loss_curve_`` and
        ``n_iter_`` grow by one epoch.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training inputs shaped like those of earlier calls.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets, with the number of columns of the first call.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights, as in :meth:`fit`. A call whose weights are all 0 raises,
            as scikit-learn's ``partial_fit`` methods do (nothing would train).

        Returns
        -------
        self : estimator
            The estimator, trained one more epoch.

        Raises
        ------
        ValueError
            When ``X`` or ``y`` is not shaped like the first call's, every weight
            of the call is 0, ``checkpoint_epochs`` is set, or a parameter that built
            or trained the networks (network, optimizer, ``lr``, number of networks,
            seeds, the method's settings) changed since they were fitted.
        """

_COMMON_ATTRIBUTES = """\
    seeds_ : ndarray of shape (n_estimators,)
        Seed of each trained network.
    n_targets_ : int
        Number of target columns of ``y``.
    y_mean_, y_std_ : ndarray of shape (n_targets,)
        Centre and scale of the targets (0 and 1 when ``normalize_y=False``).
    n_features_in_ : int
        Size of the second axis of ``X``.
    input_shape_ : tuple of int
        Shape of one sample, ``X.shape[1:]``.
    device_ : str
        Device the networks were trained on.
    output_kind_ : {"mean_variance", "mean"}
        What each network returns (from ``loss``).
"""


class DeepEnsembleRegressor(BaseNeuralRegressor):
    __doc__ = f"""Deep ensemble of independently trained regression networks.

    Each member is a skorch :class:`~skorch.NeuralNetRegressor` trained from its own
    seed (initial weights, data order, dropout masks), by the sequential or the
    vectorised engine, which give the same members. The predictive distribution is
    the equally weighted mixture of the members' Gaussians; :meth:`predict` returns
    its mean and, with ``return_std=True``, its standard deviation (mean of the
    member variances plus variance of the member means), as in Lakshminarayanan,
    Pritzel & Blundell (2017).

    Parameters
    ----------
    module : type or torch.nn.Module or None, default=None
        The network, as in :class:`~ensemblekit.estimators.DeepEnsembleClassifier`;
        a class gets ``num_classes`` = its number of outputs (``2 * n_targets`` for
        ``"gaussian_nll"``, ``n_targets`` for ``"squared_error"``) unless routed.
        ``None`` builds an :class:`~ensemblekit.models.MLP` sized from the data.
    n_estimators : int, default=5
        Number of members.
{_REGRESSION_PARAMS}{_COMMON_PARAMS}\
    engine : {{"auto", "sequential", "vectorized"}}, default="auto"
        How members are trained, as in
        :class:`~ensemblekit.estimators.DeepEnsembleClassifier` (the vectorised
        engine computes every member's loss in one batched pass).
    max_members_per_pass : int or None, default=None
        Vectorised engine: at most this many members trained (and predicted) at once.
    augment : callable or None, default=None
        Training-time augmentation ``augment(x_batch, generator) -> x_batch``.
    lr_schedule : callable or None, default=None
        ``lr_schedule(epoch) -> multiplier`` of the learning rate.
    precision : {{"fp32", "bf16"}}, default="fp32"
        Vectorised engine: ``"bf16"`` trains under bfloat16 autocast.
    bootstrap : bool, default=False
        Train each member on its own bootstrap resample.
    batches : {{"permutation", "with_replacement"}}, default="permutation"
        How each member's batches are drawn, as in
        :class:`~ensemblekit.estimators.DeepEnsembleClassifier`: every row once per
        epoch in the member's own order, or rows drawn uniformly with replacement.
    warm_start : bool, default=False
        Keep fitted members when refitting with a larger ``n_estimators``; the
        target scaling of the first fit is kept.
{_TRAJECTORY_PARAMS}{_EARLY_STOPPING_PARAMS}{_ROUTED_PARAMS}
    Attributes
    ----------
    estimators_ : list of skorch.NeuralNetRegressor
        The fitted members.
{_CURVE_ATTRIBUTES}{_COMMON_ATTRIBUTES}\
    engine_ : {{"sequential", "vectorized"}}
        Engine that trained the last members.
    engine_reason_ : str
        Why that engine.

    See Also
    --------
    DeepEnsembleClassifier : The same ensemble for classification.
    ensemblekit.metrics.gaussian_mixture_nll : Scores of the predictive mixture.

    References
    ----------
    B. Lakshminarayanan, A. Pritzel, C. Blundell. "Simple and Scalable Predictive
    Uncertainty Estimation using Deep Ensembles", NeurIPS 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit import DeepEnsembleRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(200, 1))
    >>> y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=200)
    >>> reg = DeepEnsembleRegressor(n_estimators=3, max_epochs=5, random_state=0,
    ...                             module__hidden_layer_sizes=(16,)).fit(X, y)
    >>> mean, std = reg.predict(X[:4], return_std=True)
    >>> mean.shape, bool((std > 0).all())
    ((4,), True)
    >>> [a.shape for a in reg.predict_member(X[:4])]
    [(3, 4), (3, 4)]

    With early stopping each member holds out 10% of the rows and keeps the weights
    of its best validation R^2:

    >>> reg = DeepEnsembleRegressor(n_estimators=2, max_epochs=20, early_stopping=True,
    ...                             n_iter_no_change=3, random_state=0,
    ...                             module__hidden_layer_sizes=(16,)).fit(X, y)
    >>> len(reg.validation_scores_), bool((reg.best_epoch_ < reg.n_iter_).all())
    (2, True)
    """

    def __init__(
        self,
        module: Any = None,
        n_estimators: int = 5,
        *,
        loss: RegressionLoss = "gaussian_nll",
        normalize_y: bool = True,
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
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        validation_split: str = "per_member",
        **kwargs: Any,
    ) -> None:
        self.module = module
        self.n_estimators = n_estimators
        self.loss = loss
        self.normalize_y = normalize_y
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
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.validation_split = validation_split
        self._store_routed(kwargs)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> DeepEnsembleRegressor:
        return self._partial_fit(X, y, None, sample_weight)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC

    # The method's own steps are the classifier's; only the task differs.
    _validate_method_params = DeepEnsembleClassifier._validate_method_params
    _n_members = DeepEnsembleClassifier._n_members
    _bootstrap = DeepEnsembleClassifier._bootstrap
    _batches_with_replacement = DeepEnsembleClassifier._batches_with_replacement
    _fit_members = DeepEnsembleClassifier._fit_members
    _continue_members = DeepEnsembleClassifier._continue_members
    _trains_jointly = DeepEnsembleClassifier._trains_jointly
    _member_attributes = DeepEnsembleClassifier._member_attributes


class SWAGRegressor(BaseNeuralRegressor):
    __doc__ = f"""SWAG (stochastic weight averaging Gaussian) for regression, and MultiSWAG.

    Each run trains a network and fits the SWAG Gaussian to its SGD iterates, then
    draws ``n_samples`` networks from it, exactly as
    :class:`~ensemblekit.estimators.SWAGClassifier` does (see there for ``method``,
    ``swa_start``, ``swa_freq``, ``swa_lr``, ``max_rank``, ``scale`` and
    ``bn_update_size``). The sampled networks are the members of the predictive
    Gaussian mixture: :meth:`predict_member` has one row per sample.

    Parameters
    ----------
    module : type or torch.nn.Module or None, default=None
        The network, as in :class:`DeepEnsembleRegressor`.
    n_estimators : int, default=1
        Number of independent SWAG runs; more than one gives MultiSWAG.
    method : {{"swa", "diagonal", "lowrank"}}, default="lowrank"
        Posterior approximation.
    n_samples : int, default=30
        Networks drawn per run (``"swa"`` has one).
    swa_start : int or None, default=None
        First epoch of the SWA phase; ``None`` means ``max_epochs // 2``.
    swa_freq : int, default=1
        Collect the parameters every ``swa_freq`` epochs of the SWA phase.
    swa_lr : float or None, default=None
        Constant learning rate of the SWA phase (``None`` keeps the optimizer's).
    max_rank : int or None, default=None
        Maximum number of deviation columns; ``None`` means ``min(20, n_collected)``.
    scale : float or None, default=None
        Covariance multiplier; ``None`` gives the published posteriors.
    bn_update_size : int or None, default=1024
        Training rows used to recompute each sample's BatchNorm statistics.
{_REGRESSION_PARAMS}{_COMMON_PARAMS}\
    engine : {{"auto", "sequential", "vectorized"}}, default="auto"
        How the runs are trained, as in :class:`~ensemblekit.estimators.SWAGClassifier`.
    max_members_per_pass : int or None, default=None
        Vectorised engine: train at most this many runs at once.
{_TRAJECTORY_PARAMS}\
    early_stopping : bool, default=False
        Shorten each run's pretraining (the epochs before ``swa_start``), never its
        SWA phase, as in :class:`~ensemblekit.estimators.SWAGClassifier`: each run
        holds out ``validation_fraction`` of the training rows (not stratified) and
        stops pretraining when its validation R^2 (the score and rule of
        :class:`sklearn.neural_network.MLPRegressor`, as in
        :class:`DeepEnsembleRegressor`) has not improved by at least ``tol`` for more
        than ``n_iter_no_change`` epochs in a row, or at ``swa_start``; its SWA phase
        then runs from the best pretraining weights for ``max_epochs - swa_start``
        epochs. Needs ``swa_start >= 1``.
    validation_fraction : float, default=0.1
        Fraction of the training rows held out for early stopping (at least 2 rows).
        Only used when ``early_stopping=True``, as in
        :class:`sklearn.neural_network.MLPRegressor`.
    n_iter_no_change : int, default=10
        Pretraining epochs without an improvement of at least ``tol`` tolerated
        before the SWA phase starts.
    tol : float, default=1e-4
        Minimum improvement of the validation R^2.
    validation_split : {{"per_member", "shared"}}, default="per_member"
        ``"per_member"``: each run draws its own validation rows from its seed;
        ``"shared"``: every run holds out the same rows.
{_ROUTED_PARAMS}
    Attributes
    ----------
    estimators_ : list of skorch.NeuralNetRegressor
        The trained runs, holding the final SGD iterate.
    loss_curve_ : list of list of float
        Training loss after each epoch, one list per run (standardised target
        units when ``normalize_y=True``).
    n_iter_ : ndarray of shape (n_estimators,)
        Epochs each run trained, pretraining and SWA phase together.
    validation_scores_ : list of list of float or None
        With ``early_stopping=True``: validation R^2 after each epoch, one list per
        run, the SWA-phase epochs included (for information only; they never stop
        the run); ``None`` otherwise.
    best_epoch_ : ndarray of shape (n_estimators,) or None
        With ``early_stopping=True``: zero-based pretraining epoch whose weights
        started each run's SWA phase; ``None`` otherwise.
    n_collected_ : ndarray of shape (n_estimators,)
        Parameter vectors each run's moments hold.
    moments_ : list of SWAGMoments
        The collected moments of each run.
    sample_networks_ : list of torch.nn.Module
        The sampled networks, run after run.
    swa_start_ : int
        First epoch of the SWA phase used.
    max_rank_ : int
        Maximum number of deviation columns used.
    engine_ : {{"sequential", "vectorized"}}
        Engine that trained the runs.
    engine_reason_ : str
        Why that engine.
{_COMMON_ATTRIBUTES}
    References
    ----------
    W. Maddox, T. Garipov, P. Izmailov, D. Vetrov, A. G. Wilson. "A Simple
    Baseline for Bayesian Uncertainty in Deep Learning", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit import SWAGRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 3))
    >>> y = X @ [1.0, -2.0, 0.5]
    >>> reg = SWAGRegressor(n_samples=4, max_epochs=6, swa_start=3, random_state=0,
    ...                     module__hidden_layer_sizes=(16,)).fit(X, y)
    >>> reg.predict_member(X[:5])[0].shape
    (4, 5)
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
        loss: RegressionLoss = "gaussian_nll",
        normalize_y: bool = True,
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
        self.loss = loss
        self.normalize_y = normalize_y
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
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.validation_split = validation_split
        self._store_routed(kwargs)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> SWAGRegressor:
        """Train every run for one more epoch on ``(X, y)`` and redraw its posterior.

        For data that arrives in pieces, as ``MLPRegressor.partial_fit``, with the
        SWA schedule of :meth:`SWAGClassifier.partial_fit
        <ensemblekit.estimators.SWAGClassifier.partial_fit>`: the first call builds
        the runs from their seeds and trains them one epoch (and, with
        ``normalize_y=True``, fixes the target scaling from its ``y``); each later
        call continues every run for one epoch on the new rows. Epochs are numbered
        per run from 0 over all calls; an epoch ``e >= swa_start`` runs at ``swa_lr``
        and is collected when ``(e - swa_start) % swa_freq == 0``. After each call the
        ``n_samples`` networks of every run are drawn again from its moments (copies
        of its current weights while it has collected nothing). Early stopping does
        not apply; ``loss_curve_`` and ``n_iter_`` grow by one epoch.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training inputs shaped like those of earlier calls.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets, with the number of columns of the first call.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights, as in :meth:`fit`. A call whose weights are all 0 raises,
            as scikit-learn's ``partial_fit`` methods do (nothing would train).

        Returns
        -------
        self : SWAGRegressor
            The estimator, trained one more epoch.

        Raises
        ------
        ValueError
            When ``X`` or ``y`` is not shaped like the first call's, every weight
            of the call is 0, ``checkpoint_epochs`` is set, or a parameter that built
            or trained the networks (network, optimizer, ``lr``, number of networks,
            seeds, the method's settings) changed since they were fitted.
        """
        return self._partial_fit(X, y, None, sample_weight)

    n_collected_ = SWAGClassifier.n_collected_

    _validate_method_params = SWAGClassifier._validate_method_params
    _n_members = SWAGClassifier._n_members
    _member_callbacks = SWAGClassifier._member_callbacks
    _fit_members = SWAGClassifier._fit_members
    _continue_members = SWAGClassifier._continue_members
    _trains_jointly = SWAGClassifier._trains_jointly
    _member_attributes = SWAGClassifier._member_attributes
    _member_logits = SWAGClassifier._member_logits


class DropoutRegressor(BaseNeuralRegressor):
    __doc__ = f"""Monte Carlo dropout for regression: networks thinned by fixed dropout masks.

    Each run trains a network with dropout; each of its ``n_samples`` Monte Carlo
    samples is one fixed thinned network, exactly as in
    :class:`~ensemblekit.estimators.DropoutClassifier`. The samples are the members
    of the predictive Gaussian mixture.

    Parameters
    ----------
    module : type or torch.nn.Module or None, default=None
        The network; it must contain a dropout layer of positive rate. ``None``
        builds an :class:`~ensemblekit.models.MLP` with ``module__dropout=0.1``
        unless that parameter is routed.
    n_estimators : int, default=1
        Number of independently trained networks; their samples are pooled.
    n_samples : int, default=30
        Thinned networks per run.
{_REGRESSION_PARAMS}{_COMMON_PARAMS}\
    engine : {{"auto", "sequential", "vectorized"}}, default="auto"
        How the runs are trained, as in
        :class:`~ensemblekit.estimators.DropoutClassifier`: on the CPU both engines
        draw the same training dropout masks from each run's seed and give the same
        runs up to rounding; on CUDA the masks differ (same distribution).
    max_members_per_pass : int or None, default=None
        Vectorised engine: train at most this many runs at once; prediction
        evaluates at most this many thinned networks at once.
    precision : {{"fp32", "bf16"}}, default="fp32"
        Vectorised engine: ``"bf16"`` trains under bfloat16 autocast.
{_TRAJECTORY_PARAMS}{_EARLY_STOPPING_PARAMS}{_ROUTED_PARAMS}
    Attributes
    ----------
    estimators_ : list of skorch.NeuralNetRegressor
        The trained runs.
{_CURVE_ATTRIBUTES}\
    n_samples_ : int
        Thinned networks per run used at prediction time.
    engine_ : {{"sequential", "vectorized"}}
        Engine that trained the runs.
    engine_reason_ : str
        Why that engine.
{_COMMON_ATTRIBUTES}
    References
    ----------
    Y. Gal, Z. Ghahramani. "Dropout as a Bayesian Approximation: Representing
    Model Uncertainty in Deep Learning", ICML 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from ensemblekit import DropoutRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 3))
    >>> y = np.c_[X[:, 0], X[:, 1] - X[:, 2]]
    >>> reg = DropoutRegressor(n_samples=5, max_epochs=5, random_state=0,
    ...                        module__hidden_layer_sizes=(16,)).fit(X, y)
    >>> reg.predict_member(X[:4])[1].shape
    (5, 4, 2)
    """

    def __init__(
        self,
        module: Any = None,
        n_estimators: int = 1,
        *,
        n_samples: int = 30,
        loss: RegressionLoss = "gaussian_nll",
        normalize_y: bool = True,
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
        self.loss = loss
        self.normalize_y = normalize_y
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
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.validation_split = validation_split
        self._store_routed(kwargs)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> DropoutRegressor:
        return self._partial_fit(X, y, None, sample_weight)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC

    def _module_spec(self, X: np.ndarray) -> tuple[Any, dict[str, Any]]:
        module, kwargs = super()._module_spec(X)
        if self.module is None:
            kwargs.setdefault("dropout", DEFAULT_DROPOUT)
        return module, kwargs

    _validate_method_params = DropoutClassifier._validate_method_params
    _n_members = DropoutClassifier._n_members
    _fit_members = DropoutClassifier._fit_members
    _train = DropoutClassifier._train
    _continue_members = DropoutClassifier._continue_members
    _trains_jointly = DropoutClassifier._trains_jointly
    _member_attributes = DropoutClassifier._member_attributes
    _member_logits = DropoutClassifier._member_logits
    _member_logits_loop = DropoutClassifier._member_logits_loop
