"""The regressors: the mixture they predict, target scaling, both engines, the methods."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ensemblekit import DeepEnsembleRegressor, DropoutRegressor, SWAGRegressor
from ensemblekit.metrics import (
    crps,
    gaussian_nll,
    get_scorer,
    interval_coverage,
    interval_width,
    predictive_interval,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

_TINY = dict(max_epochs=6, lr=1e-2, batch_size=32, random_state=0, device="cpu",
             module__hidden_layer_sizes=(16,))


def _heteroscedastic(n: int, seed: int):
    """y = sin(4x) + noise whose std grows linearly with x in [0, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(n, 1))
    sigma = 0.05 + 0.5 * x[:, 0]
    return x.astype(np.float32), np.sin(4 * x[:, 0]) + sigma * rng.normal(size=n), sigma


def _linear(n: int = 120, targets: int | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    w = rng.normal(size=(4, targets or 1))
    y = X @ w + 0.1 * rng.normal(size=(n, targets or 1))
    return X, (y[:, 0] if targets is None else y)


@pytest.fixture(scope="module")
def heteroscedastic_fit():
    X, y, _ = _heteroscedastic(1000, 0)
    reg = DeepEnsembleRegressor(n_estimators=5, max_epochs=40, lr=1e-2, batch_size=100,
                                random_state=0, device="cpu",
                                module__hidden_layer_sizes=(32, 32)).fit(X, y)
    return reg, _heteroscedastic(2000, 1)


# ----------------------------------------------------------------- uncertainty quality
def test_intervals_cover_held_out_points_and_follow_the_noise(heteroscedastic_fit):
    reg, (X, y, sigma) = heteroscedastic_fit
    mean, std = reg.predict_member(X)
    coverage = interval_coverage(y, mean, std, level=0.9)
    assert 0.85 <= coverage <= 0.95
    lower, upper = predictive_interval(mean, std, level=0.9)
    width = upper - lower
    assert np.corrcoef(width, sigma)[0, 1] > 0.9
    # Where the noise is ~4x larger, the intervals are too (true ratio 3.8).
    high, low = X[:, 0] > 0.7, X[:, 0] < 0.3
    ratio = width[high].mean() / width[low].mean()
    true_ratio = sigma[high].mean() / sigma[low].mean()
    assert 0.7 * true_ratio < ratio < 1.3 * true_ratio
    # The intervals of a Gaussian with the true noise are 2 * 1.645 * sigma wide.
    assert interval_width(mean, std, 0.9) == pytest.approx(2 * 1.645 * sigma.mean(), rel=0.2)


def test_ensemble_nll_beats_its_members(heteroscedastic_fit):
    reg, (X, y, _) = heteroscedastic_fit
    mean, std = reg.predict_member(X)
    ensemble = gaussian_nll(y, mean, std)
    members = [gaussian_nll(y, mean[[m]], std[[m]]) for m in range(len(mean))]
    # Below the mean member NLL holds for any mixture (Jensen); below the median
    # member is the ensemble's gain (it also beat the best member at this seed, and
    # in about half of the seeds tried).
    assert ensemble < np.mean(members)
    assert ensemble < np.median(members)
    # The scorer scores the same mixture.
    assert get_scorer("neg_gaussian_nll")(reg, X, y) == pytest.approx(-ensemble)


def test_return_std_is_the_mixture_std(heteroscedastic_fit):
    reg, (X, _, _) = heteroscedastic_fit
    mean, std = reg.predict_member(X[:50])
    mix_mean, mix_std = reg.predict(X[:50], return_std=True)
    np.testing.assert_allclose(mix_mean, mean.mean(axis=0), rtol=1e-12)
    # Aleatoric (mean of the variances) plus epistemic (variance of the means).
    expected = np.sqrt((std**2).mean(axis=0) + ((mean - mean.mean(axis=0)) ** 2).mean(axis=0))
    np.testing.assert_allclose(mix_std, expected, rtol=1e-12)
    np.testing.assert_array_equal(reg.predict(X[:50]), mix_mean)


def test_score_is_r2(heteroscedastic_fit):
    reg, (X, y, _) = heteroscedastic_fit
    assert reg.score(X, y) == pytest.approx(r2_score(y, reg.predict(X)))
    assert reg.score(X, y) > 0.5


# ----------------------------------------------------------------- engines
@pytest.mark.parametrize("loss", ["gaussian_nll", "squared_error"])
@pytest.mark.parametrize("targets", [None, 2])
def test_engines_give_the_same_members(loss, targets):
    X, y = _linear(targets=targets)
    kwargs = dict(n_estimators=3, loss=loss, **_TINY)
    seq = DeepEnsembleRegressor(engine="sequential", **kwargs).fit(X, y)
    vec = DeepEnsembleRegressor(engine="vectorized", **kwargs).fit(X, y)
    assert (seq.engine_, vec.engine_) == ("sequential", "vectorized")
    for a, b in zip(seq.predict_member(X), vec.predict_member(X)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    losses = [net.history[:, "train_loss"] for net in seq.estimators_]
    np.testing.assert_allclose(losses, [net.history[:, "train_loss"] for net in vec.estimators_],
                               rtol=1e-4, atol=1e-6)


def test_training_loss_is_the_gaussian_nll_of_the_members():
    X, y = _linear()
    reg = DeepEnsembleRegressor(n_estimators=2, engine="vectorized", batch_size=len(X),
                                **{k: v for k, v in _TINY.items() if k != "batch_size"})
    reg.fit(X, y)
    # Full-batch training: the last recorded loss is the NLL (without the log(2 pi)/2
    # constant) of the weights before the last step, in standardised units; the final
    # weights' NLL is close to it and computed here independently with scipy.
    from scipy import stats

    mean, std = reg.predict_member(X)
    z_y = (y - y.mean()) / y.std()
    for m in range(2):
        nll = -stats.norm.logpdf(z_y, (mean[m] - y.mean()) / y.std(), std[m] / y.std()).mean()
        recorded = reg.estimators_[m].history[-1, "train_loss"]
        assert nll - 0.5 * np.log(2 * np.pi) == pytest.approx(recorded, abs=0.05)


# ----------------------------------------------------------------- targets
def test_multi_output_shapes():
    X, y = _linear(targets=3)
    reg = DeepEnsembleRegressor(n_estimators=2, **_TINY).fit(X, y)
    assert reg.n_targets_ == 3
    assert reg.predict(X[:5]).shape == (5, 3)
    mean, std = reg.predict_member(X[:5])
    assert mean.shape == std.shape == (2, 5, 3)
    assert reg.estimators_[0].module_(torch.as_tensor(X[:2])).shape == (2, 6)
    # A 2-D y with one column keeps its second axis.
    one = DeepEnsembleRegressor(n_estimators=2, **_TINY).fit(X, y[:, :1])
    assert one.predict(X[:5]).shape == (5, 1)
    assert one.predict_member(X[:5])[0].shape == (2, 5, 1)


@pytest.mark.parametrize("loss", ["gaussian_nll", "squared_error"])
def test_targets_are_standardised_and_mapped_back(loss):
    X, y = _linear(targets=2)
    scale, shift = np.array([1000.0, 0.01]), np.array([-5e4, 3.0])
    kwargs = dict(n_estimators=2, loss=loss, **_TINY)
    ref = DeepEnsembleRegressor(**kwargs).fit(X, y)
    moved = DeepEnsembleRegressor(**kwargs).fit(X, y * scale + shift)
    np.testing.assert_allclose(moved.y_mean_, y.mean(axis=0) * scale + shift)
    np.testing.assert_allclose(moved.y_std_, y.std(axis=0) * scale)
    mean, std = ref.predict(X, return_std=True)
    moved_mean, moved_std = moved.predict(X, return_std=True)
    # Same standardised targets, same members: predictions in target units follow.
    np.testing.assert_allclose((moved_mean - shift) / scale, mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(moved_std / scale, std, rtol=1e-3, atol=1e-5)


def test_normalize_y_false_trains_on_raw_targets():
    X, y = _linear()
    reg = DeepEnsembleRegressor(n_estimators=1, normalize_y=False, **_TINY).fit(X, y + 50)
    assert reg.y_mean_.tolist() == [0.0] and reg.y_std_.tolist() == [1.0]
    out = reg.estimators_[0].module_(torch.as_tensor(X[:4])).detach().numpy()
    np.testing.assert_allclose(reg.predict_member(X[:4])[0][0], out[:, 0], rtol=1e-6)


def test_constant_target_column_is_only_centred():
    X, y = _linear(targets=2)
    y[:, 1] = 7.0
    reg = DeepEnsembleRegressor(n_estimators=1, **_TINY).fit(X, y)
    assert reg.y_std_[1] == 1.0 and reg.y_mean_[1] == 7.0
    assert np.isfinite(reg.predict(X)).all()


def test_squared_error_members_have_no_noise():
    X, y = _linear()
    reg = DeepEnsembleRegressor(n_estimators=3, loss="squared_error", **_TINY).fit(X, y)
    mean, std = reg.predict_member(X[:10])
    assert (std == 0).all()
    _, mix_std = reg.predict(X[:10], return_std=True)
    np.testing.assert_allclose(mix_std, mean.std(axis=0), rtol=1e-12)
    assert reg.output_kind_ == "mean"
    assert get_scorer("neg_crps")(reg, X, y) == pytest.approx(-crps(y, *reg.predict_member(X)))


def test_warm_start_keeps_the_target_scaling():
    X, y = _linear()
    reg = DeepEnsembleRegressor(n_estimators=2, warm_start=True, **_TINY).fit(X, y)
    before = reg.predict_member(X[:5])[0]
    reg.set_params(n_estimators=3).fit(X, y * 10)
    assert reg.y_std_[0] == pytest.approx(y.std())
    np.testing.assert_array_equal(reg.predict_member(X[:5])[0][:2], before)


# ----------------------------------------------------------------- other methods
def test_swag_regressor_samples_networks_around_one_run():
    X, y = _linear(targets=2)
    reg = SWAGRegressor(n_samples=4, swa_start=3, **_TINY).fit(X, y)
    mean, std = reg.predict_member(X[:7])
    assert mean.shape == std.shape == (4, 7, 2)
    assert (std > 0).all()
    assert np.ptp(mean, axis=0).max() > 0  # the samples differ
    assert reg.moments_[0].n_collected == 3 and len(reg.sample_networks_) == 4


def test_dropout_regressor_samples_thinned_networks():
    X, y = _linear()
    reg = DropoutRegressor(n_samples=5, **_TINY).fit(X, y)
    mean, std = reg.predict_member(X[:7])
    assert mean.shape == std.shape == (5, 7)
    assert np.ptp(mean, axis=0).max() > 0
    # Fixed masks: predictions are deterministic.
    np.testing.assert_array_equal(reg.predict_member(X[:7])[0], mean)


def test_dropout_regressor_needs_dropout():
    X, y = _linear()
    with pytest.raises(ValueError, match="DropoutRegressor needs a module with a dropout"):
        DropoutRegressor(n_samples=2, module__dropout=0.0, **_TINY).fit(X, y)


# ----------------------------------------------------------------- contract
def test_pickle_round_trip():
    X, y = _linear()
    reg = DeepEnsembleRegressor(n_estimators=2, **_TINY).fit(X, y)
    clone = pickle.loads(pickle.dumps(reg))
    for a, b in zip(reg.predict_member(X), clone.predict_member(X)):
        np.testing.assert_array_equal(a, b)


def test_scorers_follow_the_regressor_into_a_pipeline():
    X, y = _linear()
    pipe = make_pipeline(StandardScaler(), DeepEnsembleRegressor(n_estimators=2, **_TINY))
    pipe.fit(X, y)
    inner = pipe[-1].predict_member(pipe[0].transform(X))
    assert get_scorer("neg_crps")(pipe, X, y) == pytest.approx(-crps(y, *inner))
    assert get_scorer("interval_coverage_90")(pipe, X, y) == pytest.approx(
        interval_coverage(y, *inner, level=0.9))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(loss="absolute_error"), r"loss must be one of \['gaussian_nll', 'squared_error'\]"),
        (dict(normalize_y="yes"), "normalize_y must be True or False"),
        (dict(criterion__weight=[1.0]), "criterion__weight cannot be set"),
        (dict(module__num_classes=3), r"returns 3 outputs per sample, but loss='gaussian_nll'"),
        (dict(n_estimators=0), "n_estimators must be an integer >= 1"),
    ],
)
def test_invalid_parameters_raise(params, message):
    X, y = _linear()
    with pytest.raises(ValueError, match=message):
        DeepEnsembleRegressor(**{**_TINY, **params}).fit(X, y)


def test_score_functions_refuse_a_classifier():
    from ensemblekit import DeepEnsembleClassifier

    X, y = _linear()
    clf = DeepEnsembleClassifier(n_estimators=1, **_TINY).fit(X, y > 0)
    with pytest.raises(TypeError, match="needs a regressor with a predict_member"):
        get_scorer("neg_gaussian_nll")(clf, X, y)


# ----------------------------------------------------------------- sample weights
@pytest.mark.parametrize("loss", ["gaussian_nll", "squared_error"])
def test_weighted_criterion_is_the_weighted_mean_of_row_losses(loss):
    from ensemblekit.engine import GaussianNLLCriterion, SquaredErrorCriterion

    gen = torch.Generator().manual_seed(0)
    t = 2
    width = 2 * t if loss == "gaussian_nll" else t
    out = torch.randn(7, width, generator=gen)
    y = torch.randn(7, t, generator=gen)
    w = torch.rand(7, generator=gen)
    if loss == "gaussian_nll":
        crit = GaussianNLLCriterion(min_variance=1e-3)
        var = torch.nn.functional.softplus(out[:, t:]) + 1e-3
        per = torch.nn.functional.gaussian_nll_loss(out[:, :t], y, var, reduction="none")
    else:
        crit = SquaredErrorCriterion()
        per = torch.nn.functional.mse_loss(out, y, reduction="none")
    rows = per.mean(dim=1)
    assert torch.isclose(crit(out, y), rows.mean())
    weighted = torch.cat([y, w[:, None]], dim=1)
    assert torch.isclose(crit(out, weighted), (w * rows).sum() / w.sum())
    # The stacked form of the vectorised engine gives each member its own loss.
    stacked = crit.member_losses(torch.stack([out, 2 * out]), torch.stack([weighted] * 2))
    assert torch.allclose(stacked, torch.stack([crit(out, weighted), crit(2 * out, weighted)]))


def test_sample_weight_trains_the_same_members_in_both_engines():
    X, y = _linear(targets=2)
    w = np.random.default_rng(1).uniform(0.1, 3.0, size=len(X))
    kwargs = dict(n_estimators=2, **_TINY)
    seq = DeepEnsembleRegressor(engine="sequential", **kwargs).fit(X, y, sample_weight=w)
    vec = DeepEnsembleRegressor(engine="vectorized", **kwargs).fit(X, y, sample_weight=w)
    assert vec.engine_ == "vectorized"
    for a, b in zip(seq.predict_member(X), vec.predict_member(X)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # Weights change training; scaling them all does not.
    plain = DeepEnsembleRegressor(**kwargs).fit(X, y).predict(X)
    assert np.abs(plain - vec.predict(X)).max() > 1e-4
    scaled = DeepEnsembleRegressor(engine="vectorized", **kwargs).fit(X, y, sample_weight=5 * w)
    np.testing.assert_allclose(scaled.predict(X), vec.predict(X), rtol=1e-5, atol=1e-6)
