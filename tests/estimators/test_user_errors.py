"""Mistakes users make, answered with clear errors (or accepted as scikit-learn does).

Parameter typos, boolean ``verbose``, ``predict_log_proba``, class weights given as
arrays, images of the wrong layout or channel count, devices this machine lacks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, logsumexp
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV
from torch import nn

from ensemblekit import (
    DeepEnsembleClassifier,
    DropoutClassifier,
    SubspaceSamplingClassifier,
    SWAGClassifier,
)
from ensemblekit.models import ResNet20v1, SmallCNN

COMMON = dict(max_epochs=3, lr=1e-2, batch_size=32, random_state=0, device="cpu",
              module__hidden_layer_sizes=(8,))
ESTIMATORS = {
    "deep_ensemble": (DeepEnsembleClassifier, dict(n_estimators=2)),
    "swag": (SWAGClassifier, dict(n_samples=3, swa_start=1)),
    "dropout": (DropoutClassifier, dict(n_samples=3)),
    "subspace": (SubspaceSamplingClassifier, dict(n_samples=3)),
}


def _make(name, **params):
    cls, extra = ESTIMATORS[name]
    return cls(**{**COMMON, **extra, **params})


# ------------------------------------------------------------------ parameter names
@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("typo,guess", [
    ("n_estimator", "n_estimators"),
    ("max_epoch", "max_epochs"),
    ("randomstate", "random_state"),
    ("modul__hidden_layer_sizes", "module__hidden_layer_sizes"),
    ("optimiser__momentum", "optimizer__momentum"),
])
def test_set_params_refuses_typos_with_the_closest_name(name, typo, guess):
    clf = _make(name)
    with pytest.raises(ValueError, match=rf"Invalid parameter '{typo}'.*Did you mean '{guess}'\?"):
        clf.set_params(**{typo: 3})
    assert typo not in clf.get_params()


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_typo_in_constructor_is_refused_at_fit(iris, name):
    X, y = iris
    cls, _ = ESTIMATORS[name]
    clf = cls(n_estimator=3, **COMMON)
    with pytest.raises(ValueError, match=r"Invalid parameter 'n_estimator'.*'n_estimators'"):
        clf.fit(X, y)


def test_unknown_name_lists_the_valid_parameters():
    with pytest.raises(ValueError, match=r"Valid parameters are: \[.*'n_estimators'.*\]"):
        DeepEnsembleClassifier().set_params(nonsense=1)


def test_routed_names_with_a_valid_prefix_stay_accepted(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(**COMMON).set_params(
        optimizer__weight_decay=1e-4, module__dropout=0.0, iterator_valid__batch_size=8,
        n_estimators=1,
    )
    assert clf.get_params()["optimizer__weight_decay"] == 1e-4
    clf.fit(X, y)
    assert clf.estimators_[0].optimizer_.param_groups[0]["weight_decay"] == 1e-4


def test_grid_search_with_a_typo_fails_at_once(iris):
    X, y = iris
    search = GridSearchCV(DeepEnsembleClassifier(**COMMON), {"n_estimator": [1, 2]}, cv=2)
    with pytest.raises(ValueError, match="Did you mean 'n_estimators'"):
        search.fit(X, y)


# ------------------------------------------------------------------ verbose
@pytest.mark.parametrize("verbose,shows", [(True, True), (False, False), (np.True_, True)])
def test_verbose_accepts_booleans(iris, capsys, verbose, shows):
    X, y = iris
    DeepEnsembleClassifier(n_estimators=1, verbose=verbose, **COMMON).fit(X, y)
    err = capsys.readouterr().err
    assert ("member-epochs" in err) is shows


@pytest.mark.parametrize("verbose", [-1, "yes", 1.5])
def test_verbose_still_refuses_non_integers(iris, verbose):
    X, y = iris
    with pytest.raises(ValueError, match="verbose must be an integer >= 0"):
        DeepEnsembleClassifier(verbose=verbose, **COMMON).fit(X, y)


# ------------------------------------------------------------------ predict_log_proba
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_predict_log_proba_is_the_log_of_predict_proba(iris, name):
    X, y = iris
    clf = _make(name).fit(X, y)
    log_proba = clf.predict_log_proba(X)
    assert log_proba.shape == (len(X), 3)
    np.testing.assert_allclose(log_proba, np.log(clf.predict_proba(X)), rtol=1e-9, atol=1e-9)


class Scaled(nn.Module):
    """Logits multiplied by a large constant: probabilities underflow to 0."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 2000.0) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)
        self.scale = scale

    def forward(self, x):
        return self.linear(x) * self.scale


def test_predict_log_proba_is_stable_where_probabilities_underflow(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(Scaled, n_estimators=2, max_epochs=1, random_state=0,
                                 device="cpu").fit(X, y)
    with torch.no_grad():
        logits = np.stack([net.module_.eval()(torch.as_tensor(X)).double().numpy()
                           for net in clf.estimators_])
    expected = logsumexp(log_softmax(logits, axis=2), axis=0) - np.log(2)
    got = clf.predict_log_proba(X)
    assert np.isfinite(got).all()
    assert (expected < -700).any()  # np.log(predict_proba) would be -inf there
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------ class weights
@pytest.mark.parametrize("weight", [
    np.array([1.0, 2.0, 0.5]),
    [1, 2, 0.5],
    (1.0, 2.0, 0.5),
    torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64),
])
@pytest.mark.parametrize("engine", ["sequential", "vectorized"])
def test_criterion_weight_as_array(iris, weight, engine):
    X, y = iris
    clf = DeepEnsembleClassifier(n_estimators=2, engine=engine, criterion__weight=weight,
                                 **COMMON).fit(X, y)
    expected = np.array([1.0, 2.0, 0.5])
    for net in clf.estimators_:
        w = net.criterion_.weight
        assert w.dtype == torch.float32 and w.device.type == "cpu"
        np.testing.assert_array_equal(w.numpy(), expected)
        # The member's loss is the class-weighted mean NLL (weights by class of y).
        module = net.module_.eval()
        with torch.no_grad():
            logits = module(torch.as_tensor(X))
            loss = float(net.criterion_(logits, torch.as_tensor(y)))
        proba = torch.softmax(logits.double(), 1).numpy()
        assert loss == pytest.approx(log_loss(y, proba, sample_weight=expected[y]), rel=1e-5)


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("weight", [np.ones(2), np.ones(4), np.ones((3, 1))])
def test_criterion_weight_must_have_one_entry_per_class(iris, name, weight):
    X, y = iris
    with pytest.raises(ValueError, match="y has 3 classes but criterion__weight has shape"):
        _make(name, criterion__weight=weight).fit(X, y)


def test_criterion_weight_must_be_numbers(iris):
    X, y = iris
    with pytest.raises(ValueError, match="criterion__weight must be"):
        _make("deep_ensemble", criterion__weight=["a", "b", "c"]).fit(X, y)


# ------------------------------------------------------------------ image layout
@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 3, 16, 16)).astype(np.float32), np.arange(12) % 3


IMAGE_COMMON = dict(max_epochs=3, batch_size=8, random_state=0, device="cpu")


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_channels_last_images_are_explained(images, name):
    X, y = images
    cls, extra = ESTIMATORS[name]
    clf = cls(SmallCNN, module__input_size=16, **IMAGE_COMMON, **extra)
    with pytest.warns(UserWarning, match="channels-last"), pytest.raises(ValueError) as info:
        clf.fit(X.transpose(0, 2, 3, 1), y)
    message = str(info.value)
    assert "(16, 16, 3)" in message
    assert "Images must be (N, C, H, W)" in message
    assert "X.transpose(0, 3, 1, 2)" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_non_square_channels_last_images_are_explained(images):
    X, y = images
    nhwc = np.ascontiguousarray(X[:, :, :, :12].transpose(0, 2, 3, 1))  # (12, 16, 12, 3)
    with pytest.warns(UserWarning, match="channels-last"), pytest.raises(
        ValueError, match=r"\(16, 12, 3\).*X.transpose\(0, 3, 1, 2\)"
    ):
        DeepEnsembleClassifier(SmallCNN, **IMAGE_COMMON).fit(nhwc, y)
    # A network that accepts any spatial size still trains, but the layout is flagged.
    with pytest.warns(UserWarning, match=r"looks like channels-last"):
        DeepEnsembleClassifier(ResNet20v1, n_estimators=1, max_epochs=1, device="cpu",
                               random_state=0).fit(nhwc[:4], y[:4])


@pytest.mark.parametrize("channels", [1, 4])
def test_wrong_channel_count_names_what_the_module_expects(images, channels):
    X, y = images
    module = SmallCNN(num_classes=3, in_channels=3, input_size=16)
    clf = DeepEnsembleClassifier(module, n_estimators=2, **IMAGE_COMMON)
    with pytest.raises(ValueError, match=rf"expects inputs \(N, 3, 16, 16\) with 3 channels on "
                                         rf"axis 1, but X has {channels} there"):
        clf.fit(np.repeat(X[:, :1], channels, axis=1), y)


def test_flat_input_to_an_image_module_is_explained(images):
    X, y = images
    module = SmallCNN(num_classes=3, in_channels=3, input_size=16)
    with pytest.raises(ValueError, match=r"samples of shape \(768,\).*Conv2d"):
        DeepEnsembleClassifier(module, **IMAGE_COMMON).fit(X.reshape(len(X), -1), y)


def test_channels_first_images_still_train(images):
    X, y = images
    clf = DeepEnsembleClassifier(SmallCNN, n_estimators=1, module__input_size=16,
                                 **IMAGE_COMMON).fit(X, y)
    assert clf.predict_proba(X).shape == (12, 3)


# ------------------------------------------------------------------ devices
def _missing_devices():
    missing = [f"cuda:{torch.cuda.device_count()}"]
    if not torch.cuda.is_available():
        missing.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        missing.append("mps")
    return missing


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("device", _missing_devices())
def test_unavailable_device_lists_the_available_ones(iris, name, device):
    X, y = iris
    with pytest.raises(ValueError, match=rf"device='{device}'.*available devices: \['cpu'"):
        _make(name, device=device).fit(X, y)


# ------------------------------------------------------------------ names after a prefix
@pytest.mark.parametrize(
    ("key", "value", "closest"),
    [
        ("module__hiden_layer_sizes", (8,), "module__hidden_layer_sizes"),
        ("optimizer__weight_decy", 0.1, "optimizer__weight_decay"),
        ("criterion__wieght", None, "criterion__weight"),
    ],
)
def test_unknown_argument_after_a_routing_prefix_names_the_closest(iris, key, value, closest):
    X, y = iris
    clf = DeepEnsembleClassifier(
        n_estimators=1, max_epochs=1, random_state=0, criterion=nn.CrossEntropyLoss,
        **{key: value},
    )
    with pytest.raises(ValueError, match=f"Did you mean '{closest}'"):
        clf.fit(X, y)


def test_arguments_of_a_module_taking_kwargs_are_passed_through(iris):
    class Wide(nn.Module):
        def __init__(self, width=4, **kwargs):
            super().__init__()
            self.seen = kwargs
            self.net = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))

        def forward(self, x):
            return self.net(x)

    X, y = iris
    clf = DeepEnsembleClassifier(Wide, n_estimators=1, max_epochs=1, random_state=0,
                                 module__width=5, module__anything=1).fit(X, y)
    assert clf.estimators_[0].module_.seen == {"anything": 1}


# ------------------------------------------------------------------ shapes at prediction
def test_prediction_with_another_sample_shape_names_both_shapes(digits_images):
    X, y = digits_images
    clf = DeepEnsembleClassifier(SmallCNN, n_estimators=1, max_epochs=1, random_state=0).fit(X, y)
    for bad in (np.repeat(X[:4], 3, axis=1), X[:4].reshape(4, -1), X[:4, 0]):
        with pytest.raises(ValueError, match=r"fitted on samples of shape \(1, 8, 8\)"):
            clf.predict(bad)


def test_tabular_input_reshaped_to_images_at_prediction_names_both_shapes(iris):
    X, y = iris
    clf = DeepEnsembleClassifier(n_estimators=1, max_epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(4,\)"):
        clf.predict(X.reshape(-1, 2, 2))
    # Tabular input with another width keeps scikit-learn's own message.
    with pytest.raises(ValueError, match="X has 3 features"):
        clf.predict(X[:, :3])
