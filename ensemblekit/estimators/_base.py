"""Shared machinery of the ensemble estimators.

Everything that every estimator does alike lives here: parameter routing in the
skorch style, input validation, label encoding, member construction, the member
axis and its reduction to one predictive distribution.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import io
import numbers
import os
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNetClassifier
from torch import nn

from .._stacklevel import external_stacklevel
from ..engine import (
    CheckpointCallback,
    CheckpointStore,
    MemberMonitor,
    MemberPredictor,
    MemberSampler,
    ModuleCopy,
    MonitorCallback,
    Progress,
    ProgressCallback,
    SampleWeightedLoss,
    StopCallback,
    derive_seed,
    draw_member_seeds,
    resolve_checkpoint_epochs,
)
from ..engine._monitor import SCORES
from ..models import MLP
from ._cache import MemberCache
from ._frozen_params import check_unchanged, member_params
from ._outputs import (
    LogProbaCriterion,
    outputs_to_log_proba,
    outputs_to_proba,
    predict_nonlinearity,
)
from ._parallel import (
    check_n_jobs,
    fit_new_members,
    member_records,
    resolve_devices,
    set_member_state,
)
from ._probe import probe_member
from ._sample_weight import training_weights
from ._validation import check_float, check_int, resolve_device

#: Prefixes of parameters routed to the members' components, as in skorch.
ROUTED_PREFIXES = (
    "module",
    "criterion",
    "optimizer",
    "iterator_train",
    "iterator_valid",
    "callbacks",
    "dataset",
)

# The estimator owns each member's data order; letting these through would
# silently replace it.
_RESERVED_ROUTED = (
    "iterator_train__sampler",
    "iterator_train__shuffle",
    "iterator_train__batch_sampler",
)

# Constructor arguments that are filled from the training data when a module
# class accepts them and the user did not route a value.
# Stream of the early-stopping validation split.
_VALIDATION_STREAM = 31

_DATA_DEPENDENT_ARGS = ("in_features", "num_classes", "in_channels", "input_size")


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64.

    Examples
    --------
    >>> softmax(np.array([[0.0, np.log(3.0)]])).round(3).tolist()
    [[0.25, 0.75]]
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


class BaseNeuralEnsemble(BaseEstimator):
    """Base class of the ensemble estimators, whatever the task.

    It holds what classifiers and regressors share: parameter routing, input
    validation, member construction, seeds, fit orchestration and pickling. The
    task-specific parts are hooks: :meth:`_validate_training_data` (targets),
    :meth:`_n_outputs` (output width of a member module), :meth:`_probe` (check
    of a fresh member's outputs), :meth:`_member_criterion` and :meth:`_net_class`
    (the member's loss and skorch class); see :class:`BaseNeuralClassifier` and
    :class:`~ensemblekit.estimators.BaseNeuralRegressor`.

    Subclasses define ``__init__`` with explicit parameters plus ``**kwargs``
    that they pass to :meth:`_store_routed`; they say how many members to train
    (:meth:`_n_members`) and may change how members are trained
    (:meth:`_fit_members`) and evaluated (:meth:`_member_logits`).

    Before training, ``fit`` builds the first member from its seed and runs it on a
    few training rows (:meth:`_probe`): a failing forward pass (e.g. channels-last
    images) or outputs of the wrong width raise a ``ValueError`` there.
    """

    #: Whether the members' criterion takes the ``[targets, weight]`` rows of a weighted
    #: fit itself (the regression criteria) instead of through ``SampleWeightedLoss``.
    _criterion_reads_weights: ClassVar[bool] = False

    #: The validation score of early stopping (``MemberMonitor``'s ``score``):
    #: accuracy for classifiers, R^2 for regressors, as ``MLPClassifier`` /
    #: ``MLPRegressor`` score their validation rows.
    _validation_score: ClassVar[str] = "accuracy"

    #: How the fitted attributes other than ``estimators_`` split into members and
    #: join back (see ``_parallel.MEMBER_KINDS``); the member cache and the member
    #: groups trained in parallel carry them.
    _member_attributes: ClassVar[dict[str, str]] = {}

    # ----------------------------------------------------------- parameters
    def _store_routed(self, routed: dict[str, Any]) -> None:
        # Kept in one private dict: only the signature's parameters may be public
        # attributes set by ``__init__``.
        self._routed = dict(routed)

    def _routed_params(self) -> dict[str, Any]:
        return dict(getattr(self, "_routed", {}))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Get the parameters, routed ``prefix__name`` parameters included.

        Parameters
        ----------
        deep : bool, default=True
            Unused beyond scikit-learn's meaning; kept for compatibility.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        params = super().get_params(deep=deep)
        params.update(self._routed_params())
        return params

    def set_params(self, **params: Any) -> BaseNeuralClassifier:
        """Set parameters, routed ``prefix__name`` parameters included.

        Names are checked as in scikit-learn: a name that is neither a parameter
        nor routed (``prefix__name`` with a prefix such as ``module``) raises at
        once. The values, routed ones included, are checked when :meth:`fit` runs.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : estimator
            The estimator.

        Raises
        ------
        ValueError
            For an unknown name, with the closest valid name.
        """
        names = set(self._get_param_names())
        # The name of the ``**kwargs`` catch-all is in the signature too: scikit-learn's
        # checks pass it, and it is refused by ``fit`` like any unknown routed name.
        signature = set(inspect.signature(type(self).__init__).parameters)
        for key in params:
            if key not in names and key not in signature and not _is_routed(key):
                raise ValueError(self._invalid_parameter_message(key))
        own = {key: value for key, value in params.items() if key in names}
        routed = {key: value for key, value in params.items() if key not in names}
        if own:
            super().set_params(**own)
        if routed:
            self._routed = {**self._routed_params(), **routed}
        return self

    def _invalid_parameter_message(self, key: str) -> str:
        valid = sorted(self._get_param_names())
        prefix, sep, rest = key.partition("__")
        if sep:
            close = difflib.get_close_matches(prefix, ROUTED_PREFIXES, n=1)
            guess = f"{close[0]}__{rest}" if close else None
        else:
            close = difflib.get_close_matches(key, valid, n=1)
            guess = close[0] if close else None
        hint = f" Did you mean {guess!r}?" if guess else ""
        routed = ", ".join(f"{p}__" for p in ROUTED_PREFIXES)
        return (
            f"Invalid parameter {key!r} for estimator {type(self).__name__}.{hint} Valid "
            f"parameters are: {valid!r}, and parameters routed to the members, which start "
            f"with one of {routed}."
        )

    def _validate_params_common(self) -> None:
        for key in self._routed_params():
            if not _is_routed(key):
                raise ValueError(self._invalid_parameter_message(key))
            if key in _RESERVED_ROUTED:
                raise ValueError(
                    f"{key} cannot be set: each member draws its own data order from its "
                    "seed (use bootstrap=... or random_state to control it)."
                )
        self._check_routed_names()
        check_int("max_epochs", self.max_epochs)
        check_int("batch_size", self.batch_size)
        check_int("predict_batch_size", self.predict_batch_size)
        # Booleans count as 0 and 1, as in scikit-learn.
        verbose = int(self.verbose) if isinstance(self.verbose, (bool, np.bool_)) else self.verbose
        check_int("verbose", verbose, min_value=0)
        check_float("lr", self.lr)
        if self.callbacks is not None and not isinstance(self.callbacks, (list, tuple)):
            raise ValueError(f"callbacks must be a list of skorch callbacks or None, got "
                             f"{type(self.callbacks).__name__}.")
        self._checkpoint_plan = _checkpoint_plan(self)
        _EarlyStopping.validate(self)
        check_n_jobs(self.n_jobs)
        resolve_devices(self.devices)
        MemberCache.from_memory(self.memory)

    def _check_routed_names(self) -> None:
        """Refuse ``module__x``, ``optimizer__x`` or ``criterion__x`` that the class does
        not accept, before skorch would fail with a raw ``TypeError``."""
        targets = {
            "module": MLP if self.module is None else self.module,
            "optimizer": getattr(self, "optimizer", None),
            # Regressors choose their criterion from ``loss``.
            "criterion": getattr(self, "criterion", None),
        }
        for key in self._routed_params():
            prefix, _, name = key.partition("__")
            target = targets.get(prefix)
            if not isinstance(target, type) or "__" in name or name == "param_groups":
                continue
            accepted = _accepted_arguments(target)
            if accepted is None or name in accepted:
                continue
            close = difflib.get_close_matches(name, sorted(accepted), n=1)
            hint = f" Did you mean '{prefix}__{close[0]}'?" if close else ""
            raise ValueError(
                f"Invalid parameter {key!r}: {target.__name__} does not accept an argument "
                f"{name!r}.{hint} Valid arguments: {', '.join(sorted(accepted))}."
            )

    # ----------------------------------------------------------- data
    def _validate_predict_data(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        if (type(X) is np.ndarray and X.dtype in _FAST_DTYPES and X.ndim >= 2
                and X.shape[0] > 0 and X.shape[1:] == self.input_shape_
                and getattr(self, "feature_names_in_", None) is None):
            # A plain float array of the fitted sample shape: what validate_data
            # returns for it, without its per-call overhead (prediction latency).
            # Anything else, including non-finite values (an O(1)-memory check on the
            # sum, as scikit-learn's first pass), takes the full path and its errors.
            with np.errstate(over="ignore", invalid="ignore"):
                finite = np.isfinite(X.sum())
            if finite:
                return _as_float32(X)
        self._check_image_shape(X)
        X = validate_data(
            self, X, reset=False, allow_nd=True, dtype=(np.float32, np.float64),
            ensure_all_finite=True,
        )
        X = _as_float32(X)
        self._check_input_shape(X)
        return X

    def _check_image_shape(self, X: Any) -> None:
        """Before scikit-learn's validation of data for a fitted estimator (prediction,
        continued training): image-like input of another sample shape gets a message
        naming the sample shapes, rather than scikit-learn's count of "features"
        along the second axis."""
        shape = getattr(X, "shape", None)
        if shape is not None and len(shape) >= 2 and (
            len(self.input_shape_) != 1 or len(shape) != 2
        ):
            self._check_input_shape(X)

    def _check_input_shape(self, X: np.ndarray) -> None:
        if tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"X has samples of shape {tuple(X.shape[1:])}, but {type(self).__name__} "
                f"was fitted on samples of shape {self.input_shape_}."
            )

    # ----------------------------------------------------------- members
    def _module_spec(self, X: np.ndarray) -> tuple[Any, dict[str, Any]]:
        """The ``module`` given to each member net, and its constructor arguments."""
        routed = {
            key[len("module__"):]: value
            for key, value in self._routed_params().items()
            if key.startswith("module__")
        }
        module = MLP if self.module is None else self.module
        if isinstance(module, nn.Module):
            if routed:
                raise ValueError(
                    "module__* parameters need `module` to be a class, but an instance of "
                    f"{type(module).__name__} was given; pass the class instead."
                )
            return ModuleCopy(module), {}
        if not callable(module):
            raise ValueError(
                "module must be None, a torch.nn.Module subclass or an instance of one, "
                f"got {module!r}."
            )
        kwargs = self._data_dependent_kwargs(module, X)
        kwargs.update(routed)
        return module, kwargs

    def _data_dependent_kwargs(self, module: Any, X: np.ndarray) -> dict[str, Any]:
        try:
            accepted = inspect.signature(module).parameters
        except (TypeError, ValueError):
            return {}
        shape = X.shape[1:]
        values: dict[str, Any] = {
            "in_features": int(np.prod(shape)),
            "num_classes": self._n_outputs(),
        }
        if len(shape) == 3:
            values["in_channels"] = int(shape[0])
            if shape[1] == shape[2]:
                values["input_size"] = int(shape[1])
        return {
            name: values[name]
            for name in _DATA_DEPENDENT_ARGS
            if name in accepted and name in values
        }

    def _member_callbacks(self, seed: int) -> list[Any]:
        """Extra skorch callbacks a subclass attaches to every member."""
        return []

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
        module, module_kwargs = self._module_spec(X)
        routed = {k: v for k, v in self._routed_params().items() if not k.startswith("module__")}
        if "criterion__weight" in routed:
            routed["criterion__weight"] = _class_weight(routed["criterion__weight"],
                                                        self._n_outputs())
        criterion = self._member_criterion()
        nll = isinstance(criterion, nn.NLLLoss) or (
            isinstance(criterion, type) and issubclass(criterion, nn.NLLLoss)
        )
        if sample_weight is not None and not bootstrap and not self._criterion_reads_weights:
            # Targets carry their weights; the loss is a weighted mean per batch.
            routed["criterion__loss"] = criterion
            routed["criterion__log_input"] = output_kind == "proba" and nll
            criterion = SampleWeightedLoss
        elif output_kind == "log_proba" and nll:
            # skorch would take the log of these outputs once more.
            routed["criterion__loss"] = criterion
            criterion = LogProbaCriterion
        callbacks: list[Any] = [copy.deepcopy(cb) for cb in (self.callbacks or [])]
        callbacks += self._member_callbacks(seed)
        store = getattr(self, "_checkpoint_store", None)
        if store is not None:
            # First, so that a callback ending training (early stopping) cannot skip it.
            callbacks.insert(0, ("ensemblekit_trajectory", CheckpointCallback(store, index)))
        rows = None
        monitor = None
        if split is not None and y is not None:
            rows, valid = split
            es = _EarlyStopping.of(self)
            monitor = MemberMonitor(
                X[valid], y[valid], None if sample_weight is None else sample_weight[valid],
                es.n_iter_no_change, es.tol, self.predict_batch_size,
                score=self._validation_score,
            )
            # Before the progress bar, which shows the score.
            callbacks.append(("ensemblekit_monitor", MonitorCallback(monitor)))
        if progress is not None:
            callbacks.append(("ensemblekit_progress", ProgressCallback(progress, index)))
        if monitor is not None:
            callbacks.append(("ensemblekit_stop", StopCallback(monitor)))
        n_rows = len(X) if rows is None else len(rows)
        boot_weights = None
        if bootstrap and sample_weight is not None:
            boot_weights = sample_weight if rows is None else sample_weight[rows]
        return self._net_class()(
            module=module,
            criterion=criterion,
            **self._net_task_kwargs(output_kind),
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=None,
            callbacks=callbacks or None,
            device=device,
            verbose=int(self.verbose >= 2),
            iterator_train__sampler=MemberSampler(
                n_rows, seed, bootstrap, boot_weights, rows,
                replacement=self._batches_with_replacement(),
            ),
            **{f"module__{k}": v for k, v in module_kwargs.items()},
            **routed,
        )

    # ----------------------------------------------------------- task hooks
    def _validate_training_data(
        self, X: Any, y: Any, reset: bool, subset: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Validated float32 ``X`` and the targets as the members train on them.

        ``subset=True`` (continued ``partial_fit`` calls) lets ``y`` hold only some
        of the classes of the first call.
        """
        raise NotImplementedError

    def _n_outputs(self) -> int:
        """Output width of a member module (filled into ``num_classes``)."""
        raise NotImplementedError

    def _member_criterion(self) -> Any:
        """The criterion class (or instance) of every member."""
        raise NotImplementedError

    def _net_class(self) -> type:
        """The skorch class of the members."""
        raise NotImplementedError

    def _net_task_kwargs(self, output_kind: str) -> dict[str, Any]:
        """Constructor arguments of the member net that depend on the task."""
        return {}

    def _probe(self, net: Any, seed: int, X: np.ndarray) -> str:
        """Check a freshly built member on a few rows; return its output kind."""
        raise NotImplementedError

    # ----------------------------------------------------------- fitting
    def _n_members(self) -> int:
        raise NotImplementedError

    def _validate_params(self) -> None:
        self._validate_params_common()

    def _fit_members(
        self,
        nets: Sequence[NeuralNetClassifier],
        X: np.ndarray,
        y: np.ndarray,
        seeds: Sequence[int],
        progress: Progress,
        sample_weight: np.ndarray | None = None,
    ) -> None:
        raise NotImplementedError

    def _bootstrap(self) -> bool:
        return False

    def _trains_jointly(self) -> bool:
        """Whether members trained together are faster than one by one."""
        return False

    def _batches_with_replacement(self) -> bool:
        return False

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> BaseNeuralClassifier:
        """Train the members.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Training inputs: tabular rows or images (any number of trailing axes).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Class labels of any hashable type (classifiers), or real targets
            (regressors, which also take several targets).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row, multiplied by the ``class_weight`` of
            its class (classifiers). Each batch's loss is the weighted mean of its per-sample
            losses, ``sum_i w_i l_i / sum_i w_i``, so weights matter only
            relative to each other: ``c * ones`` trains exactly as no weights, for
            any ``c > 0``. Rows of weight 0 are removed before training. With
            ``bootstrap=True`` the weights are used as scikit-learn's
            ``BaggingClassifier`` uses them: each member's resample is drawn with
            probabilities proportional to them, and its loss is then unweighted.

        Returns
        -------
        self : estimator
            The fitted estimator.

        Raises
        ------
        ValueError
            When ``sample_weight`` is not one finite, non-negative weight per row,
            or every row has weight 0.
        """
        self._validate_params()
        n_members = self._n_members()
        growing = bool(getattr(self, "warm_start", False)) and hasattr(self, "estimators_")
        X, y = self._validate_training_data(X, y, reset=not growing)
        sample_weight = training_weights(
            sample_weight, getattr(self, "class_weight", None), y,
            getattr(self, "classes_", None), piece=getattr(self, "_first_partial_fit", False),
        )
        if sample_weight is not None:
            keep = sample_weight > 0
            if not keep.all():
                X, y, sample_weight = X[keep], y[keep], sample_weight[keep]
        device = resolve_device(self.device)
        existing: list[NeuralNetClassifier] = list(self.estimators_) if growing else []
        if growing:
            if n_members < len(existing):
                raise ValueError(
                    f"n_estimators={n_members} must be >= len(estimators_)={len(existing)} "
                    "when warm_start=True."
                )
            if n_members == len(existing):
                warnings.warn(
                    "Warm-start fitting without increasing n_estimators trains no new member.",
                    UserWarning,
                    stacklevel=external_stacklevel(),
                )
                return self
            seeds = _grow_seeds(self.random_state, self.seeds_[: len(existing)], n_members)
        else:
            seeds = draw_member_seeds(self.random_state, n_members)
        new_seeds = seeds[len(existing):]
        output_kind = self._probe(
            self._make_member(int(new_seeds[0]), len(existing), X, device, None),
            int(new_seeds[0]), X,
        )
        if growing and output_kind != getattr(self, "output_kind_", "logits"):
            raise ValueError(
                f"warm_start=True needs the module outputs of the first fit "
                f"({self.output_kind_}), but the module now returns {output_kind}."
            )
        first_partial = getattr(self, "_first_partial_fit", False)
        splits = None if first_partial else _validation_splits(self, y, seeds, len(existing))
        store = _checkpoint_store(self, n_members, len(existing))
        kept = member_records(self, existing)
        # Cache look-ups, member groups over joblib workers or devices: _parallel.py.
        records, device = fit_new_members(self, X, y, new_seeds, len(existing), device,
                                          output_kind, store, sample_weight, splits,
                                          one_epoch=first_partial)
        _set_checkpoints(self, store, len(existing), [r["net"] for r in records])
        set_member_state(self, kept + records)
        self.seeds_ = seeds
        _set_learning_curves(self, splits is not None)
        self.device_ = device
        self.output_kind_ = output_kind
        # Built on the first prediction, reused until the members change; never pickled.
        self._member_predictor = MemberPredictor(getattr(self, "max_members_per_pass", None))
        self._fitted_params = member_params(self)
        return self

    # ----------------------------------------------------------- partial fit
    def _continue_members(
        self,
        nets: Sequence[NeuralNetClassifier],
        X: np.ndarray,
        y: np.ndarray,
        seeds: Sequence[int],
        sample_weight: np.ndarray | None,
    ) -> None:
        """Train fitted members for one more epoch (estimators with ``partial_fit``)."""
        raise NotImplementedError

    def _partial_fit(self, X: Any, y: Any, classes: Any, sample_weight: Any) -> Any:
        if getattr(self, "checkpoint_epochs", None) is not None:
            raise ValueError("partial_fit does not record checkpoints: set "
                             "checkpoint_epochs=None.")
        classifier = isinstance(self, ClassifierMixin)
        class_weight = getattr(self, "class_weight", None)
        if isinstance(class_weight, str) and class_weight == "balanced":
            # As scikit-learn's SGDClassifier.partial_fit: one call's rows may lack
            # classes or misstate their frequencies.
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit: the rows of "
                "one call may lack classes or misstate their frequencies. To use "
                "'balanced' weights, compute them over all classes with sklearn.utils."
                "class_weight.compute_class_weight('balanced', classes=classes, y=y), "
                "with y the targets of the whole training set (or a large enough "
                "sample of them), and pass the resulting {class: weight} dict as "
                "class_weight."
            )
        if not hasattr(self, "estimators_"):
            if classifier and classes is None:
                raise ValueError(
                    f"classes must be given on the first call to {type(self).__name__}"
                    ".partial_fit: the labels of every class, as a batch may lack some."
                )
            if classifier:
                self._partial_classes = np.unique(np.asarray(classes))
            self._first_partial_fit = True
            try:
                return self.fit(X, y, sample_weight=sample_weight)
            finally:
                del self._first_partial_fit
                if classifier:
                    del self._partial_classes
        self._validate_params()
        check_unchanged(self, getattr(self, "_fitted_params", None))
        if classes is not None and not np.array_equal(np.unique(np.asarray(classes)),
                                                      self.classes_):
            raise ValueError(
                f"classes={np.unique(np.asarray(classes)).tolist()} differs from the classes "
                f"of the first call, {self.classes_.tolist()}."
            )
        X, y = self._validate_training_data(X, y, reset=False, subset=True)
        weights = training_weights(sample_weight, class_weight, y,
                                   getattr(self, "classes_", None), piece=True)
        if weights is not None:
            keep = weights > 0
            X, y, weights = X[keep], y[keep], weights[keep]
        bootstrap = self._bootstrap()
        for net, seed in zip(self.estimators_, self.seeds_):
            # An attribute, as skorch stores routed parameters (its set_params would
            # re-initialise parts of a fitted net).
            net.iterator_train__sampler = MemberSampler(
                len(X), int(seed), bootstrap, weights if bootstrap else None,
                replacement=self._batches_with_replacement())
        loss_weights = None if bootstrap else weights
        if not self._criterion_reads_weights and (
                loss_weights is not None
                or any(isinstance(net.criterion_, SampleWeightedLoss)
                       for net in self.estimators_)):
            for net in self.estimators_:
                net.criterion_ = _weighted_criterion(net.criterion_, self._output_kind())
            if loss_weights is None:
                loss_weights = np.ones(len(X))
        self._continue_members(self.estimators_, X, y, [int(s) for s in self.seeds_],
                               loss_weights)
        _set_learning_curves(self, getattr(self, "validation_scores_", None) is not None)
        self._member_predictor = MemberPredictor(getattr(self, "max_members_per_pass", None))
        return self

    # ----------------------------------------------------------- prediction
    def _member_logits(self, X: np.ndarray) -> np.ndarray:
        """Outputs of every member (or posterior sample), shape (n_members, n_samples, C).

        They are logits, probabilities or log-probabilities, as ``output_kind_`` says.

        The members are evaluated together through one grouped network when their
        modules allow it, member by member otherwise.
        """
        return self._predict_logits([net.module_ for net in self.estimators_], X)

    def _predict_logits(self, modules: Sequence[nn.Module], X: np.ndarray) -> np.ndarray:
        """Logits of ``modules`` through the estimator's cached grouped predictor.

        The grouped network is built on the first prediction after a fit (or after
        unpickling) and rebuilt only when the modules or their weights change.
        """
        size = getattr(self, "max_members_per_pass", None)
        predictor = getattr(self, "_member_predictor", None)
        if predictor is None or predictor.max_members_per_pass != size:
            predictor = MemberPredictor(size)  # not kept: predicting leaves self unchanged
        return predictor(modules, X, self.predict_batch_size)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    # ----------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        # Fitted torch objects other than the skorch members (which handle devices
        # themselves) are stored as torch.save bytes, so that an estimator fitted on a
        # GPU can be unpickled and used where no GPU exists.
        state = dict(super().__getstate__())
        for key, value in state.items():
            if key.endswith("_") and key != "estimators_" and _holds_torch(value):
                buffer = io.BytesIO()
                torch.save(value, buffer)
                state[key] = _TorchBytes(buffer.getvalue())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        location = None if torch.cuda.is_available() else "cpu"
        for key, value in state.items():
            if isinstance(value, _TorchBytes):
                state[key] = torch.load(
                    io.BytesIO(value.data), map_location=location, weights_only=False
                )
        super().__setstate__(state)


class BaseNeuralClassifier(ClassifierMixin, BaseNeuralEnsemble):
    """Base class of the ensemble classifiers.

    Adds what is specific to classification to :class:`BaseNeuralEnsemble`: label
    encoding (``classes_``), the members' criterion (``CrossEntropyLoss`` by
    default), what the module returns and the reduction of the member axis to one
    predictive distribution.

    The first member's outputs on a few training rows must have one column per
    class and agree with the criterion. The module may return logits (with
    ``CrossEntropyLoss``, the default), probabilities or log-probabilities (with
    ``NLLLoss``, as in skorch); ``output_kind_`` records which, and every prediction
    method turns them into probabilities.
    """

    # ----------------------------------------------------------- task hooks
    def _validate_training_data(
        self, X: Any, y: Any, reset: bool, subset: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        if not reset:
            self._check_image_shape(X)
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            allow_nd=True,
            dtype=(np.float32, np.float64),
            ensure_all_finite=True,
        )
        check_classification_targets(y)
        X = _as_float32(X)
        if reset:
            self.input_shape_ = tuple(X.shape[1:])
        else:
            self._check_input_shape(X)
        encoder = LabelEncoder().fit(y)
        declared = getattr(self, "_partial_classes", None)
        if declared is not None or (subset and not reset):
            known = declared if reset else self.classes_
            unseen = np.setdiff1d(encoder.classes_, known)
            if len(unseen):
                raise ValueError(
                    f"y holds labels {unseen.tolist()} that are not among the classes "
                    f"{np.asarray(known).tolist()} declared on the first partial_fit call."
                )
            if reset:
                if len(declared) < 2:
                    raise ValueError(f"{type(self).__name__} needs at least 2 classes, got "
                                     f"classes={declared.tolist()}.")
                self.classes_ = declared
            return X, np.searchsorted(self.classes_, y).astype(np.int64)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes, but y contains "
                f"only one class: {encoder.classes_[0]!r}."
            )
        if reset:
            self.classes_ = encoder.classes_
        elif not np.array_equal(encoder.classes_, self.classes_):
            raise ValueError(
                "warm_start=True needs the classes of the first fit "
                f"{self.classes_.tolist()}, got {encoder.classes_.tolist()}."
            )
        return X, np.searchsorted(self.classes_, y).astype(np.int64)

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _member_criterion(self) -> Any:
        return nn.CrossEntropyLoss if self.criterion is None else self.criterion

    def _net_class(self) -> type:
        return NeuralNetClassifier

    def _net_task_kwargs(self, output_kind: str) -> dict[str, Any]:
        return {
            "predict_nonlinearity": predict_nonlinearity(output_kind),
            "classes": np.arange(len(self.classes_)),
        }

    def _probe(self, net: Any, seed: int, X: np.ndarray) -> str:
        return probe_member(net, seed, X, len(self.classes_))

    # ----------------------------------------------------------- prediction
    def predict_member_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of every member.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs shaped like the training inputs.

        Returns
        -------
        proba : ndarray of shape (n_members, n_samples, n_classes)
            Probabilities of each member (the softmax of logits or log-probabilities,
            probability outputs as they are); columns follow ``classes_``.
        """
        X = self._validate_predict_data(X)
        return outputs_to_proba(self._member_logits(X), self._output_kind())

    def _output_kind(self) -> str:
        # Estimators pickled before the output kind was recorded returned logits.
        return getattr(self, "output_kind_", "logits")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Predictive distribution: the mean of the member probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs shaped like the training inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        return self.predict_member_proba(X).mean(axis=0)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of the predictive distribution, computed without underflow.

        ``log(mean_m p_m) = logsumexp_m(log p_m) - log M`` with each member's
        log-probabilities taken from its outputs directly (a log-softmax of logits),
        so classes whose probability underflows to 0 in :meth:`predict_proba` keep a
        finite log-probability.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs shaped like the training inputs.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        X = self._validate_predict_data(X)
        member = outputs_to_log_proba(self._member_logits(X), self._output_kind())
        return logsumexp(member, axis=0) - np.log(len(member))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class under the predictive distribution.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs shaped like the training inputs.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted labels, of the type of ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class _EarlyStopping:
    """The validated early-stopping parameters an estimator declares."""

    VALIDATION_SPLITS = ("per_member", "shared")

    def __init__(self, estimator: Any) -> None:
        self.enabled = bool(getattr(estimator, "early_stopping", False))
        self.validation_fraction = float(getattr(estimator, "validation_fraction", 0.1))
        self.n_iter_no_change = int(getattr(estimator, "n_iter_no_change", 10))
        self.tol = float(getattr(estimator, "tol", 1e-4))
        self.validation_split = getattr(estimator, "validation_split", "per_member")

    @classmethod
    def of(cls, estimator: Any) -> _EarlyStopping:
        return cls(estimator)

    @staticmethod
    def validate(estimator: Any) -> None:
        if not hasattr(estimator, "early_stopping"):
            return
        if not isinstance(estimator.early_stopping, (bool, np.bool_)):
            raise ValueError(f"early_stopping must be True or False, got "
                             f"{estimator.early_stopping!r}.")
        check_float("validation_fraction", estimator.validation_fraction, high=1.0,
                    high_inclusive=False)
        check_int("n_iter_no_change", estimator.n_iter_no_change)
        check_float("tol", estimator.tol, low_inclusive=True)
        if estimator.validation_split not in _EarlyStopping.VALIDATION_SPLITS:
            raise ValueError(
                f"validation_split must be one of {list(_EarlyStopping.VALIDATION_SPLITS)}, "
                f"got {estimator.validation_split!r}."
            )
        if estimator.early_stopping and estimator.checkpoint_epochs is not None:
            raise ValueError(
                "checkpoint_epochs cannot be combined with early_stopping=True: a member "
                "that stops early records no later checkpoint."
            )


def _validation_splits(
    estimator: Any, y: np.ndarray, seeds: np.ndarray, n_existing: int
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Each new member's (training rows, validation rows), or None without early stopping.

    A split of ``validation_fraction`` of the rows (scikit-learn's
    ``train_test_split``, as ``MLPClassifier`` and ``MLPRegressor`` do: stratified by
    class for a classifier, not for a regressor), drawn from the member's seed, or
    from the first member's seed for every member with ``validation_split="shared"``.
    At least 2 validation rows are needed, as in those estimators.
    """
    es = _EarlyStopping.of(estimator)
    if not es.enabled:
        return None
    splits = []
    rows = np.arange(len(y))
    stratified = isinstance(estimator, ClassifierMixin)
    what = "a stratified" if stratified else "a"
    for seed in seeds[n_existing:]:
        source = int(seeds[0]) if es.validation_split == "shared" else int(seed)
        state = derive_seed(source, _VALIDATION_STREAM) % (2**32)
        try:
            train, valid = train_test_split(rows, test_size=es.validation_fraction,
                                            stratify=y if stratified else None,
                                            random_state=state)
        except ValueError as exc:
            raise ValueError(
                f"early_stopping=True holds out {what} validation_fraction="
                f"{es.validation_fraction} of the {len(y)} training rows, which is not "
                f"possible here: {exc}"
            ) from exc
        if len(valid) < 2:
            raise ValueError(
                f"early_stopping=True holds out validation_fraction="
                f"{es.validation_fraction} of the {len(y)} training rows, {len(valid)} "
                "row(s); at least 2 are needed. Increase validation_fraction or the size "
                "of the data."
            )
        splits.append((np.sort(train), np.sort(valid)))
    return splits


def _weighted_criterion(criterion: nn.Module, output_kind: str) -> SampleWeightedLoss:
    """A fitted member's criterion taking ``[label, weight]`` targets."""
    if isinstance(criterion, SampleWeightedLoss):
        return criterion
    if isinstance(criterion, LogProbaCriterion):
        return SampleWeightedLoss(criterion.loss)
    nll = isinstance(criterion, nn.NLLLoss)
    return SampleWeightedLoss(criterion, log_input=output_kind == "proba" and nll)


def _set_learning_curves(estimator: Any, validated: bool) -> None:
    """Per-member curves read from the members' training histories."""
    histories = [net.history for net in estimator.estimators_]
    estimator.loss_curve_ = [[float(v) for v in h[:, "train_loss"]] if len(h) else []
                             for h in histories]
    estimator.n_iter_ = np.array([len(h) for h in histories], dtype=np.int64)
    if not validated:
        estimator.validation_scores_ = None
        estimator.best_epoch_ = None
        return
    key = SCORES[estimator._validation_score]
    scores, best = [], []
    for h in histories:
        values = [row.get(key) for row in h]
        scores.append([float(v) for v in values if v is not None])
        flags = [i for i, row in enumerate(h) if row.get(f"{key}_best")]
        best.append(flags[-1] if flags else -1)
    estimator.validation_scores_ = scores
    estimator.best_epoch_ = np.array(best, dtype=np.int64)


def _checkpoint_plan(estimator: Any) -> tuple[np.ndarray, Any] | None:
    """Validated ``(epochs, directory)`` of the trajectory to record, or None."""
    epochs = resolve_checkpoint_epochs(estimator.checkpoint_epochs, int(estimator.max_epochs))
    directory = estimator.checkpoint_dir
    if directory is not None and not isinstance(directory, (str, os.PathLike)):
        raise ValueError(f"checkpoint_dir must be None or a folder path, got {directory!r}.")
    if epochs is None:
        return None
    return epochs, directory


def _checkpoint_store(
    estimator: Any, n_members: int, n_existing: int
) -> CheckpointStore | None:
    plan = estimator._checkpoint_plan
    if plan is None:
        return None
    epochs, directory = plan
    if n_existing and not np.array_equal(getattr(estimator, "checkpoint_epochs_", None),
                                         epochs):
        raise ValueError(
            "warm_start=True with checkpoint_epochs needs the existing members to have been "
            "fitted with the same checkpoint_epochs."
        )
    return CheckpointStore(n_members, epochs, directory)


def _set_checkpoints(
    estimator: Any, store: CheckpointStore | None, n_existing: int, nets: Sequence[Any]
) -> None:
    """Publish the recorded trajectory as ``checkpoints_`` (and drop a stale one)."""
    if store is None:
        for name in ("checkpoints_", "checkpoint_buffers_", "checkpoint_epochs_"):
            if hasattr(estimator, name):
                delattr(estimator, name)
        return
    store.allocate_like(nets[0].module_)
    missing = ~store.filled[n_existing:]
    if missing.any():
        warnings.warn(
            f"Training stopped before epochs {store.epochs[missing.any(axis=0)].tolist()} of "
            "checkpoint_epochs for some members (a callback ended it early); those "
            "checkpoints are NaN.",
            UserWarning,
            stacklevel=external_stacklevel(),
        )
    if n_existing:
        store.params[:n_existing] = estimator.checkpoints_[:n_existing]
        store.buffers[:n_existing] = estimator.checkpoint_buffers_[:n_existing]
    store.flush()
    estimator.checkpoints_ = store.params
    estimator.checkpoint_buffers_ = store.buffers
    estimator.checkpoint_epochs_ = store.epochs.copy()


class _TorchBytes:
    """A fitted torch object serialised with ``torch.save``."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def _holds_torch(value: Any) -> bool:
    if isinstance(value, (nn.Module, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_torch(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_torch(v) for v in value.values())
    return False


def _accepted_arguments(target: type) -> set[str] | None:
    """Keyword arguments of ``target``'s constructor; None when it takes ``**kwargs``
    or its signature cannot be read."""
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


#: Input dtypes the prediction fast path accepts (those validate_data keeps).
_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_float32(X: np.ndarray) -> np.ndarray:
    # torch shares memory with numpy; a read-only buffer would be flagged by torch
    # and a float64 array would not match float32 weights.
    if X.dtype != np.float32 or not X.flags.writeable or not X.flags.c_contiguous:
        X = np.array(X, dtype=np.float32, order="C")
    return X



def _is_routed(key: str) -> bool:
    prefix, sep, rest = key.partition("__")
    return bool(sep) and bool(rest) and prefix in ROUTED_PREFIXES


def _grow_seeds(random_state: Any, kept: np.ndarray, n_members: int) -> np.ndarray:
    """Seeds of a grown ensemble: the kept members' seeds, then fresh ones.

    An integer ``random_state`` gives the new members the seeds a full fit would
    give them (the seeds are prefix-stable); ``None`` or a ``RandomState`` draws new
    seeds from it, distinct from the kept ones.
    """
    kept = np.asarray(kept, dtype=np.int64)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        fresh = draw_member_seeds(random_state, n_members)[len(kept):]
    else:
        rng = check_random_state(random_state)
        fresh = draw_member_seeds(rng, n_members - len(kept))
        while np.isin(fresh, kept).any() or len(set(fresh.tolist())) < len(fresh):
            fresh = draw_member_seeds(rng, n_members - len(kept))
    return np.concatenate([kept, fresh])


def _class_weight(weight: Any, n_classes: int) -> torch.Tensor:
    """``criterion__weight`` as a float32 tensor of one weight per class.

    The tensor stays on the CPU in the member's parameters (so a member fitted on a
    GPU unpickles anywhere); skorch moves the criterion, weight included, to the
    member's device.
    """
    try:
        if isinstance(weight, torch.Tensor):
            values = weight.detach().to("cpu", torch.float64).numpy()
        else:
            values = np.asarray(weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"criterion__weight must be a sequence of {n_classes} class weights, got "
            f"{weight!r}."
        ) from exc
    if values.ndim != 1 or len(values) != n_classes:
        raise ValueError(
            f"criterion__weight must hold one weight per class: y has {n_classes} classes "
            f"but criterion__weight has shape {values.shape} (weights follow classes_)."
        )
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(
            f"criterion__weight must be finite and non-negative, got {values.tolist()}."
        )
    return torch.as_tensor(values, dtype=torch.float32)
