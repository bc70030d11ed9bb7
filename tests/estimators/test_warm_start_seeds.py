"""Warm start keeps the seeds of the kept members; member seeds are prefix-stable."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils import check_random_state

from ensemblekit import (
    DeepEnsembleClassifier,
    DropoutClassifier,
    SubspaceSamplingClassifier,
    SWAGClassifier,
)
from ensemblekit.engine import MemberSampler, draw_member_seeds

TINY = dict(max_epochs=3, lr=1e-2, batch_size=32, device="cpu",
            module__hidden_layer_sizes=(8,))
WARM = [cls for cls in (DeepEnsembleClassifier, SWAGClassifier, DropoutClassifier,
                        SubspaceSamplingClassifier) if "warm_start" in cls().get_params()]
KINDS = ["int", "none", "randomstate"]


def _random_state(kind):
    return {"int": 5, "none": None, "randomstate": np.random.RandomState(5)}[kind]


def _trained_seed(net):
    # The seed a member was really trained from: its data order is drawn from it.
    sampler = net.get_params()["iterator_train__sampler"]
    assert isinstance(sampler, MemberSampler)
    return sampler.seed


@pytest.mark.parametrize("cls", WARM)
@pytest.mark.parametrize("kind", KINDS)
def test_grow_keeps_the_seeds_of_kept_members(iris, cls, kind):
    X, y = iris
    clf = cls(n_estimators=2, warm_start=True, random_state=_random_state(kind), **TINY)
    clf.fit(X, y)
    seeds, members = clf.seeds_.copy(), list(clf.estimators_)
    before = clf.predict_member_proba(X)
    clf.set_params(n_estimators=4).fit(X, y)
    np.testing.assert_array_equal(clf.seeds_[:2], seeds)
    assert clf.estimators_[:2] == members
    # Every stored seed is the one its member was trained from, new members included.
    assert [_trained_seed(net) for net in clf.estimators_] == clf.seeds_.tolist()
    assert len(set(clf.seeds_.tolist())) == 4
    np.testing.assert_array_equal(clf.predict_member_proba(X)[:2], before)


@pytest.mark.parametrize("cls", WARM)
def test_int_random_state_grows_like_a_full_fit(iris, cls):
    X, y = iris
    grown = cls(n_estimators=2, warm_start=True, random_state=3, **TINY).fit(X, y)
    grown.set_params(n_estimators=4).fit(X, y)
    full = cls(n_estimators=4, random_state=3, **TINY).fit(X, y)
    small = cls(n_estimators=2, random_state=3, **TINY).fit(X, y)
    np.testing.assert_array_equal(grown.seeds_, full.seeds_)
    np.testing.assert_array_equal(small.seeds_, full.seeds_[:2])
    full_members = full.predict_member_proba(X)
    np.testing.assert_allclose(grown.predict_member_proba(X), full_members, atol=1e-5)
    np.testing.assert_allclose(small.predict_member_proba(X), full_members[:2], atol=1e-5)


@pytest.mark.parametrize("cls", WARM)
def test_random_state_instance_continues_its_stream(iris, cls):
    # Growing draws only the new seeds, so a RandomState ends where a full fit would.
    X, y = iris
    rng = np.random.RandomState(11)
    clf = cls(n_estimators=2, warm_start=True, random_state=rng, **TINY).fit(X, y)
    clf.set_params(n_estimators=3).fit(X, y)
    expected = np.random.RandomState(11).randint(np.iinfo(np.int32).max, size=3)
    np.testing.assert_array_equal(clf.seeds_, expected)


@pytest.mark.parametrize("random_state", [0, 1, 42, 2**31 - 1, np.int64(7)])
def test_member_seeds_are_prefix_stable(random_state):
    # Member i's seed must not depend on how many members are drawn.
    longest = draw_member_seeds(random_state, 64)
    for n in (1, 2, 3, 5, 8, 13, 33, 63):
        np.testing.assert_array_equal(draw_member_seeds(random_state, n), longest[:n])
    independent = check_random_state(int(random_state)).randint(np.iinfo(np.int32).max,
                                                                size=64)
    np.testing.assert_array_equal(longest, independent)
