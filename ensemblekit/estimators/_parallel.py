"""Scale-out of member training: groups of members over joblib workers or devices.

Members are independent: each depends on the data, the parameters and its own
seed only. :func:`fit_new_members` therefore loads the members the cache already
holds, splits the others into groups and trains each group wherever joblib sends
it (in this process, loky worker processes, or a Dask cluster inside
``joblib.parallel_backend("dask")``), or one group per device of ``devices``, each
in its own worker process. The result is the same as training every member here
in one go: the same seeds give the same members.

Per-member fitted state other than the skorch net (SWAG moments, sampled
networks, ...) travels in a *member record*; each estimator declares in
``_member_attributes`` how its fitted attributes split into records and join
back, so groups, cache entries and warm-started members combine alike.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import joblib
import numpy as np
import torch
from torch import nn

from .._stacklevel import external_stacklevel
from ..engine import CheckpointStore, MonitorCallback, Progress, StopCallback, module_device
from ._cache import MemberCache, member_keys
from ._validation import resolve_device

#: How a fitted attribute splits into members: ``"item"`` a list with one entry
#: per member, ``"chunk"`` a list with the same number of entries per member,
#: ``"row"`` an array with one row per member, ``"shared"`` one value for all (the
#: last member's is kept).
MEMBER_KINDS = ("item", "chunk", "row", "shared")

# Fitted attributes a worker needs to build members; every other one stays home.
_TRAINER_ATTRIBUTES = ("classes_", "n_features_in_", "feature_names_in_", "input_shape_",
                       "n_targets_", "y_mean_", "y_std_")
# Private state of an earlier fit that workers have no use for.
_TRAINER_EXCLUDED = ("_member_predictor", "_checkpoint_store")


# ----------------------------------------------------------------- parameters
def check_n_jobs(n_jobs: Any) -> int | None:
    """Validate ``n_jobs`` (joblib's meaning): None or a non-zero integer."""
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(
            "n_jobs must be None or a non-zero integer (negative values count back from "
            f"the number of CPUs, -1 uses all), got {n_jobs!r}."
        )
    return int(n_jobs)


def resolve_devices(devices: Any) -> list[str] | None:
    """Turn the ``devices`` parameter into a list of torch device strings.

    ``None`` means no sharding (the ``device`` parameter applies); ``"all"`` means
    every visible CUDA device, or the CPU when there is none; a list names the
    devices, all of one type (``"cpu"`` may repeat, to use several processes).

    Examples
    --------
    >>> resolve_devices(["cpu", "cpu"])
    ['cpu', 'cpu']
    >>> resolve_devices(None) is None
    True
    """
    if devices is None:
        return None
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(
                f"devices must be None, 'all' or a list of torch devices, got {devices!r}; "
                f"for a single device use device={devices!r}."
            )
        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu"]
    if not isinstance(devices, (list, tuple)) or len(devices) == 0:
        raise ValueError(
            f"devices must be None, 'all' or a non-empty list of torch devices, got {devices!r}."
        )
    resolved = [resolve_device(d) for d in devices]
    kinds = {torch.device(d).type for d in resolved}
    if len(kinds) > 1:
        raise ValueError(
            f"devices must all be of one type, got {resolved}: members trained on a CPU "
            "and on a GPU differ by floating-point rounding."
        )
    return resolved


# ----------------------------------------------------------------- member records
def member_records(estimator: Any, nets: Sequence[Any]) -> list[dict[str, Any]]:
    """Split a fitted estimator's per-member state into one record per net.

    ``nets`` are the members whose state the estimator's fitted attributes hold, in
    order. A record is ``{"net": net, "state": {attribute: value}}``.
    """
    k = len(nets)
    states: list[dict[str, Any]] = [{} for _ in range(k)]
    for name, kind in estimator._member_attributes.items():
        if k == 0:
            break
        value = getattr(estimator, name)
        for i in range(k):
            if kind == "item":
                states[i][name] = value[i]
            elif kind == "chunk":
                size = len(value) // k
                states[i][name] = list(value[i * size:(i + 1) * size])
            elif kind == "row":
                states[i][name] = np.asarray(value)[i]
            else:
                states[i][name] = value
    return [{"net": net, "state": state} for net, state in zip(nets, states)]


def set_member_state(estimator: Any, records: Sequence[dict[str, Any]]) -> None:
    """Set ``estimators_`` and the per-member fitted attributes from ``records``."""
    estimator.estimators_ = [record["net"] for record in records]
    for name, kind in estimator._member_attributes.items():
        values = [record["state"][name] for record in records]
        if kind == "item":
            setattr(estimator, name, values)
        elif kind == "chunk":
            setattr(estimator, name, [x for value in values for x in value])
        elif kind == "row":
            setattr(estimator, name, np.stack(values))
        else:
            setattr(estimator, name, values[-1])


# ----------------------------------------------------------------- training
def train_group(
    trainer: Any,
    X: np.ndarray,
    y: np.ndarray,
    seeds: Sequence[int],
    indices: Sequence[int],
    device: str,
    output_kind: str,
    sample_weight: np.ndarray | None = None,
    progress: Progress | None = None,
    ship_checkpoints: bool = False,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    one_epoch: bool = False,
) -> list[dict[str, Any]]:
    """Build and train one group of members; runs wherever joblib sends it.

    Parameters
    ----------
    trainer : estimator
        A copy of the estimator carrying its parameters and the fitted attributes
        members are built from (:func:`_trainer`).
    X, y : ndarray
        Validated training data (float32 inputs, encoded targets).
    seeds, indices : sequence of int
        Seed and position in the ensemble of each member of the group.
    device : str
        Device the group is trained on.
    output_kind : {"logits", "proba", "log_proba"}
        What the module returns (found by the probe in ``fit``).
    sample_weight : ndarray of shape (n_samples,) or None
        Training weights of the rows (class weights included).
    progress : Progress, optional
        Progress bar (in this process only).
    ship_checkpoints : bool, default=False
        Return the members' recorded trajectories with their records (their rows of
        the trainer's checkpoint store, which stays behind in a worker process).
    splits : sequence of (ndarray, ndarray), optional
        Each member's (training rows, validation rows) for early stopping.
    one_epoch : bool, default=False
        Train one epoch whatever ``max_epochs`` says (the first ``partial_fit`` call).

    Returns
    -------
    records : list of dict
        One member record per member, in order.
    """
    bar = progress if progress is not None else Progress(0, enabled=False)
    # Data shipped to a worker may arrive read-only (joblib memory-maps large arrays),
    # and torch refuses to share memory with a read-only array.
    X, y = np.require(X, requirements="W"), np.require(y, requirements="W")
    if sample_weight is not None:
        sample_weight = np.require(sample_weight, requirements="W")
    bootstrap = trainer._bootstrap()
    nets = [
        trainer._make_member(int(s), int(i), X, device, progress, bootstrap, output_kind,
                             sample_weight, None if splits is None else splits[k], y)
        for k, (s, i) in enumerate(zip(seeds, indices))
    ]
    if one_epoch:
        for net in nets:
            net.set_params(max_epochs=1)
    trainer._fit_members(nets, X, y, [int(s) for s in seeds], bar,
                         sample_weight=None if bootstrap else sample_weight)
    for net in nets:
        # Validation rows belong to this fit; continued training has none (and the
        # member travels and is cached without them).
        net.callbacks_ = [(name, cb) for name, cb in net.callbacks_
                          if not isinstance(cb, (MonitorCallback, StopCallback))]
    records = member_records(trainer, nets)
    store = getattr(trainer, "_checkpoint_store", None)
    if ship_checkpoints and store is not None:
        for record, index in zip(records, indices):
            record["checkpoints"] = _get_rows(store, int(index), record["net"])
    return records


def fit_new_members(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    seeds: Sequence[int],
    first: int,
    device: str,
    output_kind: str = "logits",
    store: CheckpointStore | None = None,
    sample_weight: np.ndarray | None = None,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    one_epoch: bool = False,
) -> tuple[list[dict[str, Any]], str]:
    """Load or train the members of ``seeds``: the single dispatch point of ``fit``.

    Reads the estimator's ``n_jobs``, ``devices`` and ``memory``. Members found in
    the cache are loaded; the others are split into groups (as many as workers for
    an estimator that trains members jointly, one member per group otherwise, one
    group per device with ``devices``), trained, and stored in the cache as each
    group finishes, so a fit that stops half way resumes from the stored members.
    Sets ``n_members_trained_`` and ``n_members_loaded_``.

    Parameters
    ----------
    estimator : BaseNeuralClassifier
        The estimator being fitted, its parameters validated.
    X, y : ndarray
        Validated training data.
    seeds : sequence of int
        Seeds of the members to produce.
    first : int
        Position in the ensemble of the first of them.
    device : str
        The resolved ``device`` parameter.
    output_kind : str, default="logits"
        What the module returns (found by the probe in ``fit``).
    store : CheckpointStore, optional
        Where the members' trajectories go (``checkpoint_epochs``), one row per
        member of the whole ensemble; rows of loaded members come from the cache.
    sample_weight : ndarray of shape (n_samples,), optional
        Training weights of the rows; part of the data a member's key covers.
    splits : sequence of (ndarray, ndarray), optional
        Each member's (training rows, validation rows) with early stopping, one per
        seed; part of the member's key.
    one_epoch : bool, default=False
        Train each member one epoch (the first ``partial_fit`` call); part of the key.

    Returns
    -------
    records : list of dict
        One member record per seed, in order, all on one device.
    device : str
        That device.
    """
    n_jobs = check_n_jobs(estimator.n_jobs)
    devices = resolve_devices(estimator.devices)
    cache = MemberCache.from_memory(estimator.memory)
    name = type(estimator).__name__
    verbose = int(estimator.verbose)
    target = devices[0] if devices else device
    seeds = [int(s) for s in seeds]

    records: list[dict[str, Any] | None] = [None] * len(seeds)
    keys: list[str] = []
    if cache is not None and estimator.random_state is None:
        warnings.warn(
            "memory has no effect with random_state=None: the member seeds change at "
            "every fit. Set random_state to an integer to reuse members.",
            UserWarning,
            stacklevel=external_stacklevel(),
        )
        cache = None
    if cache is not None:
        try:
            extras = [
                (bool(one_epoch), None if splits is None else joblib.hash(splits[i][1]))
                for i in range(len(seeds))
            ]
            keys = member_keys(estimator, X, y, seeds, target, sample_weight, extras)
        except Exception as exc:  # e.g. a lambda among the parameters
            warnings.warn(f"memory is not used: the parameters cannot be hashed ({exc}).",
                          UserWarning, stacklevel=external_stacklevel())
            cache = None
    if cache is not None:
        records = [cache.load(key, target) for key in keys]
        for i, record in enumerate(records):
            if record is None:
                continue
            # A member stored with its trajectory serves fits without one; a member
            # stored without it (or with other epochs) is trained again.
            rows = record.pop("checkpoints", None)
            epochs = record.pop("checkpoint_epochs", None)
            if store is not None:
                if rows is None or not np.array_equal(epochs, store.epochs):
                    records[i] = None
                    continue
                _put_rows(store, first + i, rows)
    missing = [i for i, record in enumerate(records) if record is None]
    if cache is not None and verbose > 0:
        print(f"[{name}] member cache {cache.folder}: {len(seeds) - len(missing)} loaded, "
              f"{len(missing)} to train")

    n_workers = len(devices) if devices else joblib.effective_n_jobs(n_jobs)
    if devices or estimator._trains_jointly():
        size = max(1, math.ceil(len(missing) / max(1, n_workers)))
    else:
        size = 1
    groups = [missing[i:i + size] for i in range(0, len(missing), size)]
    group_devices = [devices[g % len(devices)] if devices else device
                     for g in range(len(groups))]
    remote = len(groups) > 1 and n_workers > 1
    if remote and verbose > 0:
        where = "device processes" if devices else "joblib workers"
        print(f"[{name}] training {len(missing)} members in {len(groups)} groups over "
              f"{n_workers} {where}")
    trainer = _trainer(estimator)
    # A worker records trajectories in its own store and ships its rows back.
    trainer._checkpoint_store = (
        None if store is None
        else CheckpointStore(store.n_members, store.epochs) if remote else store
    )
    epochs = 1 if one_epoch else int(estimator.max_epochs)
    progress = Progress(len(missing) * epochs, enabled=verbose > 0)
    try:
        if not remote:
            results: Any = (
                train_group(trainer, X, y, [seeds[i] for i in group],
                            [first + i for i in group], dev, output_kind, sample_weight,
                            progress, splits=_pick(splits, group), one_epoch=one_epoch)
                for group, dev in zip(groups, group_devices)
            )
        else:
            # Explicit devices are local: one loky process per device keeps each GPU
            # driven by one process, whatever backend is active. Otherwise the active
            # joblib backend decides (loky by default, Dask inside
            # ``joblib.parallel_backend("dask")``).
            # Results as they come (joblib >= 1.3), so each group is stored at once.
            ordered = ({"return_as": "generator"}
                       if "return_as" in inspect.signature(joblib.Parallel).parameters else {})
            parallel = joblib.Parallel(
                n_jobs=len(devices) if devices else n_jobs,
                backend="loky" if devices else None,
                **ordered,
            )
            results = parallel(
                joblib.delayed(train_group)(
                    trainer, X, y, [seeds[i] for i in group], [first + i for i in group], dev,
                    output_kind, sample_weight, ship_checkpoints=True,
                    splits=_pick(splits, group), one_epoch=one_epoch,
                )
                for group, dev in zip(groups, group_devices)
            )
        for group, group_records in zip(groups, results):
            for i, record in zip(group, group_records):
                shipped = record.pop("checkpoints", None)
                if store is not None and shipped is not None:
                    _put_rows(store, first + i, shipped)
                if cache is not None:
                    entry = record if store is None else {
                        **record, "checkpoints": _get_rows(store, first + i, record["net"]),
                        "checkpoint_epochs": store.epochs.copy(),
                    }
                    cache.store(keys[i], entry)
                records[i] = record
            if remote:
                progress.advance(len(group) * epochs)
        progress.finish()
    finally:
        progress.close()

    done = [_to_device(record, target) for record in records if record is not None]
    estimator.n_members_trained_ = len(missing)
    estimator.n_members_loaded_ = len(seeds) - len(missing)
    return done, target


def _pick(splits: Sequence[Any] | None, group: Sequence[int]) -> list[Any] | None:
    return None if splits is None else [splits[i] for i in group]


def _trainer(estimator: Any) -> Any:
    # A light copy to ship to workers: parameters, private settings from
    # validation, and the fitted attributes members are built from, without the
    # members of an earlier fit.
    trainer = object.__new__(type(estimator))
    trainer.__dict__.update({
        key: value for key, value in vars(estimator).items()
        if (not key.endswith("_") or key.startswith("_") or key in _TRAINER_ATTRIBUTES)
        and key not in _TRAINER_EXCLUDED
    })
    return trainer


def _get_rows(store: CheckpointStore, index: int, net: Any) -> tuple[np.ndarray, ...]:
    # Rows of a member stopped early by a callback hold NaN where it never got to.
    store.allocate_like(net.module_)
    assert store.params is not None and store.buffers is not None
    return (store.params[index].copy(), store.buffers[index].copy(),
            store.filled[index].copy())


def _put_rows(store: CheckpointStore, index: int, rows: tuple[np.ndarray, ...]) -> None:
    params, buffers, filled = rows
    if store.params is None:
        store.allocate(params.shape[-1], buffers.shape[-1])
    assert store.params is not None and store.buffers is not None
    store.params[index] = params
    store.buffers[index] = buffers
    store.filled[index] = filled


def _to_device(record: dict[str, Any], device: str) -> dict[str, Any]:
    # Members trained on several devices are gathered on one, so that prediction
    # evaluates them together.
    target = torch.device(device)
    net = record["net"]
    module = getattr(net, "module_", None)
    if module is None or module_device(module) == target:
        return record
    net.module_.to(target)
    if getattr(net, "criterion_", None) is not None:
        net.criterion_.to(target)
    optimizer = getattr(net, "optimizer_", None)
    if optimizer is not None:
        for state in optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    state[key] = value.to(target)
    net.device = device
    for value in record["state"].values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, nn.Module):
                item.to(target)
    return record
