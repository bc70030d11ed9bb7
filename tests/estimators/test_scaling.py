"""Scale-out and the member cache: n_jobs, devices and memory on every estimator.

Members depend only on their seed, so training them in worker processes, on a
Dask cluster or loading them from the cache must give what one local fit gives.
Training counts are taken independently of the estimator's own counter, with a
module class that counts its constructions.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from ensemblekit import (
    DeepEnsembleClassifier,
    DropoutClassifier,
    SubspaceSamplingClassifier,
    SWAGClassifier,
)
from ensemblekit.models import MLP

TINY = dict(max_epochs=4, lr=1e-2, batch_size=32, device="cpu", random_state=0,
            module__hidden_layer_sizes=(8,))

ESTIMATORS = [
    pytest.param(DeepEnsembleClassifier, dict(n_estimators=4), id="deep_ensemble"),
    pytest.param(SWAGClassifier, dict(n_estimators=3, n_samples=2, swa_start=2), id="swag"),
    pytest.param(DropoutClassifier, dict(n_estimators=3, n_samples=2), id="dropout"),
    pytest.param(SubspaceSamplingClassifier,
                 dict(n_estimators=3, n_samples=2, method="random"), id="subspace"),
]

# Float tolerance of "identical": the observed differences are exactly zero, the
# tolerance only absorbs a BLAS that rounds differently with other thread counts.
EXACT = dict(rtol=1e-6, atol=1e-7)


class CountingMLP(MLP):
    """An MLP that counts how many networks were built: one per trained member."""

    built = 0

    def __init__(self, in_features, num_classes, hidden_layer_sizes=(100,), dropout=0.0):
        type(self).built += 1
        super().__init__(in_features, num_classes, hidden_layer_sizes, dropout)


class FailingMLP(MLP):
    """An MLP whose construction fails once ``fail_after`` networks were built."""

    built = 0
    fail_after: int | None = None

    def __init__(self, in_features, num_classes, hidden_layer_sizes=(100,), dropout=0.0):
        cls = type(self)
        if cls.fail_after is not None and cls.built >= cls.fail_after:
            raise RuntimeError("simulated crash")
        cls.built += 1
        super().__init__(in_features, num_classes, hidden_layer_sizes, dropout)


def _entries(folder: Path) -> list[Path]:
    return sorted((folder / "ensemblekit_members").glob("*.ekm"))


def _fit(cls, params, X, y, **extra):
    return cls(**TINY, **params, **extra).fit(X, y)


# ---------------------------------------------------------------- n_jobs, devices
@pytest.mark.slow
@pytest.mark.parametrize(("cls", "params"), ESTIMATORS)
def test_loky_workers_match_local_fit(cls, params, iris):
    X, y = iris
    weights = np.linspace(0.5, 2.0, len(y))  # shipped to the workers with the data
    local = cls(**TINY, **params).fit(X, y, sample_weight=weights)
    parallel = cls(**TINY, **params, n_jobs=2).fit(X, y, sample_weight=weights)
    np.testing.assert_allclose(parallel.predict_member_proba(X),
                               local.predict_member_proba(X), **EXACT)
    np.testing.assert_allclose(parallel.predict_proba(X), local.predict_proba(X), **EXACT)
    np.testing.assert_array_equal(parallel.seeds_, local.seeds_)
    assert parallel.n_members_trained_ == params["n_estimators"]


@pytest.mark.slow
def test_devices_shard_groups_and_gather_on_first_device(iris):
    X, y = iris
    # Trajectories recorded in the worker processes come back with their members.
    params = dict(n_estimators=5, checkpoint_epochs="all")
    local = _fit(DeepEnsembleClassifier, params, X, y)
    sharded = _fit(DeepEnsembleClassifier, params, X, y, devices=["cpu", "cpu"])
    np.testing.assert_allclose(sharded.predict_proba(X), local.predict_proba(X), **EXACT)
    assert sharded.device_ == "cpu"
    assert len(sharded.estimators_) == 5
    np.testing.assert_allclose(sharded.checkpoints_, local.checkpoints_, **EXACT)


@pytest.mark.slow
def test_dask_local_cluster_matches_local_fit(iris):
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    X, y = iris
    local_de = _fit(DeepEnsembleClassifier, dict(n_estimators=4), X, y)
    local_swag = _fit(SWAGClassifier, dict(n_estimators=2, n_samples=2, swa_start=2), X, y)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 dashboard_address=None) as cluster,
        distributed.Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        assert joblib.effective_n_jobs(None) == 2
        remote_de = _fit(DeepEnsembleClassifier, dict(n_estimators=4), X, y)
        remote_swag = _fit(SWAGClassifier, dict(n_estimators=2, n_samples=2, swa_start=2),
                           X, y)
    np.testing.assert_allclose(remote_de.predict_proba(X), local_de.predict_proba(X), **EXACT)
    np.testing.assert_allclose(remote_swag.predict_proba(X), local_swag.predict_proba(X),
                               **EXACT)


# ---------------------------------------------------------------- member cache
@pytest.mark.parametrize(("cls", "params"), ESTIMATORS)
def test_cache_gives_the_members_of_a_fresh_fit(cls, params, iris, tmp_path):
    X, y = iris
    reference = _fit(cls, params, X, y)
    small = _fit(cls, {**params, "n_estimators": 2}, X, y, memory=str(tmp_path))
    assert (small.n_members_trained_, small.n_members_loaded_) == (2, 0)
    full = _fit(cls, params, X, y, memory=joblib.Memory(tmp_path, verbose=0))
    n = params["n_estimators"]
    assert (full.n_members_trained_, full.n_members_loaded_) == (n - 2, 2)
    assert len(_entries(tmp_path)) == n
    np.testing.assert_allclose(full.predict_member_proba(X),
                               reference.predict_member_proba(X), **EXACT)
    again = _fit(cls, params, X, y, memory=str(tmp_path))
    assert (again.n_members_trained_, again.n_members_loaded_) == (0, n)
    np.testing.assert_allclose(again.predict_member_proba(X),
                               reference.predict_member_proba(X), **EXACT)


def test_grid_search_over_n_estimators_trains_each_member_once(iris, tmp_path):
    X, y = iris
    grid = {"n_estimators": [1, 2, 4, 8]}
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    scoring = {"acc": "accuracy", "trained": lambda est, X_, y_: est.n_members_trained_}

    def search(memory):
        CountingMLP.built = 0
        est = DeepEnsembleClassifier(CountingMLP, **{**TINY, "max_epochs": 3}, memory=memory)
        result = GridSearchCV(est, grid, cv=cv, scoring=scoring, refit="acc").fit(X, y)
        return result, CountingMLP.built

    # Networks a fit builds besides the members it trains (a fully cached refit
    # trains none): the input checks may build one.
    probe = DeepEnsembleClassifier(CountingMLP, **TINY, n_estimators=1,
                                   memory=str(tmp_path / "probe")).fit(X, y)
    CountingMLP.built = 0
    probe.fit(X, y)
    per_fit = CountingMLP.built
    n_fits = 4 * 3 + 1

    plain, built_plain = search(None)
    cached, built_cached = search(str(tmp_path / "grid"))
    # Per fold: 1 + 2 + 4 + 8 = 15 members without a cache, 8 with one; the refit on
    # all rows trains the members of the best candidate afresh either way.
    assert cached.best_params_ == plain.best_params_
    best = cached.best_params_["n_estimators"]
    assert built_plain - n_fits * per_fit == 3 * 15 + best
    assert built_cached - n_fits * per_fit == 3 * 8 + best
    assert len(_entries(tmp_path / "grid")) == 3 * 8 + best
    trained = np.array([cached.cv_results_[f"split{k}_test_trained"] for k in range(3)])
    np.testing.assert_array_equal(trained.sum(axis=1), [8, 8, 8])
    np.testing.assert_array_equal(
        np.array([plain.cv_results_[f"split{k}_test_trained"] for k in range(3)]).sum(axis=1),
        [15, 15, 15],
    )
    for k in range(3):
        np.testing.assert_allclose(cached.cv_results_[f"split{k}_test_acc"],
                                   plain.cv_results_[f"split{k}_test_acc"], **EXACT)
    np.testing.assert_allclose(cached.predict_proba(X), plain.predict_proba(X), **EXACT)


@pytest.mark.parametrize("cls", [DeepEnsembleClassifier, SWAGClassifier])
def test_cached_members_keep_their_trajectories(cls, iris, tmp_path):
    X, y = iris
    params = dict(n_estimators=3, checkpoint_epochs="all")
    if cls is SWAGClassifier:
        params.update(n_samples=2, swa_start=2)
    reference = _fit(cls, params, X, y)
    _fit(cls, {**params, "n_estimators": 2}, X, y, memory=str(tmp_path))
    full = _fit(cls, params, X, y, memory=str(tmp_path))
    assert (full.n_members_trained_, full.n_members_loaded_) == (1, 2)
    np.testing.assert_allclose(full.checkpoints_, reference.checkpoints_, **EXACT)
    np.testing.assert_array_equal(full.checkpoint_epochs_, reference.checkpoint_epochs_)
    loaded = _fit(cls, params, X, y, memory=str(tmp_path))
    assert loaded.n_members_trained_ == 0
    np.testing.assert_allclose(loaded.checkpoints_, reference.checkpoints_, **EXACT)
    # A fit without trajectories uses the same members; one with other epochs
    # retrains them.
    plain = _fit(cls, {**params, "checkpoint_epochs": None}, X, y, memory=str(tmp_path))
    assert plain.n_members_trained_ == 0
    assert not hasattr(plain, "checkpoints_")
    np.testing.assert_allclose(plain.predict_proba(X), reference.predict_proba(X), **EXACT)
    other = _fit(cls, {**params, "checkpoint_epochs": [1, 3]}, X, y, memory=str(tmp_path))
    assert other.n_members_trained_ == 3
    np.testing.assert_allclose(other.checkpoints_, reference.checkpoints_[:, [1, 3]], **EXACT)


def test_cache_key_covers_data_parameters_and_seed(iris, tmp_path):
    X, y = iris
    memory = str(tmp_path)
    base = dict(n_estimators=2)
    assert _fit(DeepEnsembleClassifier, base, X, y, memory=memory).n_members_trained_ == 2
    changed = [
        dict(lr=2e-2),                       # a training parameter
        dict(module__hidden_layer_sizes=(9,)),  # a routed module parameter
        dict(random_state=1),                # other seeds
    ]
    for change in changed:
        est = DeepEnsembleClassifier(**{**TINY, **base, **change}, memory=memory).fit(X, y)
        assert est.n_members_trained_ == 2, change
    X_other = X.copy()
    X_other[0, 0] += 1.0
    assert _fit(DeepEnsembleClassifier, base, X_other, y, memory=memory).n_members_trained_ == 2
    y_other = y.copy()
    y_other[[0, 60]] = y_other[[60, 0]]
    assert _fit(DeepEnsembleClassifier, base, X, y_other, memory=memory).n_members_trained_ == 2
    weights = np.linspace(0.5, 2.0, len(y))
    weighted = DeepEnsembleClassifier(**{**TINY, **base}, memory=memory)
    assert weighted.fit(X, y, sample_weight=weights).n_members_trained_ == 2
    assert weighted.fit(X, y, sample_weight=weights).n_members_trained_ == 0
    reference = DeepEnsembleClassifier(**{**TINY, **base}).fit(X, y, sample_weight=weights)
    np.testing.assert_allclose(weighted.predict_proba(X), reference.predict_proba(X), **EXACT)
    # Parameters that do not change a member leave the key alone.
    same = DeepEnsembleClassifier(**{**TINY, **base}, memory=memory, verbose=0,
                                  max_members_per_pass=1).fit(X, y)
    assert same.n_members_trained_ == 0


def test_module_instance_hits_across_clones(iris, tmp_path):
    X, y = iris
    est = DeepEnsembleClassifier(MLP(4, 3, hidden_layer_sizes=(8,)), n_estimators=2,
                                 **{k: v for k, v in TINY.items() if not k.startswith("module")},
                                 memory=str(tmp_path))
    first = clone(est).fit(X, y)
    second = clone(est).fit(X, y)
    assert (first.n_members_trained_, second.n_members_trained_) == (2, 0)
    np.testing.assert_allclose(second.predict_proba(X), first.predict_proba(X), **EXACT)


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _foreign(path: Path) -> None:
    # A valid entry, but written for another member.
    other = next(p for p in _entries(path.parent.parent) if p != path)
    path.write_bytes(other.read_bytes())


def _not_an_entry(path: Path) -> None:
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle, but not an entry


@pytest.mark.parametrize("damage", [_corrupt, _truncate, _foreign, _not_an_entry])
def test_damaged_entry_warns_and_is_retrained(damage, iris, tmp_path):
    X, y = iris
    reference = _fit(DeepEnsembleClassifier, dict(n_estimators=3), X, y, memory=str(tmp_path))
    entries = _entries(tmp_path)
    victim = entries[1]
    damage(victim)
    with pytest.warns(UserWarning, match="Ignoring member cache entry"):
        again = _fit(DeepEnsembleClassifier, dict(n_estimators=3), X, y, memory=str(tmp_path))
    assert (again.n_members_trained_, again.n_members_loaded_) == (1, 2)
    np.testing.assert_allclose(again.predict_proba(X), reference.predict_proba(X), **EXACT)
    # The retrained member replaced the damaged entry.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = _fit(DeepEnsembleClassifier, dict(n_estimators=3), X, y, memory=str(tmp_path))
    assert third.n_members_trained_ == 0


def test_entries_are_read_only_from_the_given_folder(iris, tmp_path):
    X, y = iris
    elsewhere, given = tmp_path / "elsewhere", tmp_path / "given"
    _fit(DeepEnsembleClassifier, dict(n_estimators=2), X, y, memory=str(elsewhere))
    (given / "ensemblekit_members").mkdir(parents=True)
    for entry in _entries(elsewhere):
        os.symlink(entry, given / "ensemblekit_members" / entry.name)
    with pytest.warns(UserWarning, match="not a regular file"):
        est = _fit(DeepEnsembleClassifier, dict(n_estimators=2), X, y, memory=str(given))
    assert est.n_members_trained_ == 2


def test_refit_after_a_crash_resumes_from_stored_members(iris, tmp_path):
    X, y = iris
    params = dict(n_estimators=4, engine="sequential")
    reference = DeepEnsembleClassifier(MLP, **TINY, **params).fit(X, y)
    FailingMLP.built, FailingMLP.fail_after = 0, 3
    est = DeepEnsembleClassifier(FailingMLP, **TINY, **params, memory=str(tmp_path))
    with pytest.raises(RuntimeError, match="simulated crash"):
        est.fit(X, y)
    stored = len(_entries(tmp_path))
    assert 0 < stored < 4  # the members finished before the crash, one entry each
    FailingMLP.fail_after = None
    est.fit(X, y)
    assert (est.n_members_trained_, est.n_members_loaded_) == (4 - stored, stored)
    np.testing.assert_allclose(est.predict_proba(X), reference.predict_proba(X), **EXACT)


def test_verbose_reports_hits_and_misses(iris, tmp_path, capsys):
    X, y = iris
    _fit(DeepEnsembleClassifier, dict(n_estimators=2), X, y, memory=str(tmp_path))
    capsys.readouterr()
    _fit(DeepEnsembleClassifier, dict(n_estimators=3), X, y, memory=str(tmp_path), verbose=1)
    out = capsys.readouterr().out
    assert "2 loaded, 1 to train" in out


def test_memory_without_random_state_warns(iris, tmp_path):
    X, y = iris
    with pytest.warns(UserWarning, match="random_state=None"):
        est = DeepEnsembleClassifier(**{**TINY, "random_state": None}, n_estimators=2,
                                     memory=str(tmp_path)).fit(X, y)
    assert est.n_members_trained_ == 2
    assert _entries(tmp_path) == []


def test_unhashable_parameter_disables_the_cache_with_a_warning(iris, tmp_path):
    X, y = iris
    with pytest.warns(UserWarning, match="memory is not used"):
        est = _fit(DeepEnsembleClassifier, dict(n_estimators=2), X, y, memory=str(tmp_path),
                   lr_schedule=lambda epoch: 1.0)
    assert est.n_members_trained_ == 2


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("params", "match"),
    [
        (dict(n_jobs=0), "n_jobs must be None or a non-zero integer"),
        (dict(n_jobs=1.5), "n_jobs must be None or a non-zero integer"),
        (dict(n_jobs=True), "n_jobs must be None or a non-zero integer"),
        (dict(devices="cpu"), "devices must be None, 'all' or a list"),
        (dict(devices=[]), "non-empty list"),
        (dict(devices=["cpu", "nonsense"]), "device must be 'auto' or a torch device"),
        (dict(memory=3), "memory"),
    ],
)
@pytest.mark.parametrize("cls", [DeepEnsembleClassifier, SWAGClassifier, DropoutClassifier,
                                 SubspaceSamplingClassifier])
def test_invalid_scaling_parameters(cls, params, match, iris):
    X, y = iris
    with pytest.raises(ValueError, match=match):
        cls(**TINY, **params).fit(X, y)


def test_devices_all_without_cuda_uses_the_cpu(iris):
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    X, y = iris
    est = _fit(DeepEnsembleClassifier, dict(n_estimators=2), X, y, devices="all")
    assert est.device_ == "cpu"
    reference = _fit(DeepEnsembleClassifier, dict(n_estimators=2), X, y)
    np.testing.assert_allclose(est.predict_proba(X), reference.predict_proba(X), **EXACT)
