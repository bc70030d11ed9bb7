"""Reproduce the CIFAR experiments of Fort, Hu & Lakshminarayanan in one command.

"Deep Ensembles: A Loss Landscape Perspective" (arXiv:1912.02757). One run trains a set of
independent base runs with full trajectories and feeds every analysis from them:

1. weight-cosine and prediction-disagreement matrices within a trajectory and across runs;
2. t-SNE of three trajectories with random, dropout, diagonal- and low-rank-Gaussian
   samples around each run's end;
3. the diversity-accuracy plane of the subspace samplers (configuration B, per-sample
   random scales), the other runs as stars and both limit curves;
4. accuracy, Brier, NLL and ECE against ensemble size for Original, Weight Avg, Diag Gaus,
   PCA Gaus, Random and PCA Random and their ensembles across runs (configuration A, all
   k-subsets);
5. CIFAR-10-C: accuracy, Brier and JS diversity per corruption x severity for the
   independent runs, one trajectory's late checkpoints and each subspace method;
6. the plane through three independent solutions and a low-loss path between two of them,
   with disagreement along it;
7. a compute record (wall time per phase, member-images per second, peak memory, device,
   versions, precision).

Outputs in ``--out``: ``report.md`` (figures embedded, our numbers beside the paper's with
a tolerance band and pass/fail, the set-up differences), ``results.json``, PNG figures and
``cache/``: trained members and predictions, phase by phase, so that a killed run resumes
without redoing finished work.

``--preset quick`` (the default) runs everything on scikit-learn's digits as 8x8 images
with a scaled-down SmallCNN recipe in a few minutes on a CPU; ``--preset paper`` uses the
paper's settings (CIFAR-10 needs ``--data-home``; a GPU is advisable).

    python benchmarks/reproduce_paper.py                     # quick, on digits
    python benchmarks/reproduce_paper.py --preset paper --model mediumcnn \\
        --dataset cifar10 --data-home ~/ensemblekit_data --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import os
import pickle
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from sklearn.utils import Bunch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import ensemblekit  # noqa: E402
from ensemblekit import DeepEnsembleClassifier  # noqa: E402
from ensemblekit.datasets import (  # noqa: E402
    CORRUPTIONS,
    corrupt,
    load_cifar10,
    load_cifar10c,
    load_cifar100,
    load_digits_images,
    random_crop_flip,
)
from ensemblekit.engine import (  # noqa: E402
    GroupingError,
    predict_member_logits,
    stack_members,
)
from ensemblekit.metrics import (  # noqa: E402
    accuracy,
    brier_score,
    diversity_accuracy_limits,
    ensemble_size_curve,
    js_diversity,
    pairwise_disagreement,
    weight_cosine_similarity_matrix,
)
from ensemblekit.models import MediumCNN, ResNet20v1, SmallCNN  # noqa: E402
from ensemblekit.posteriors import (  # noqa: E402
    CheckpointCollector,
    diagonal_gaussian_samples,
    dropout_subspace_sample,
    flatten_parameters,
    pca_gaussian_samples,
    random_subspace_sample,
    sampled_networks,
    weight_average,
)

try:  # the loss-landscape functions (newer ensemblekit); small fallbacks otherwise
    from ensemblekit import landscape
except ImportError:  # pragma: no cover - depends on the installed version
    landscape = None

MODELS = ("smallcnn", "mediumcnn", "resnet20v1")
DATASETS = ("cifar10", "cifar100", "digits")
PRESETS = ("quick", "paper")
PRECISIONS = ("fp32", "bf16")
BATCHES = ("permutation", "with-replacement")
PHASES = ("base", "trajectory", "subspace", "plane", "shift", "landscape")

#: Configuration-A methods (ensemble experiment), in the paper's legend order.
METHODS_A = ("original", "weight_avg", "diag_gaus", "pca_gaus", "random", "pca_random")
#: Configuration-B samplers (diversity-accuracy plane).
METHODS_B = ("random", "dropout", "diag_gaus", "pca_gaus")
#: Samplers shown in the t-SNE panels.
METHODS_TSNE = ("random", "dropout", "diag_gaus", "pca_gaus")
LABELS = {
    "original": "Original", "weight_avg": "Weight Avg", "diag_gaus": "Diag Gaus",
    "pca_gaus": "PCA Gaus", "random": "Random", "pca_random": "PCA Random",
    "dropout": "Dropout", "trajectory": "Train trajectory", "independent": "Independent",
}

# ----------------------------------------------------------------------------- paper values
# Read off the paper's figures (about +-0.005 on accuracy/Brier/JS, +-0.03 on normalised
# diversity); see the reference extraction of the paper's set-up, section 4.
PAPER_MEDIUMCNN = {
    "accuracy": {1: [0.718, 0.688, 0.654, 0.623, 0.588, 0.536],
                 2: [0.748, 0.718, 0.686, 0.654, 0.617, 0.563],
                 5: [0.771, 0.742, 0.709, 0.676, 0.639, 0.582]},
    "brier": {1: [0.452, 0.502, 0.556, 0.608, 0.668, 0.757],
              2: [0.372, 0.416, 0.464, 0.511, 0.566, 0.648],
              5: [0.325, 0.364, 0.408, 0.453, 0.504, 0.583]},
    "js": {"independent": [0.274, 0.297, 0.319, 0.337, 0.354, 0.377],
           "trajectory": [0.091, 0.103, 0.114, 0.123, 0.132, 0.147],
           "random": [0.081, 0.093, 0.104, 0.111, 0.116, 0.123],
           "pca_gaus": [0.050, 0.057, 0.063, 0.068, 0.073, 0.080],
           "pca_random": [0.031, 0.036, 0.041, 0.044, 0.046, 0.049],
           "diag_gaus": [0.023, 0.026, 0.029, 0.031, 0.033, 0.036]},
}
#: Normalised diversity d/(1-a) of the independent optima and the baseline accuracy, read
#: off the diversity-accuracy figure (CIFAR-10).
PAPER_PLANE = {
    "smallcnn": {"baseline_accuracy": (0.70, 0.03), "normalized_diversity": (0.85, 1.03)},
    "mediumcnn": {"baseline_accuracy": (0.76, 0.03), "normalized_diversity": (0.83, 0.95)},
    "resnet20v1": {"baseline_accuracy": (0.89, 0.02), "normalized_diversity": (0.88, 1.03)},
}
#: The notebook's subspace scales (MediumCNN; configuration A: random s = 10 U(0, 1), PCA
#: c = 1; configuration B: random s = 70 U(0, 1), PCA c = 6) and the PCA rank they go with.
PAPER_SCALES = {"a_random_scale": 10.0, "b_random_scale": 70.0, "a_pca_scale": 1.0,
                "b_pca_scale": 6.0}
PAPER_RANK = 5
#: The accuracy cap's search for the configuration-A PCA scale runs over
#: [CAP_MIN_FRACTION * c_rule, c_rule] on a log scale.
CAP_MIN_FRACTION = 1e-3
#: The configuration-A samplers without a rejection step in the paper: their scale is
#: capped by validation accuracy in the quick preset (:func:`capped_pca_scale`).
CAPPED_METHODS = ("pca_gaus", "pca_random")
#: A method whose JS diversity is below this fraction of the independent runs' is reported
#: as near-deterministic: a claim won against it says little.
NEAR_DETERMINISTIC = 0.05


# ----------------------------------------------------------------------------- recipe
class PiecewiseSchedule:
    """Learning-rate multiplier that is ``factors[i]`` from epoch ``milestones[i]`` on.

    Before the first milestone the multiplier is 1. Picklable, so a fitted ensemble that
    holds it can be cached.

    Examples
    --------
    >>> s = PiecewiseSchedule((2, 4), (0.5, 0.25))
    >>> [s(e) for e in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, milestones: Sequence[int], factors: Sequence[float]) -> None:
        self.milestones = tuple(int(m) for m in milestones)
        self.factors = tuple(float(f) for f in factors)

    def __call__(self, epoch: int) -> float:
        value = 1.0
        for milestone, factor in zip(self.milestones, self.factors):
            if epoch >= milestone:
                value = factor
        return value

    def __repr__(self) -> str:
        return f"PiecewiseSchedule({self.milestones}, {self.factors})"


def halving(every: int, epochs: int) -> PiecewiseSchedule:
    """The notebook's schedule: the learning rate halves every ``every`` epochs."""
    milestones = list(range(every, epochs, every))
    return PiecewiseSchedule(milestones, [0.5 ** (i + 1) for i in range(len(milestones))])


@dataclass
class Recipe:
    """Every setting of one reproduction run (``--set FIELD=VALUE`` overrides any of them)."""

    model: str = "smallcnn"
    dataset: str = "digits"
    preset: str = "quick"
    # training of the base runs
    n_runs: int = 5
    n_trajectories: int = 3
    epochs: int = 16
    batch_size: int = 32
    lr: float = 3.2e-3
    lr_halving_every: int = 4           # 0: use lr_milestones / lr_factors
    lr_milestones: tuple = ()
    lr_factors: tuple = ()
    dropout: float = 0.1
    augment: bool = False
    inputs: str = "unit"                # raw255 | unit | unit_mean
    precision: str = "fp32"
    batches: str = "permutation"
    random_state: int = 0
    # data
    n_val: int = 150
    n_train: int = 0                    # 0: all remaining training images
    n_test: int = 0                     # 0: the whole test set
    late_epochs: int = 5                # checkpoints for Weight Avg and the Gaussians
    # configuration A (ensembles)
    a_samples: int = 30
    a_random_scale: float = 5.0
    a_threshold: float = 0.88
    a_max_tries: int = 5
    rank: int = 4
    a_gauss_scale: float = 1.0
    a_pca_scale: float = 0.05
    # accuracy cap on the configuration-A PCA scales (0 steps: the scale as set)
    a_cap_steps: int = 8
    a_cap_samples: int = 8
    # configuration B (diversity plane)
    b_samples: int = 50
    b_random_scale: float = 35.0
    b_dropout_p: float = 0.1
    b_diag_scale: float = 10.0
    b_pca_scale: float = 0.3
    # t-SNE
    tsne_samples: int = 10
    # dataset shift
    corruptions: tuple = tuple(CORRUPTIONS)
    shift_samples: int = 10
    # landscape
    landscape_images: int = 500
    plane_resolution: int = 15
    plane_margin: float = 0.2
    path_points: int = 17
    bezier_epochs: int = 4
    bezier_lr: float = 3.2e-3
    # evaluation
    predict_batch: int = 1000
    eval_chunk: int = 64

    def key(self) -> str:
        """Hash of every setting that changes results (the cache folder's name)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def make_recipe(model: str = "smallcnn", dataset: str = "digits", preset: str = "quick",
                **overrides: Any) -> Recipe:
    """The settings of ``preset`` for ``model`` on ``dataset``, with ``overrides`` applied.

    ``quick`` scales the SmallCNN recipe down to digits (8x8 images): batch 32, 16 epochs
    with the learning rate halved every 4, the last 5 epochs as late checkpoints, rank 4, a
    150-image validation split, and the random-subspace and PCA scales of
    :func:`scale_rule` (the paper's perturbation length relative to the weights' length),
    with the configuration-A PCA scales capped by validation accuracy
    (:func:`capped_pca_scale`). ``paper`` follows the released notebook (MediumCNN,
    SmallCNN) and the Keras example (ResNet20v1).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}.")
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}.")
    r = Recipe(model=model, dataset=dataset, preset=preset)
    if preset == "paper":
        r.batch_size, r.lr, r.n_val, r.a_samples, r.b_samples = 128, 1.6e-3, 500, 30, 50
        r.a_random_scale, r.a_threshold, r.b_random_scale = 10.0, 0.70, 70.0
        r.rank, r.late_epochs, r.inputs, r.dropout = 5, 10, "raw255", 0.1
        r.a_pca_scale, r.b_pca_scale = 1.0, 6.0
        r.a_cap_steps = 0  # the paper's PCA scales, uncapped
        r.epochs, r.lr_halving_every = 40, 10
        r.landscape_images, r.plane_resolution, r.path_points = 2000, 21, 25
        r.bezier_epochs, r.bezier_lr, r.predict_batch, r.eval_chunk = 10, 1.6e-3, 2000, 32
        if model == "smallcnn":
            # Two sources say 10 epochs; the late checkpoints are then the last 5.
            r.epochs, r.late_epochs, r.rank = 10, 5, 4
        if model == "resnet20v1":
            r.epochs, r.lr, r.dropout, r.augment, r.inputs = 200, 1e-3, 0.0, True, "unit_mean"
            r.lr_halving_every = 0
            r.lr_milestones, r.lr_factors = (80, 120, 160, 180), (1e-1, 1e-2, 1e-3, 5e-4)
            r.late_epochs, r.bezier_epochs, r.bezier_lr = 10, 20, 1e-3
    elif dataset != "digits":
        # A CPU-sized look at a CIFAR data set with the paper's recipe shape.
        r.batch_size, r.lr, r.n_val, r.inputs = 128, 1.6e-3, 500, "raw255"
        r.a_random_scale, r.a_threshold, r.b_random_scale = 10.0, 0.3, 70.0
        r.a_pca_scale, r.b_pca_scale, r.n_train, r.n_test = 1.0, 6.0, 5000, 1000
        r.epochs, r.lr_halving_every = 8, 4
        if model == "resnet20v1":
            r.lr, r.dropout, r.augment, r.inputs = 1e-3, 0.0, True, "unit_mean"
    if dataset == "digits" and model == "resnet20v1":
        r.dropout = 0.0
    for name, value in overrides.items():
        if not hasattr(r, name):
            raise ValueError(f"unknown recipe field {name!r}; valid: "
                             f"{', '.join(f.name for f in dataclasses.fields(Recipe))}.")
        setattr(r, name, value)
    check_recipe(r)
    if preset == "quick" and dataset == "digits":
        rule = scale_rule(r.model, r.rank)
        for name in PAPER_SCALES:
            if name not in overrides:
                setattr(r, name, rule[name])
    return r


def _init_norm(model: str, in_channels: int, input_size: int) -> tuple[float, int]:
    """L2 norm and size of ``model``'s flat parameter vector at initialisation (10 classes).

    Drawn with a fixed seed in a forked random state, so the global stream is untouched;
    with thousands of parameters the norm varies by about 1 % between seeds.
    """
    cls = {"smallcnn": SmallCNN, "mediumcnn": MediumCNN, "resnet20v1": ResNet20v1}[model]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        theta = flatten_parameters(cls(num_classes=10, in_channels=in_channels,
                                       input_size=input_size))
    return float(theta.norm()), int(theta.numel())


def scale_rule(model: str, rank: int) -> dict[str, Any]:
    """Subspace scales for ``model`` on 8x8 digits, from the paper's MediumCNN values.

    The random-subspace sample moves the weights by ``s`` along a unit direction and the
    PCA samplers by ``z`` along ``rank`` orthonormal directions (expected squared length
    ``c**2 * rank``): both perturbations have a set length in parameter space, whatever
    the number of parameters. The rule keeps the paper's length relative to the length of
    the weight vector, measured at initialisation (the trained MediumCNN's is not known):
    ``scale = paper_scale * ratio`` with ``ratio = |theta_0(model)| / |theta_0(MediumCNN)|``
    (MediumCNN on 32x32 RGB, 971,146 parameters), times ``sqrt(PAPER_RANK / rank)`` for
    the PCA scales; values rounded to three significant digits. The diagonal Gaussian's
    ``c`` multiplies the checkpoints' standard deviation and dropout's ``p`` is a
    probability, so both keep the paper's values. Paper values: :data:`PAPER_SCALES`
    (the set-up extraction, section 3.4).

    Parameters
    ----------
    model : {"smallcnn", "mediumcnn", "resnet20v1"}
        The network trained on the digits (1 channel, 8x8).
    rank : int
        The PCA rank used with it, at least 1.

    Returns
    -------
    rule : dict
        ``a_random_scale``, ``b_random_scale``, ``a_pca_scale``, ``b_pca_scale`` and the
        inputs of the rule: ``norm`` and ``paper_norm`` (L2 norms at initialisation),
        ``n_parameters`` and ``paper_n_parameters``, and ``ratio``.

    Examples
    --------
    >>> rule = scale_rule("smallcnn", 4)
    >>> rule["n_parameters"], rule["paper_n_parameters"]
    (14378, 971146)
    >>> abs(rule["a_random_scale"] - 10 * rule["ratio"]) < 0.01
    True
    """
    return dict(_scale_rule(model, int(rank)))


@functools.cache
def _scale_rule(model: str, rank: int) -> tuple[tuple[str, Any], ...]:
    norm, n_parameters = _init_norm(model, 1, 8)
    paper_norm, paper_n_parameters = _init_norm("mediumcnn", 3, 32)
    ratio = norm / paper_norm
    pca = ratio * math.sqrt(PAPER_RANK / rank)
    factor = {"a_random_scale": ratio, "b_random_scale": ratio, "a_pca_scale": pca,
              "b_pca_scale": pca}
    out: dict[str, Any] = {name: float(f"{PAPER_SCALES[name] * factor[name]:.3g}")
                           for name in PAPER_SCALES}
    out.update(norm=norm, paper_norm=paper_norm, ratio=ratio, n_parameters=n_parameters,
               paper_n_parameters=paper_n_parameters)
    return tuple(out.items())


def check_recipe(r: Recipe) -> None:
    """Raise a ValueError naming the first inconsistent setting."""
    for name in ("n_runs", "epochs", "batch_size", "a_samples", "b_samples", "late_epochs",
                 "rank", "shift_samples", "plane_resolution", "path_points", "n_val"):
        if int(getattr(r, name)) < 1:
            raise ValueError(f"{name} must be a positive integer, got {getattr(r, name)!r}.")
    if int(r.a_cap_steps) < 0:
        raise ValueError(f"a_cap_steps must be a non-negative integer (0: no accuracy cap), "
                         f"got {r.a_cap_steps!r}.")
    if int(r.a_cap_samples) < 1:
        raise ValueError(f"a_cap_samples must be a positive integer, got {r.a_cap_samples!r}.")
    if r.n_runs < 3:
        raise ValueError(f"n_runs (--seeds) must be at least 3 (the plane needs three "
                         f"solutions), got {r.n_runs}.")
    if not 1 <= r.n_trajectories <= r.n_runs:
        raise ValueError(f"n_trajectories must lie in [1, n_runs={r.n_runs}], got "
                         f"{r.n_trajectories}.")
    if r.late_epochs > r.epochs or r.late_epochs < 2:
        raise ValueError(f"late_epochs must lie in [2, epochs={r.epochs}], got "
                         f"{r.late_epochs}.")
    if r.rank >= min(r.late_epochs, r.a_samples, r.shift_samples):
        raise ValueError(f"rank={r.rank} must be below late_epochs={r.late_epochs}, "
                         f"a_samples={r.a_samples} and shift_samples={r.shift_samples} (the "
                         "PCA of n points has at most n - 1 directions).")
    if r.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {r.precision!r}.")
    if r.batches not in BATCHES:
        raise ValueError(f"batches must be one of {BATCHES}, got {r.batches!r}.")
    if r.inputs not in ("raw255", "unit", "unit_mean"):
        raise ValueError(f"inputs must be raw255, unit or unit_mean, got {r.inputs!r}.")
    unknown = sorted(set(r.corruptions) - set(CORRUPTIONS) - {"frost"})
    if unknown:
        raise ValueError(f"unknown corruptions {unknown}; valid: {', '.join(CORRUPTIONS)}.")


def schedule_of(r: Recipe) -> PiecewiseSchedule:
    if r.lr_halving_every:
        return halving(r.lr_halving_every, r.epochs)
    return PiecewiseSchedule(r.lr_milestones, r.lr_factors)


# ----------------------------------------------------------------------------- data
def _digits_to_rgb32(images: np.ndarray) -> np.ndarray:
    """Digits ``(N, 1, 8, 8)`` in [0, 1] as uint8 RGB ``(N, 3, 32, 32)`` for the corruptions."""
    grey = np.floor(images[:, 0] * 255).astype(np.uint8)
    big = np.repeat(np.repeat(grey, 4, axis=1), 4, axis=2)
    return np.repeat(big[:, None], 3, axis=1)


def _rgb32_to_digits(images: np.ndarray) -> np.ndarray:
    """Back to the network's input: 4x4 block means of the grey level, in [0, 1]."""
    grey = images.astype(np.float32).mean(axis=1) / 255.0
    n = len(grey)
    return grey.reshape(n, 8, 4, 8, 4).mean(axis=(2, 4))[:, None].astype(np.float32)


def load_data(r: Recipe, data_home: str | None) -> Bunch:
    """Train / validation / test split and the input transform of the recipe.

    The validation split is the last ``n_val`` training images (the notebook's 500 on
    CIFAR), never a resample of the training rows. ``to_input`` maps uint8 RGB images
    ``(N, 3, 32, 32)`` (clean or corrupted) to the network's float32 input.
    """
    if r.dataset == "digits":
        X, y = load_digits_images(return_X_y=True)
        n_test = 497
        X_tr, y_tr, X_te, y_te = X[:-n_test], y[:-n_test], X[-n_test:], y[-n_test:]
        test_uint8 = _digits_to_rgb32(X_te)
        to_input: Callable[[np.ndarray], np.ndarray] = _rgb32_to_digits
        n_classes = 10
    else:
        data = (load_cifar10 if r.dataset == "cifar10" else load_cifar100)(data_home)
        X_tr_u, y_tr, test_uint8, y_te = data.X_train, data.y_train, data.X_test, data.y_test
        n_classes = int(y_tr.max()) + 1
        mean = (X_tr_u[:-r.n_val].astype(np.float32) / 255).mean(axis=0)

        def to_input(images: np.ndarray) -> np.ndarray:
            x = images.astype(np.float32)
            if r.inputs == "raw255":
                return x
            x /= 255.0
            return x - mean if r.inputs == "unit_mean" else x

        X_tr, X_te = to_input(X_tr_u), to_input(test_uint8)
    if r.n_test:
        X_te, y_te, test_uint8 = X_te[:r.n_test], y_te[:r.n_test], test_uint8[:r.n_test]
    X_val, y_val = X_tr[-r.n_val:], y_tr[-r.n_val:]
    X_fit, y_fit = X_tr[:-r.n_val], y_tr[:-r.n_val]
    if r.n_train:
        X_fit, y_fit = X_fit[:r.n_train], y_fit[:r.n_train]
    return Bunch(X_train=np.ascontiguousarray(X_fit), y_train=y_fit,
                 X_val=np.ascontiguousarray(X_val), y_val=y_val,
                 X_test=np.ascontiguousarray(X_te), y_test=y_te, test_uint8=test_uint8,
                 to_input=to_input, n_classes=n_classes)


# ----------------------------------------------------------------------------- cache
class Cache:
    """Results of finished phases on disk, written atomically.

    A phase's file appears only once the phase is complete (written to a temporary file
    and renamed), so a run killed at any point resumes at the first unfinished phase.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.pkl"

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    def load(self, name: str) -> Any:
        return pickle.loads(self.path(name).read_bytes())

    def save(self, name: str, value: Any) -> None:
        target = self.path(name)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, target)


# ----------------------------------------------------------------------------- evaluation
def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, float32.

    Examples
    --------
    >>> softmax(np.array([[0.0, np.log(3.0)]])).round(3).tolist()
    [[0.25, 0.75]]
    """
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z.astype(np.float32)


def module_proba(modules: Sequence[torch.nn.Module], X: np.ndarray, r: Recipe) -> np.ndarray:
    """Softmax outputs ``(n_modules, N, C)``, evaluated in grouped passes."""
    return softmax(predict_member_logits(list(modules), X, r.predict_batch,
                                         max_members_per_pass=r.eval_chunk))


class GroupedEvaluator:
    """Fixed networks evaluated together on many inputs: grouped once, reused per call."""

    def __init__(self, modules: Sequence[torch.nn.Module], sample_shape: Sequence[int],
                 r: Recipe) -> None:
        self.r = r
        self.groups: list[tuple[list[torch.nn.Module], Any]] = []
        modules = list(modules)
        for start in range(0, len(modules), r.eval_chunk):
            group = modules[start:start + r.eval_chunk]
            try:
                grouped, _ = stack_members(group, sample_shape, allow_vmap=False,
                                           channels_last=len(sample_shape) == 3)
                grouped.eval()
            except GroupingError:
                grouped = None
            for mod in group:
                mod.eval()
            self.groups.append((group, grouped))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        out = []
        for group, grouped in self.groups:
            if grouped is None or len(group) < 2:
                out.append(module_proba(group, X, self.r))
                continue
            device = next(grouped.parameters()).device
            parts = []
            with torch.inference_mode():
                for start in range(0, len(X), self.r.predict_batch):
                    xb = torch.as_tensor(X[start:start + self.r.predict_batch], device=device)
                    logits = grouped(xb.unsqueeze(0).expand(len(group), *xb.shape))
                    parts.append(logits.float().cpu().numpy())
            out.append(softmax(np.concatenate(parts, axis=1)))
        return np.concatenate(out, axis=0)


def theta_proba(template: torch.nn.Module, thetas: torch.Tensor | np.ndarray,
                X: np.ndarray, X_refresh: np.ndarray, r: Recipe) -> np.ndarray:
    """Softmax outputs ``(n_vectors, N, C)`` of ``template`` holding each parameter vector.

    BatchNorm statistics of every vector are recomputed on ``X_refresh``; vectors are
    turned into networks ``eval_chunk`` at a time to bound memory.
    """
    if isinstance(thetas, np.ndarray):
        thetas = torch.from_numpy(np.array(thetas, dtype=np.float32))
    out = []
    for start in range(0, len(thetas), r.eval_chunk):
        nets = sampled_networks(template, thetas[start:start + r.eval_chunk], X_refresh,
                                r.predict_batch)
        out.append(module_proba(nets, X, r))
        del nets
    return np.concatenate(out, axis=0)


def top1_accuracy(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Accuracy of each row of ``proba`` ``(..., N, C)``."""
    return (proba.argmax(axis=-1) == y).mean(axis=-1)


def brier_rows(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Multi-class Brier score (sum over classes, mean over points) of each row."""
    onehot = np.eye(proba.shape[-1], dtype=np.float32)[y]
    return ((proba - onehot) ** 2).sum(axis=-1).mean(axis=-1)


def js(member_proba: np.ndarray) -> float:
    """The notebook's Jensen-Shannon diversity (natural log, eps = 1e-5 in the log)."""
    return float(js_diversity(member_proba, eps=1e-5))


def size_curves(member: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Accuracy, Brier, NLL and ECE of ensembles of every size (mean over all k-subsets)."""
    sizes = list(range(1, len(member) + 1))
    out: dict[str, list[float]] = {}
    for key, metric in (("accuracy", "accuracy"), ("brier", "brier_score"),
                        ("nll", "negative_log_likelihood"),
                        ("ece", "expected_calibration_error")):
        curve = ensemble_size_curve(member, y, metric, sizes=sizes, max_subsets=1000,
                                    random_state=0)
        out[key] = [float(v) for v in curve.mean]
        out[key + "_std"] = [float(v) for v in curve.std]
    return out


# ----------------------------------------------------------------------------- phase: base
def build_estimator(r: Recipe, n_train: int, device: str, checkpoints: str) -> Any:
    model = {"smallcnn": SmallCNN, "mediumcnn": MediumCNN, "resnet20v1": ResNet20v1}[r.model]
    kwargs: dict[str, Any] = dict(
        n_estimators=r.n_runs, max_epochs=r.epochs, lr=r.lr, batch_size=r.batch_size,
        lr_schedule=schedule_of(r), module__dropout=r.dropout, precision=r.precision,
        device=device, random_state=r.random_state, verbose=1,
        predict_batch_size=r.predict_batch,
    )
    if r.augment:
        kwargs["augment"] = random_crop_flip
    if r.batches == "with-replacement":
        kwargs["batches"] = "with_replacement"
    if checkpoints == "estimator":
        kwargs["checkpoint_epochs"] = "all"
    else:
        # Without trajectory support in the estimator, each member records its own
        # checkpoints through a skorch callback (which trains members one after another).
        kwargs["callbacks"] = [("trajectory", CheckpointCollector(0))]
    return DeepEnsembleClassifier(model, **kwargs)


def _estimator_supports(name: str) -> bool:
    return name in DeepEnsembleClassifier().get_params()


def fit_base(r: Recipe, data: Bunch, device: str) -> dict[str, Any]:
    """Train the independent runs together, recording every epoch's weights."""
    mode = "estimator" if _estimator_supports("checkpoint_epochs") else "callback"
    if r.batches == "with-replacement" and not _estimator_supports("batches"):
        raise ValueError("--batches with-replacement needs an ensemblekit whose "
                         "DeepEnsembleClassifier accepts batches='with_replacement'.")
    clf = build_estimator(r, len(data.X_train), device, mode)
    start = time.perf_counter()
    clf.fit(data.X_train, data.y_train)
    if str(getattr(clf, "device_", "cpu")).startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if mode == "estimator":
        trajectories = np.asarray(clf.checkpoints_, dtype=np.float32)
        buffers = np.asarray(clf.checkpoint_buffers_, dtype=np.float32)
        # Kept beside the pickle (they can be large) and attached again when loaded.
        for name in ("checkpoints_", "checkpoint_buffers_"):
            delattr(clf, name)
    else:
        trajectories = np.stack([
            torch.stack(dict(net.callbacks_)["trajectory"].checkpoints).numpy()
            for net in clf.estimators_
        ]).astype(np.float32)
        buffers = np.zeros((*trajectories.shape[:2], 0), np.float32)
        for net in clf.estimators_:
            dict(net.callbacks_)["trajectory"].checkpoints = []
    return {"estimator": clf, "trajectories": trajectories, "buffers": buffers,
            "seconds": seconds,
            "checkpoint_mode": mode, "engine": getattr(clf, "engine_", "?"),
            "engine_reason": getattr(clf, "engine_reason_", "?"),
            "member_images_per_second": r.n_runs * r.epochs * len(data.X_train) / seconds}


# ----------------------------------------------------------------------------- helpers
def _template(base: dict) -> torch.nn.Module:
    return base["estimator"].estimators_[0].module_


def _refresh_rows(data: Bunch, n: int = 1024) -> np.ndarray:
    return data.X_train[:n]


def _generator(r: Recipe, *keys: int) -> torch.Generator:
    seed = int(np.random.SeedSequence([r.random_state, 7919, *keys]).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


def late(base: dict, r: Recipe, run: int) -> torch.Tensor:
    """The late checkpoints of ``run`` (the notebook's epochs 30-39)."""
    return torch.from_numpy(np.array(base["trajectories"][run, -r.late_epochs:]))


def final_theta(base: dict, run: int) -> torch.Tensor:
    return flatten_parameters(base["estimator"].estimators_[run].module_).float().cpu()


# ----------------------------------------------------------------------------- phase: trajectory
def run_trajectory(r: Recipe, data: Bunch, base: dict) -> dict[str, Any]:
    """Softmax outputs of every checkpoint; cosine and disagreement matrices (section 3.1-3.2)."""
    clf, traj = base["estimator"], base["trajectories"]
    template, refresh = _template(base), _refresh_rows(data)
    M, T = traj.shape[0], r.n_trajectories
    if landscape is not None and base["checkpoint_mode"] == "estimator":
        # Each checkpoint with the BatchNorm statistics recorded with it.
        val = landscape.checkpoint_proba(clf, data.X_val).astype(np.float32)
        test_late = landscape.checkpoint_proba(clf, data.X_test)[:, -r.late_epochs:]
    else:
        val = np.stack([theta_proba(template, traj[m], data.X_val, refresh, r)
                        for m in tqdm(range(M), desc="trajectory checkpoints", leave=False)])
        test_late = np.stack([theta_proba(template, traj[m, -r.late_epochs:], data.X_test,
                                          refresh, r) for m in range(M)])
    test_final = clf.predict_member_proba(data.X_test).astype(np.float32)
    val_final = clf.predict_member_proba(data.X_val).astype(np.float32)
    finals = np.stack([final_theta(base, m).numpy() for m in range(M)])
    weights = np.asarray(traj[:T])
    if landscape is not None:
        trajectories = landscape.similarity_matrices(weights, val[:T])
        across = landscape.similarity_matrices(finals[:, None], val_final[:, None])
        all_cos, all_dis = trajectories.cosine, trajectories.disagreement
        across_cos, across_dis = across.cosine, across.disagreement
    else:
        all_cos = weight_cosine_similarity_matrix(weights.reshape(-1, weights.shape[-1]))
        all_dis = pairwise_disagreement(val[:T].reshape(-1, *val.shape[2:]))
        across_cos = weight_cosine_similarity_matrix(finals)
        across_dis = pairwise_disagreement(val_final)
    K = traj.shape[1]
    blocks = [slice(t * K, (t + 1) * K) for t in range(T)]
    return {
        "val_proba": val, "test_final": test_final, "val_final": val_final,
        "test_late": np.asarray(test_late, dtype=np.float32),
        "within_cosine": np.stack([all_cos[b, b] for b in blocks]),
        "within_disagreement": np.stack([all_dis[b, b] for b in blocks]),
        "across_cosine": across_cos, "across_disagreement": across_dis,
        "across_disagreement_test": pairwise_disagreement(test_final),
        "all_cosine": all_cos, "all_disagreement": all_dis,
    }


# ----------------------------------------------------------------------------- samplers
def random_samples_with_rejection(template: torch.nn.Module, theta: torch.Tensor, n: int,
                                  scale: float, threshold: float, max_tries: int,
                                  data: Bunch, gen: torch.Generator, r: Recipe
                                  ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Random-subspace draws accepted on the fixed validation split (configuration A).

    Each sample is redrawn while its validation accuracy is below ``threshold``, up to
    ``max_tries`` draws; the last draw is kept when all fail. All pending samples are
    drawn and judged together, one grouped evaluation per round.
    """
    samples = torch.stack([random_subspace_sample(theta, scale, gen) for _ in range(n)])
    tries = np.ones(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    refresh = _refresh_rows(data)
    pending = np.arange(n)
    for attempt in range(1, max_tries + 1):
        if attempt > 1:
            for i in pending:
                samples[i] = random_subspace_sample(theta, scale, gen)
                tries[i] = attempt
        acc = top1_accuracy(theta_proba(template, samples[pending], data.X_val, refresh, r),
                            data.y_val)
        ok[pending] = acc >= threshold
        pending = pending[~ok[pending]]
        if not len(pending):
            break
    return samples, tries, ok


def capped_pca_scale(template: torch.nn.Module, points: torch.Tensor, r: Recipe,
                     data: Bunch, gen: torch.Generator) -> tuple[float, dict[str, Any]]:
    """The configuration-A PCA scale, capped by the samples' validation accuracy.

    ``c = min(c_rule, c*)`` with ``c_rule = r.a_pca_scale`` and ``c*`` the largest ``c``
    on a geometric grid over ``[CAP_MIN_FRACTION * c_rule, c_rule]`` whose samples' mean
    accuracy on the fixed validation split is at least ``r.a_threshold``: the bar the
    paper (notebook, ``acc_threshold``) puts on each random-subspace sample, applied to
    the PCA samplers, which have no rejection step. ``r.a_cap_samples`` directions
    ``z ~ N(0, I_rank)`` are drawn once from ``gen`` and scaled by every tried ``c``
    (common random numbers); ``c_rule`` is tried first, then the lower end, then
    ``r.a_cap_steps`` bisection steps on ``log c``; each try is one grouped evaluation.

    Parameters
    ----------
    template : torch.nn.Module
        A network of the run's architecture.
    points : torch.Tensor of shape (n_points, n_parameters)
        The points the PCA is fitted to (late checkpoints, or accepted random samples).
    r : Recipe
        Gives ``a_pca_scale``, ``a_threshold``, ``rank``, ``a_cap_steps``, ``a_cap_samples``.
    data : Bunch
        Gives the validation split ``X_val``, ``y_val``.
    gen : torch.Generator
        Source of the directions (the run's own stream).

    Returns
    -------
    scale : float
        The chosen ``c``: ``c_rule`` when its samples meet the bar; otherwise the largest
        grid value that met it, or the lower end when even that one did not.
    info : dict
        ``rule_scale``, ``scale``, ``met`` (whether the samples at ``scale`` met the bar),
        ``trace`` (every tried ``[c, mean validation accuracy]``).
    """
    rule = float(r.a_pca_scale)
    bar = float(r.a_threshold)
    refresh = _refresh_rows(data)
    mean = points.double().mean(dim=0)
    offsets = pca_gaussian_samples(points, r.rank, r.a_cap_samples, 1.0, gen).double() - mean
    trace: list[list[float]] = []

    def meets(c: float) -> bool:
        thetas = (mean + c * offsets).float()
        acc = float(top1_accuracy(theta_proba(template, thetas, data.X_val, refresh, r),
                                  data.y_val).mean())
        trace.append([c, acc])
        return acc >= bar

    if rule <= 0 or meets(rule):
        return rule, {"rule_scale": rule, "scale": rule, "met": True, "trace": trace}
    lo, hi = rule * CAP_MIN_FRACTION, rule
    met = meets(lo)
    if met:
        for _ in range(int(r.a_cap_steps)):
            mid = math.sqrt(lo * hi)
            if meets(mid):
                lo = mid
            else:
                hi = mid
    return lo, {"rule_scale": rule, "scale": lo, "met": met, "trace": trace}


def subspace_thetas(method: str, r: Recipe, base: dict, data: Bunch, run: int, n: int,
                    config: str, gen: torch.Generator,
                    randoms: torch.Tensor | None = None,
                    scale: float | None = None) -> tuple[torch.Tensor, dict]:
    """``n`` parameter vectors of ``method`` around ``run`` (configuration ``"A"`` or ``"B"``).

    ``"pca_random"`` is fitted to ``randoms``, the run's accepted random-subspace samples,
    when given (they are drawn first otherwise). In configuration A the PCA samplers use
    ``scale`` when given, else ``r.a_pca_scale`` capped by :func:`capped_pca_scale` when
    ``r.a_cap_steps`` is positive (from the run's own stream ``_generator(r, 5, run, i)``,
    ``i`` the method's index in :data:`METHODS_A`); ``info["scale"]`` is the ``c`` used.
    """
    template = _template(base)
    theta = final_theta(base, run)
    points = late(base, r, run)
    info: dict[str, Any] = {}
    if method == "original":
        return theta[None], info
    if method == "weight_avg":
        return weight_average(points)[None], info
    if method == "random":
        if config == "B":
            return torch.stack([random_subspace_sample(theta, r.b_random_scale, gen)
                                for _ in range(n)]), info
        thetas, tries, ok = random_samples_with_rejection(
            template, theta, n, r.a_random_scale, r.a_threshold, r.a_max_tries, data, gen, r)
        info.update(tries=tries.tolist(), accepted=ok.tolist())
        return thetas, info
    if method == "pca_random":
        if randoms is None:
            randoms, tries, ok = random_samples_with_rejection(
                template, theta, r.a_samples, r.a_random_scale, r.a_threshold,
                r.a_max_tries, data, gen, r)
            info.update(tries=tries.tolist(), accepted=ok.tolist())
        c = _a_pca_scale(method, r, template, randoms, data, run, scale, info)
        return pca_gaussian_samples(randoms, r.rank, n, c, gen), info
    if method == "dropout":
        max_p = r.b_dropout_p
        return torch.stack([dropout_subspace_sample(theta, max_p, gen) for _ in range(n)]), info
    if method == "diag_gaus":
        if config == "A":
            return diagonal_gaussian_samples(points, n, r.a_gauss_scale, gen), info
        # Configuration B: c = b_diag_scale * U(0, 1), drawn per sample.
        draws = diagonal_gaussian_samples(points, n, 1.0, gen)
        mu = points.mean(dim=0)
        c = r.b_diag_scale * torch.rand(n, 1, generator=gen)
        return mu + c * (draws - mu), info
    if method == "pca_gaus":
        if config == "A":
            c = _a_pca_scale(method, r, template, points, data, run, scale, info)
        else:
            c = r.b_pca_scale
        return pca_gaussian_samples(points, r.rank, n, c, gen), info
    raise ValueError(f"unknown method {method!r}")


def _a_pca_scale(method: str, r: Recipe, template: torch.nn.Module, points: torch.Tensor,
                 data: Bunch, run: int, scale: float | None, info: dict) -> float:
    """Configuration A's PCA scale for ``method`` around ``run``; recorded in ``info``."""
    if scale is None and r.a_cap_steps > 0:
        scale, cap = capped_pca_scale(template, points, r, data,
                                      _generator(r, 5, run, METHODS_A.index(method)))
        info["cap"] = cap
    info["scale"] = float(r.a_pca_scale if scale is None else scale)
    return info["scale"]


# ----------------------------------------------------------------------------- phase: subspace (A)
def run_subspace(r: Recipe, data: Bunch, base: dict, traj: dict) -> dict[str, Any]:
    """Configuration A around every run, and the t-SNE samples around the trajectories."""
    template, refresh = _template(base), _refresh_rows(data)
    M = r.n_runs
    mean_test = {m: np.zeros((M, len(data.y_test), data.n_classes), np.float32)
                 for m in METHODS_A}
    # Accuracy and Brier of a single-mode ensemble of the first k samples, per run.
    by_k = {m: {"accuracy": np.zeros((M, M)), "brier": np.zeros((M, M))} for m in METHODS_A}
    sample_acc, sample_js, info = {}, {}, {}
    tsne_val: dict[str, list[np.ndarray]] = {m: [] for m in METHODS_TSNE}
    jobs = [(run, method) for run in range(M) for method in METHODS_A]
    randoms: dict[int, torch.Tensor] = {}
    for run, method in tqdm(jobs, desc="subspace samples (configuration A)"):
        gen = _generator(r, 1, run, METHODS_A.index(method))
        n = 1 if method in ("original", "weight_avg") else r.a_samples
        thetas, extra = subspace_thetas(method, r, base, data, run, n, "A", gen,
                                        randoms=randoms.get(run))
        if method == "random":
            randoms[run] = thetas  # the PCA of "PCA Random" is fitted to these
        if method == "pca_random":
            extra = {**info["random"][run], **extra}
        if method == "original":
            proba = traj["test_final"][run][None]
        else:
            proba = theta_proba(template, thetas, data.X_test, refresh, r)
        mean_test[method][run] = proba.mean(axis=0)
        for k in range(1, M + 1):
            ens = proba[: min(k, len(proba))].mean(axis=0)
            by_k[method]["accuracy"][run, k - 1] = float(accuracy(data.y_test, ens))
            by_k[method]["brier"][run, k - 1] = float(brier_score(data.y_test, ens))
        sample_acc.setdefault(method, []).append(top1_accuracy(proba, data.y_test).tolist())
        if len(proba) > 1:
            sample_js.setdefault(method, []).append(js(proba))
        info.setdefault(method, []).append(extra)
        if run < r.n_trajectories and method in METHODS_TSNE:
            tsne_val[method].append(theta_proba(template, thetas[: r.tsne_samples],
                                                data.X_val, refresh, r))
    for run in range(r.n_trajectories):
        gen = _generator(r, 2, run)
        thetas, _ = subspace_thetas("dropout", r, base, data, run, r.tsne_samples, "B", gen)
        tsne_val["dropout"].append(theta_proba(template, thetas, data.X_val, refresh, r))
    curves = {m: size_curves(mean_test[m], data.y_test) for m in METHODS_A}
    return {
        "curves": curves,
        "by_k": {m: {k: v.tolist() for k, v in d.items()} for m, d in by_k.items()},
        "sample_accuracy": sample_acc, "sample_js": sample_js, "info": info,
        "tsne_val": {m: np.stack(v) for m, v in tsne_val.items()},
    }


# ----------------------------------------------------------------------------- phase: plane (B)
def run_plane(r: Recipe, data: Bunch, base: dict, traj: dict) -> dict[str, Any]:
    """Diversity-accuracy plane around run 0 (configuration B), on the test set."""
    template, refresh = _template(base), _refresh_rows(data)
    y = data.y_test
    ref = traj["test_final"][0].argmax(axis=1)
    ref_acc = float((ref == y).mean())

    def point(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        acc = top1_accuracy(proba, y)
        dis = (proba.argmax(axis=-1) != ref).mean(axis=-1)
        return acc, dis / np.maximum(1 - acc, 1e-12)

    out: dict[str, Any] = {"reference_accuracy": ref_acc, "n_classes": data.n_classes,
                           "methods": {}}
    for method in tqdm(METHODS_B, desc="diversity plane (configuration B)"):
        gen = _generator(r, 3, METHODS_B.index(method))
        thetas, _ = subspace_thetas(method, r, base, data, 0, r.b_samples, "B", gen)
        acc, nd = point(theta_proba(template, thetas, data.X_test, refresh, r))
        out["methods"][method] = {"accuracy": acc.tolist(), "normalized_diversity": nd.tolist()}
    acc, nd = point(traj["test_final"][1:])
    out["runs"] = {"accuracy": acc.tolist(), "normalized_diversity": nd.tolist()}
    out["limits"] = {"accuracy": [], "lower": [], "upper": []}
    if ref_acc > 1.0 / data.n_classes:  # the curves need a baseline better than chance
        grid = np.linspace(1.0 / data.n_classes, ref_acc, 60)
        lower, upper = diversity_accuracy_limits(grid, ref_acc, data.n_classes)
        out["limits"] = {"accuracy": grid.tolist(), "lower": np.asarray(lower).tolist(),
                         "upper": np.asarray(upper).tolist()}
    return out


# ----------------------------------------------------------------------------- phase: shift
def _corrupt_job(args: tuple[np.ndarray, str, int, int]) -> np.ndarray:
    images, name, severity, seed = args
    return corrupt(images, name, severity, random_state=seed)


def shifted_sets(r: Recipe, data: Bunch, cifar10c: str | None, names: Sequence[str],
                 workers: int) -> Iterable[tuple[str, int, np.ndarray, np.ndarray]]:
    """Yield ``(corruption, severity, inputs, labels)`` for every pair, on the same
    test images as the clean rows (the whole test set unless ``n_test`` says otherwise)."""
    n = len(data.y_test)
    if cifar10c:
        for name in names:
            for sev in range(1, 6):
                images, labels = load_cifar10c(cifar10c, name, sev)
                yield name, sev, data.to_input(images[:n]), labels[:n]
        return
    jobs = [(data.test_uint8, name, sev, r.random_state * 1000 + 100 * i + sev)
            for i, name in enumerate(names) for sev in range(1, 6)]
    if workers > 1 and n > 2000:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for (_, name, sev, _), out in zip(jobs, pool.map(_corrupt_job, jobs)):
                yield name, sev, data.to_input(out), data.y_test
    else:
        for job in jobs:
            yield job[1], job[2], data.to_input(_corrupt_job(job)), data.y_test


def shift_metrics(groups: dict[str, np.ndarray], y: np.ndarray, M: int) -> dict[str, Any]:
    """Accuracy, Brier and JS of every group of member outputs on one (shifted) set."""
    ind = groups["independent"]
    out: dict[str, Any] = {}
    sizes = sorted({1, 2, M})
    for key, metric in (("accuracy", "accuracy"), ("brier", "brier_score")):
        curve = ensemble_size_curve(ind, y, metric, sizes=sizes, max_subsets=1000,
                                    random_state=0)
        out[key] = {int(k): float(v) for k, v in zip(curve.sizes, curve.mean)}
    out["js"] = {"independent": js(ind)}
    out["single_mode"] = {}
    for name, member in groups.items():
        if name == "independent":
            continue
        mean = member.mean(axis=0)
        if len(member) > 1:
            out["js"][name] = js(member)
        out["single_mode"][name] = {"accuracy": float(accuracy(y, mean)),
                                    "brier": float(brier_score(y, mean))}
    return out


def run_shift(r: Recipe, data: Bunch, base: dict, cache: Cache, cifar10c: str | None,
              workers: int, a_scales: dict[str, float] | None = None) -> dict[str, Any]:
    """CIFAR-10-C analysis around run 0; finished corruptions are cached one by one.

    ``a_scales`` holds the configuration-A PCA scales chosen around run 0 by the subspace
    phase (capped ones are searched again otherwise).
    """
    a_scales = a_scales or {}
    template, refresh = _template(base), _refresh_rows(data)
    modules = {"independent": [net.module_ for net in base["estimator"].estimators_]}
    thetas = {"trajectory": late(base, r, 0)}
    for i, method in enumerate(("weight_avg", "diag_gaus", "pca_gaus", "random",
                                "pca_random")):
        n = 1 if method == "weight_avg" else r.shift_samples
        thetas[method], _ = subspace_thetas(method, r, base, data, 0, n, "A",
                                            _generator(r, 4, i), randoms=thetas.get("random"),
                                            scale=a_scales.get(method))
    nets = {name: sampled_networks(template, t, refresh, r.predict_batch)
            for name, t in thetas.items()}
    modules.update(nets)
    order = list(modules)
    flat = [mod for name in order for mod in modules[name]]
    bounds = np.cumsum([0] + [len(modules[name]) for name in order])

    evaluator = GroupedEvaluator(flat, data.X_test.shape[1:], r)

    def evaluate(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        proba = evaluator(X)
        groups = {name: proba[bounds[i]:bounds[i + 1]] for i, name in enumerate(order)}
        return shift_metrics(groups, y, r.n_runs)

    names = list(r.corruptions)
    if cifar10c and tuple(names) == tuple(CORRUPTIONS):
        names.append("frost")  # the published arrays hold all 19
    elif not cifar10c and "frost" in names:
        names.remove("frost")
    results: dict[str, Any] = {"clean": evaluate(data.X_test, data.y_test), "rows": {}}
    done = {}
    partial = f"shift_partial_{'c10c' if cifar10c else 'gen'}"
    if cache.has(partial):
        done = cache.load(partial)
    todo = [n for n in names if n not in done]
    bar = tqdm(total=5 * len(todo), desc="corruptions x severities")
    current: dict[int, Any] = {}
    for name, sev, X, y in shifted_sets(r, data, cifar10c, todo, workers):
        current[sev] = evaluate(X, y)
        bar.update(1)
        if sev == 5:
            done[name] = current
            current = {}
            cache.save(partial, done)
    bar.close()
    results["rows"] = {name: done[name] for name in names}
    results["corruptions"] = names
    results["source"] = cifar10c or "generated with ensemblekit.datasets.corrupt"
    return results


# ----------------------------------------------------------------------------- phase: landscape
def run_landscape(r: Recipe, data: Bunch, base: dict) -> dict[str, Any]:
    """Plane through runs 0-2 and linear and low-loss (Bezier) paths between runs 0 and 1.

    Evaluated on the first ``landscape_images`` test images; BatchNorm statistics (if any)
    of every point are recomputed on training rows; the Bezier bend is trained on the
    training rows.
    """
    if landscape is None:
        return {"skipped": "ensemblekit.landscape is not available in this version"}
    clf = base["estimator"]
    n = min(r.landscape_images, len(data.y_test))
    X, y = data.X_test[:n], data.y_test[:n]
    refresh = _refresh_rows(data)
    small = ("origin", "basis", "bend")  # weight vectors: large, not needed for the report
    plane = landscape.plane(clf, X, y, members=(0, 1, 2), resolution=r.plane_resolution,
                            margin=r.plane_margin, X_train=refresh)
    linear = landscape.linear_path(clf, X, y, 0, 1, n_points=r.path_points, X_train=refresh)
    bezier = landscape.bezier_path(
        clf, X, y, 0, 1, n_points=r.path_points, X_train=data.X_train, y_train=data.y_train,
        max_epochs=r.bezier_epochs, lr=r.bezier_lr, batch_size=r.batch_size,
        random_state=r.random_state)
    return {"images": n,
            **{name: {k: np.asarray(v) for k, v in dict(result).items() if k not in small}
               for name, result in (("plane", plane), ("linear", linear), ("bezier", bezier))}}


# ----------------------------------------------------------------------------- the run
def _run_phase(name: str, cache: Cache, compute: Callable[[], dict], log: Callable[[str], None],
               record: dict[str, Any]) -> dict:
    if cache.has(name):
        value = cache.load(name)
        record[name] = {"seconds": value.get("_seconds"),
                        "cpu_seconds": value.get("_cpu_seconds"), "status": "loaded from cache"}
        log(f"[{name}] loaded from cache ({cache.path(name).name})")
        return value
    log(f"[{name}] running")
    start, cpu = time.perf_counter(), time.process_time()
    value = compute()
    value["_seconds"] = time.perf_counter() - start
    value["_cpu_seconds"] = time.process_time() - cpu
    cache.save(name, value)
    record[name] = {"seconds": value["_seconds"], "cpu_seconds": value["_cpu_seconds"],
                    "status": "computed"}
    log(f"[{name}] done in {value['_seconds']:.1f} s")
    return value


def reproduce(recipe: Recipe, out: str | os.PathLike[str], *, data_home: str | None = None,
              device: str = "auto", cifar10c: str | None = None, stop_after: str | None = None,
              workers: int | None = None, log: Callable[[str], None] = print
              ) -> dict[str, Any] | None:
    """Run (or resume) every phase of the reproduction and write the report.

    Parameters
    ----------
    recipe : Recipe
        The settings, from :func:`make_recipe`.
    out : path
        Output folder: ``report.md``, ``results.json``, ``*.png`` and ``cache/``.
    data_home : str, optional
        Folder holding ``cifar-10-batches-py/`` (CIFAR presets).
    device : str, default="auto"
        Torch device of the base runs.
    cifar10c : str, optional
        Folder of the published CIFAR-10-C arrays; generated corruptions otherwise.
    stop_after : str, optional
        End the run after this phase (its results cached), as if it had been killed.
    workers : int, optional
        Processes generating corruptions of large test sets.
    log : callable, default=print
        Receives one line per phase.

    Returns
    -------
    results : dict or None
        Everything written to ``results.json``; None when stopped early.
    """
    started = time.perf_counter()
    out = Path(out)
    cache = Cache(out / "cache" / recipe.key())
    (cache.folder / "recipe.json").write_text(json.dumps(dataclasses.asdict(recipe),
                                                         indent=1, default=str))
    if stop_after is not None and stop_after not in PHASES:
        raise ValueError(f"stop_after must be one of {PHASES}, got {stop_after!r}.")
    if cifar10c and recipe.dataset != "cifar10":
        raise ValueError("--cifar10c applies to --dataset cifar10 only.")
    workers = workers or max(1, min(16, os.cpu_count() or 1))
    data = load_data(recipe, data_home)
    log(f"data: {len(data.y_train)} training, {len(data.y_val)} validation, "
        f"{len(data.y_test)} test images; cache {cache.folder}")
    record: dict[str, Any] = {}
    traj_file = cache.folder / "base_trajectories.npy"

    buffer_file = cache.folder / "base_checkpoint_buffers.npy"

    def compute_base() -> dict:
        value = fit_base(recipe, data, device)
        np.save(traj_file, value.pop("trajectories"))
        np.save(buffer_file, value.pop("buffers"))
        return value

    base = _run_phase("base", cache, compute_base, log, record)
    base["trajectories"] = np.load(traj_file, mmap_mode="r")
    if base["checkpoint_mode"] == "estimator":
        base["estimator"].checkpoints_ = base["trajectories"]
        base["estimator"].checkpoint_buffers_ = np.load(buffer_file, mmap_mode="r")
    results: dict[str, Any] = {"base": base}
    phases: list[tuple[str, Callable[[], dict]]] = [
        ("trajectory", lambda: run_trajectory(recipe, data, base)),
        ("subspace", lambda: run_subspace(recipe, data, base, results["trajectory"])),
        ("plane", lambda: run_plane(recipe, data, base, results["trajectory"])),
        ("shift", lambda: run_shift(recipe, data, base, cache, cifar10c, workers,
                                    a_scales_of(results["subspace"], 0))),
        ("landscape", lambda: run_landscape(recipe, data, base)),
    ]
    for name, compute in [("base", lambda: base), *phases]:
        if name != "base":
            results[name] = _run_phase(name, cache, compute, log, record)
        if stop_after == name:
            log(f"stopped after phase {name!r}; run again to continue")
            return None
    figures = draw_figures(recipe, results, out)
    summary = summarise(recipe, data, results, record, device, time.perf_counter() - started)
    write_outputs(recipe, summary, figures, out)
    log(f"report: {out / 'report.md'}")
    return summary


def a_scales_of(sub: dict[str, Any], run: int) -> dict[str, float]:
    """The configuration-A PCA scales the subspace phase used around ``run``."""
    return {m: float(sub["info"][m][run]["scale"]) for m in CAPPED_METHODS
            if "scale" in sub["info"][m][run]}


# ----------------------------------------------------------------------------- summary
def _offdiag_mean(matrix: np.ndarray) -> float:
    matrix = np.asarray(matrix)
    mask = ~np.eye(len(matrix), dtype=bool)
    return float(matrix[mask].mean()) if mask.any() else float("nan")


def _environment(device: str, base: dict) -> dict[str, Any]:
    import sklearn
    import skorch

    actual = str(getattr(base["estimator"], "device_", device))
    if actual.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        peak = torch.cuda.max_memory_allocated() / 2**20
        peak_kind = "peak GPU memory allocated by torch in this process"
    else:
        name = platform.processor() or platform.machine()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_kind = "peak resident memory of this process"
    return {
        "device": actual, "device_name": name, "peak_memory_mib": round(float(peak), 1),
        "peak_memory_kind": peak_kind, "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
        "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "scikit-learn": sklearn.__version__,
        "skorch": skorch.__version__, "ensemblekit": ensemblekit.__version__,
        "platform": platform.platform(),
    }


def near_deterministic(js_values: dict[str, float], fraction: float = NEAR_DETERMINISTIC
                       ) -> dict[str, float]:
    """The methods whose JS diversity is below ``fraction`` of the independent runs'.

    Parameters
    ----------
    js_values : dict of str to float
        JS diversity (nats) per method, with the independent runs under ``"independent"``.
    fraction : float, default=NEAR_DETERMINISTIC
        The cut-off, as a fraction of the independent runs' JS diversity.

    Returns
    -------
    flagged : dict of str to float
        The JS diversity of each method below the cut-off, in the input order.

    Examples
    --------
    >>> near_deterministic({"independent": 0.04, "random": 0.026, "diag_gaus": 0.0001})
    {'diag_gaus': 0.0001}
    """
    cut = fraction * js_values["independent"]
    return {m: v for m, v in js_values.items() if m != "independent" and v < cut}


def _near_note(flagged: dict[str, float], js_ind: float) -> str | None:
    """One sentence naming the near-deterministic methods, or None when there are none."""
    if not flagged:
        return None
    names = [LABELS.get(m, m) for m in flagged]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    one = len(names) == 1
    return (f"{listed} {'is' if one else 'are'} near-deterministic here: JS "
            + ", ".join(f"{v:.3f}" for v in flagged.values())
            + f", below {NEAR_DETERMINISTIC:.0%} of the independent runs' {js_ind:.3f}; "
            f"the comparison with {'it' if one else 'them'} is won trivially")


def claims(r: Recipe, res: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's qualitative claims, each with the measured numbers and pass/fail."""
    traj, sub, plane = res["trajectory"], res["subspace"], res["plane"]
    out = []
    # 1. Independent runs are more diverse than checkpoints of one trajectory.
    late_block = traj["within_disagreement"][:, -r.late_epochs:, -r.late_epochs:]
    within = float(np.mean([_offdiag_mean(b) for b in late_block]))
    across = _offdiag_mean(traj["across_disagreement"])
    late_cos = traj["within_cosine"][:, -r.late_epochs:, -r.late_epochs:]
    cos_within = float(np.mean([_offdiag_mean(b) for b in late_cos]))
    cos_across = _offdiag_mean(traj["across_cosine"])
    out.append({
        "claim": "Independent runs disagree more than late checkpoints of one trajectory "
                 "(validation split)",
        "measured": f"disagreement across runs {across:.3f} vs within a trajectory "
                    f"(last {r.late_epochs} epochs) {within:.3f}; weight cosine across runs "
                    f"{cos_across:.3f} vs within {cos_within:.3f}",
        "pass": bool(across > within and cos_across < cos_within),
        "note": None,
    })
    # 2. ... and more than every subspace method at comparable accuracy.
    run_acc = np.asarray(plane["runs"]["accuracy"])
    run_nd = np.asarray(plane["runs"]["normalized_diversity"])
    # "Comparable accuracy": within a tenth of the baseline's error rate of the least
    # accurate run (0.024 for the paper's MediumCNN at 0.76, about its 0.01-0.02 window).
    tol = 0.1 * (1 - float(plane["reference_accuracy"]))
    floor = float(run_acc.min()) - tol
    parts, ok = [], True
    for method in METHODS_B:
        acc = np.asarray(plane["methods"][method]["accuracy"])
        nd = np.asarray(plane["methods"][method]["normalized_diversity"])
        near = acc >= floor
        if near.any():
            # The bulk of the samples, not their extreme: a few of 50 draws may reach one
            # run's diversity by chance on a small test set.
            ok &= float(nd[near].mean()) < float(run_nd.mean())
            parts.append(f"{LABELS[method]} mean {nd[near].mean():.2f}, max {nd[near].max():.2f}"
                         f" ({int(near.sum())} samples)")
        else:
            parts.append(f"{LABELS[method]}: no sample that accurate")
    js_ind = res["shift"]["clean"]["js"]["independent"]
    flagged = near_deterministic(res["shift"]["clean"]["js"])
    flagged_a = {m: v for m, v in flagged.items() if m in METHODS_A}
    js_parts, inaccurate = [], {}
    for method, value in res["shift"]["clean"]["js"].items():
        if method == "independent":
            continue
        ok &= js_ind > value
        sample_acc = sub["sample_accuracy"].get(method)
        js_parts.append(f"{LABELS.get(method, method)} {value:.3f}" + (
            f" (samples' accuracy {np.mean(sample_acc):.3f})" if sample_acc else ""))
        if sample_acc and float(np.mean(sample_acc)) < floor:
            inaccurate[LABELS.get(method, method)] = float(np.mean(sample_acc))
    notes = [_near_note(flagged, js_ind)]
    if inaccurate:
        one = len(inaccurate) == 1
        notes.append(
            f"{' and '.join(inaccurate)} {'pays' if one else 'pay'} for {'its' if one else 'their'}"
            f" JS diversity with accuracy: samples' mean test accuracy "
            + ", ".join(f"{v:.3f}" for v in inaccurate.values())
            + f", below the comparable-accuracy floor {floor:.3f}, so the JS comparison does "
            f"not test the claim at comparable accuracy for {'it' if one else 'them'}")
    out.append({
        "claim": "Independent runs are more diverse than every subspace method at comparable "
                 "accuracy (pass: each method's mean below the runs' mean in the plane, and "
                 "JS diversity below the runs')",
        "measured": f"diversity plane (configuration B, samples with test accuracy >= "
                    f"{floor:.3f}): normalised diversity of the independent runs mean "
                    f"{run_nd.mean():.2f} (min {run_nd.min():.2f}); "
                    + "; ".join(parts) + f". JS diversity on the clean test set "
                    f"(configuration A, around run 0; in brackets the mean test accuracy "
                    f"of the method's single samples around every run, the runs' own "
                    f"{np.mean(sub['sample_accuracy']['original']):.3f}): independent "
                    f"{js_ind:.3f} vs "
                    + ", ".join(js_parts),
        "pass": bool(ok),
        "note": "; ".join(n for n in notes if n) or None,
    })
    # 3. Ensembles across runs beat any single-mode method at equal size.
    ind = sub["curves"]["original"]
    worst_gap_b, worst_gap_a, rows = np.inf, np.inf, []
    for method in METHODS_A[1:]:
        bk = sub["by_k"][method]
        for k in range(2, r.n_runs + 1):
            b_single = float(np.mean(np.asarray(bk["brier"])[:, k - 1]))
            a_single = float(np.mean(np.asarray(bk["accuracy"])[:, k - 1]))
            worst_gap_b = min(worst_gap_b, b_single - ind["brier"][k - 1])
            worst_gap_a = min(worst_gap_a, ind["accuracy"][k - 1] - a_single)
        best = min(sub["curves"][method]["brier"][0] for method in METHODS_A[1:])
    k2 = ind["brier"][1]
    rows.append(f"smallest Brier margin (single-mode k-sample ensemble minus k-run ensemble, "
                f"k = 2..{r.n_runs}, every method) {worst_gap_b:+.4f}; smallest accuracy "
                f"margin {worst_gap_a:+.4f}")
    rows.append(f"2-run ensemble Brier {k2:.4f} vs the best single-mode method with all "
                f"{r.a_samples} samples {best:.4f}")
    out.append({
        "claim": "Ensembles across independent runs beat any single-mode method of equal size",
        "measured": "; ".join(rows),
        "pass": bool(worst_gap_b > 0 and worst_gap_a >= 0),
        "note": _near_note(flagged_a, js_ind),
    })
    out.append({
        "claim": "A 2-ensemble of independent runs beats every single-mode subspace ensemble "
                 f"(all {r.a_samples} samples) on Brier",
        "measured": f"{k2:.4f} vs best {best:.4f}",
        "pass": bool(k2 < best),
        "note": _near_note(flagged_a, js_ind),
    })
    return out


def _band_row(name: str, ours: float | None, paper: float, tol: float,
              applicable: bool) -> dict[str, Any]:
    passed = None if (ours is None or not applicable) else bool(abs(ours - paper) <= tol)
    return {"quantity": name, "ours": ours, "paper": paper, "tolerance": tol,
            "pass": passed}


def paper_comparison(r: Recipe, res: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Our numbers beside the paper's figure values, with a tolerance band each."""
    rows: list[dict[str, Any]] = []
    medium = r.model == "mediumcnn" and r.dataset == "cifar10"
    note = "" if medium else (
        "The paper's numbers below are for MediumCNN on CIFAR-10; this run trains "
        f"{r.model} on {r.dataset}, so they are shown for orientation and not judged.")
    shift = res["shift"]
    clean = shift["clean"]
    M = r.n_runs
    for k in (1, 2, 5):
        kk = k if k <= M else None
        ours = clean["accuracy"].get(kk) if kk else None
        rows.append(_band_row(f"clean accuracy, {k}-ensemble" if k > 1 else
                              "clean accuracy, single", ours,
                              PAPER_MEDIUMCNN["accuracy"][k][0], 0.02, medium))
    for k in (1, 2, 5):
        kk = k if k <= M else None
        ours = clean["brier"].get(kk) if kk else None
        rows.append(_band_row(f"clean Brier, {k}-ensemble" if k > 1 else "clean Brier, single",
                              ours, PAPER_MEDIUMCNN["brier"][k][0],
                              0.03 if k < 5 else 0.02, medium))
    for method, values in PAPER_MEDIUMCNN["js"].items():
        ours = clean["js"].get(method)
        rows.append(_band_row(f"clean JS diversity, {LABELS[method]}", ours, values[0],
                              0.03 if method == "independent" else 0.02, medium))
    full = len(shift["corruptions"]) >= 18
    for sev in range(1, 6):
        per = [shift["rows"][c][sev] for c in shift["corruptions"]]
        acc1 = float(np.mean([p["accuracy"][1] for p in per]))
        br1 = float(np.mean([p["brier"][1] for p in per]))
        jsi = float(np.mean([p["js"]["independent"] for p in per]))
        rows.append(_band_row(f"intensity {sev}: accuracy, single", acc1,
                              PAPER_MEDIUMCNN["accuracy"][1][sev], 0.03, medium and full))
        rows.append(_band_row(f"intensity {sev}: Brier, single", br1,
                              PAPER_MEDIUMCNN["brier"][1][sev], 0.04, medium and full))
        if M >= 5:
            accM = float(np.mean([p["accuracy"][M] for p in per]))
            rows.append(_band_row(f"intensity {sev}: accuracy, {M}-ensemble", accM,
                                  PAPER_MEDIUMCNN["accuracy"][5][sev], 0.03,
                                  medium and full and M == 5))
        rows.append(_band_row(f"intensity {sev}: JS diversity, independent", jsi,
                              PAPER_MEDIUMCNN["js"]["independent"][sev], 0.03,
                              medium and full))
    ref = PAPER_PLANE[r.model]
    plane = res["plane"]
    applicable = r.dataset == "cifar10"
    value, tol = ref["baseline_accuracy"]
    rows.append(_band_row("diversity plane: baseline test accuracy", plane["reference_accuracy"],
                          value, tol, applicable))
    lo, hi = ref["normalized_diversity"]
    nd = plane["runs"]["normalized_diversity"]
    mid, half = (lo + hi) / 2, (hi - lo) / 2 + 0.03
    rows.append(_band_row("diversity plane: mean normalised diversity of the other runs",
                          float(np.mean(nd)), mid, half, applicable))
    return rows, note


def summarise(r: Recipe, data: Bunch, res: dict[str, Any], record: dict[str, Any],
              device: str, total_seconds: float) -> dict[str, Any]:
    """All numbers of the run, JSON-ready."""
    base, traj, sub, plane = res["base"], res["trajectory"], res["subspace"], res["plane"]
    test_final = traj["test_final"]
    y = data.y_test
    run_acc = top1_accuracy(test_final, y)
    compute = {
        "phases": record, "total_seconds": total_seconds,
        "total_cpu_seconds": time.process_time(),
        "phase_seconds": float(sum(rec["seconds"] or 0.0 for rec in record.values())),
        "phase_cpu_seconds": float(sum(rec.get("cpu_seconds") or 0.0
                                       for rec in record.values())),
        "resumed": any(rec["status"] != "computed" for rec in record.values()),
        "training": {"seconds": base.get("_seconds"), "engine": base["engine"],
                     "engine_reason": base["engine_reason"],
                     "checkpoints_recorded_by": base["checkpoint_mode"],
                     "member_images_per_second": base["member_images_per_second"],
                     "member_images": r.n_runs * r.epochs * len(data.y_train)},
        "environment": _environment(device, base),
        "precision": r.precision, "batches": r.batches,
    }
    landscape = res["landscape"]
    land_summary: dict[str, Any] = {}
    if "skipped" in landscape:
        land_summary["skipped"] = landscape["skipped"]
    else:
        for key in ("linear", "bezier"):
            path = landscape[key]
            land_summary[key] = {k: np.asarray(v).tolist() for k, v in path.items()}
    summary = {
        "recipe": dataclasses.asdict(r),
        "data": {"train": len(data.y_train), "validation": len(data.y_val), "test": len(y),
                 "classes": data.n_classes},
        "runs": {"test_accuracy": run_acc.tolist(),
                 "validation_accuracy": top1_accuracy(traj["val_final"], data.y_val).tolist()},
        "similarity": {
            "across_cosine": np.asarray(traj["across_cosine"]).tolist(),
            "across_disagreement_validation": np.asarray(traj["across_disagreement"]).tolist(),
            "across_disagreement_test": np.asarray(traj["across_disagreement_test"]).tolist(),
            "within_disagreement_late_mean": float(np.mean([
                _offdiag_mean(b) for b in
                traj["within_disagreement"][:, -r.late_epochs:, -r.late_epochs:]])),
            "within_cosine_late_mean": float(np.mean([
                _offdiag_mean(b) for b in
                traj["within_cosine"][:, -r.late_epochs:, -r.late_epochs:]])),
        },
        "ensemble_size": sub["curves"],
        "single_mode_by_size": {m: {k: np.mean(np.asarray(v), axis=0).tolist()
                                    for k, v in d.items()} for m, d in sub["by_k"].items()},
        "subspace_samples": {
            m: {"mean_sample_accuracy": float(np.mean(v)),
                "js_among_samples": (float(np.mean(sub["sample_js"][m]))
                                     if m in sub["sample_js"] else None)}
            for m, v in sub["sample_accuracy"].items()},
        "late_spread": late_spread(r, base["trajectories"], len(data.y_train)),
        "subspace_scale_rule": (scale_rule(r.model, r.rank)
                                if r.preset == "quick" and r.dataset == "digits" else None),
        "a_pca_scales": {
            m: {"rule": float(r.a_pca_scale), "capped": bool(r.a_cap_steps > 0),
                "chosen_per_run": [float(x.get("scale", r.a_pca_scale))
                                   for x in sub["info"][m]],
                "validation_accuracy_at_chosen": [_acc_at(x) for x in sub["info"][m]],
                "bar_met": [bool(x["cap"]["met"]) if "cap" in x else None
                            for x in sub["info"][m]],
                "evaluations": [len(x["cap"]["trace"]) if "cap" in x else 0
                                for x in sub["info"][m]]}
            for m in CAPPED_METHODS},
        "random_subspace_acceptance": {
            m: float(np.mean([np.mean(x["accepted"]) for x in sub["info"][m]]))
            for m in ("random", "pca_random")},
        "diversity_plane": {k: v for k, v in plane.items() if not k.startswith("_")},
        "shift": {"clean": res["shift"]["clean"], "rows": res["shift"]["rows"],
                  "corruptions": res["shift"]["corruptions"], "source": res["shift"]["source"],
                  "by_intensity": shift_by_intensity(res["shift"], r.n_runs)},
        "landscape": land_summary,
        "compute": compute,
    }
    summary["claims"] = claims(r, res)
    summary["paper_comparison"], summary["paper_comparison_note"] = paper_comparison(r, res)
    return _jsonable(summary)


def _acc_at(info: dict[str, Any]) -> float | None:
    """Mean validation accuracy of the cap's samples at the chosen scale, if searched."""
    if "cap" not in info:
        return None
    return next((acc for c, acc in info["cap"]["trace"] if c == info["scale"]), None)


def late_spread(r: Recipe, trajectories: np.ndarray, n_train: int) -> dict[str, Any]:
    """How far the late checkpoints spread: the scale the Gaussian samplers work at.

    Per run, the standard deviation (ddof=0) of the last ``late_epochs`` checkpoints along
    each of their top ``rank`` principal directions and, per parameter, averaged over the
    parameters; both then averaged over the runs. Also the optimiser steps in the window.
    """
    pc_std, param_std = [], []
    for run in range(trajectories.shape[0]):
        points = np.asarray(trajectories[run, -r.late_epochs:], dtype=np.float64)
        centred = points - points.mean(axis=0)
        singular = np.linalg.svd(centred, compute_uv=False)[: r.rank]
        pc_std.append(singular / math.sqrt(len(points)))
        param_std.append(float(points.std(axis=0).mean()))
    return {"principal_std": np.mean(pc_std, axis=0).tolist(),
            "parameter_std_mean": float(np.mean(param_std)),
            "steps": r.late_epochs * math.ceil(n_train / r.batch_size)}


def shift_by_intensity(shift: dict[str, Any], M: int) -> dict[str, Any]:
    """Every metric averaged over the corruption types at each intensity (0 = clean)."""
    out: dict[str, Any] = {}
    rows = [[shift["clean"]]] + [[shift["rows"][c][s] for c in shift["corruptions"]]
                                 for s in range(1, 6)]
    for sev, per in enumerate(rows):
        entry: dict[str, Any] = {}
        for key in ("accuracy", "brier"):
            entry[key] = {k: float(np.mean([p[key][k] for p in per])) for k in per[0][key]}
        entry["js"] = {k: float(np.mean([p["js"][k] for p in per])) for k in per[0]["js"]}
        entry["single_mode"] = {
            m: {key: float(np.mean([p["single_mode"][m][key] for p in per]))
                for key in ("accuracy", "brier")}
            for m in per[0]["single_mode"]}
        out[sev] = entry
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


# ----------------------------------------------------------------------------- figures
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_similarity(r: Recipe, res: dict[str, Any], path: Path) -> None:
    from ensemblekit.plotting import SimilarityMatrixDisplay

    plt = _plt()
    traj = res["trajectory"]
    K = traj["within_cosine"].shape[-1]
    fig, axes = plt.subplots(2, 2, figsize=(11, 9))
    SimilarityMatrixDisplay(traj["all_cosine"], traj["all_disagreement"],
                            member=np.repeat(np.arange(r.n_trajectories), K)).plot(ax=axes[0])
    SimilarityMatrixDisplay(traj["across_cosine"], traj["across_disagreement"]).plot(ax=axes[1])
    axes[0, 0].set_title(f"weight cosine: {r.n_trajectories} trajectories x {K} epochs",
                         fontsize=10)
    axes[0, 1].set_title("disagreement (validation): same checkpoints", fontsize=10)
    axes[1, 0].set_title(f"weight cosine: {r.n_runs} final solutions", fontsize=10)
    axes[1, 1].set_title("disagreement (validation): final solutions", fontsize=10)
    for ax in axes[1]:
        ax.set_xlabel("run")
        ax.set_ylabel("run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tsne_embeddings(r: Recipe, res: dict[str, Any]) -> dict[str, Any]:
    """t-SNE of the trajectories with each method's samples (validation softmax, flattened)."""
    from sklearn.manifold import TSNE

    traj = np.asarray(res["trajectory"]["val_proba"][: r.n_trajectories])
    T, K = traj.shape[:2]
    out = {}
    for method in METHODS_TSNE:
        samples = np.asarray(res["subspace"]["tsne_val"][method])
        S = samples.shape[1]
        proba = np.concatenate([traj.reshape(T * K, -1), samples.reshape(T * S, -1)])
        perplexity = min(30.0, (len(proba) - 1) / 3)
        if landscape is not None:
            emb = landscape.function_space_embedding(
                proba.reshape(len(proba), -1, traj.shape[-1]), method="tsne",
                random_state=r.random_state)
        else:
            emb = TSNE(n_components=2, perplexity=perplexity,
                       random_state=r.random_state).fit_transform(proba)
        out[method] = {"trajectories": emb[: T * K].reshape(T, K, 2),
                       "samples": emb[T * K:].reshape(T, S, 2)}
    return out


def figure_tsne(r: Recipe, emb: dict[str, Any], path: Path) -> None:
    from ensemblekit.plotting import FunctionSpaceDisplay

    plt = _plt()
    titles = {"random": "Runs & random subspaces", "dropout": "Runs & dropout subspaces",
              "diag_gaus": "Runs & diagonal normal subspaces",
              "pca_gaus": "Runs & low-rank normal subspaces"}
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    for ax, method in zip(axes, METHODS_TSNE):
        e = emb[method]
        samples = {f"samples around run {t}": s for t, s in enumerate(e["samples"])}
        FunctionSpaceDisplay(e["trajectories"], samples).plot(ax=ax)
        ax.set_title(titles[method], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_plane(r: Recipe, plane: dict[str, Any], path: Path) -> None:
    from ensemblekit.plotting import DiversityAccuracyDisplay

    plt = _plt()
    names = {"random": "random subspace", "dropout": "dropout subspace",
             "diag_gaus": "diagonal gaussian", "pca_gaus": f"rank {r.rank} gaussian"}
    fig, ax = plt.subplots(figsize=(6.5, 5))
    DiversityAccuracyDisplay(
        {names[m]: plane["methods"][m]["accuracy"] for m in METHODS_B},
        {names[m]: plane["methods"][m]["normalized_diversity"] for m in METHODS_B},
        plane["reference_accuracy"], int(plane.get("n_classes", 10)),
        independent_accuracy=plane["runs"]["accuracy"],
        independent_diversity=plane["runs"]["normalized_diversity"],
    ).plot(ax=ax)
    ax.set_xlabel("test accuracy")
    ax.set_title(f"{r.model} on {r.dataset}: diversity vs accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_ensemble_size(r: Recipe, sub: dict[str, Any], path: Path) -> None:
    from ensemblekit.metrics import EnsembleSizeCurve
    from ensemblekit.plotting import EnsembleSizeDisplay

    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.4))
    sizes = np.arange(1, r.n_runs + 1)
    n_subsets = np.array([math.comb(r.n_runs, k) for k in sizes])
    for ax, (key, metric) in zip(axes, (("accuracy", "accuracy"), ("brier", "brier_score"),
                                        ("nll", "negative_log_likelihood"),
                                        ("ece", "expected_calibration_error"))):
        curves = {
            LABELS[m] + ("" if m == "original" else " + ens."): EnsembleSizeCurve(
                sizes, np.asarray(sub["curves"][m][key]),
                np.asarray(sub["curves"][m][key + "_std"]), n_subsets)
            for m in METHODS_A}
        EnsembleSizeDisplay(curves, metric).plot(ax=ax)
        ax.set_xticks(sizes)
        ax.set_xlabel("ensemble size (independent runs)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_shift(r: Recipe, shift: dict[str, Any], path: Path) -> None:
    from ensemblekit.plotting import ShiftDisplay

    plt = _plt()
    M = r.n_runs
    clean, rows, names = shift["clean"], shift["rows"], shift["corruptions"]

    def per_level(get: Callable[[dict], float]) -> dict[int, np.ndarray]:
        out = {0: np.array([get(clean)])}
        for sev in range(1, 6):
            out[sev] = np.array([get(rows[c][sev]) for c in names])
        return out

    acc: dict[str, Any] = {"Original single": per_level(lambda p: p["accuracy"][1]),
                           f"Original {M}-ensemble": per_level(lambda p: p["accuracy"][M])}
    brier: dict[str, Any] = {"Original single": per_level(lambda p: p["brier"][1]),
                             f"Original {M}-ensemble": per_level(lambda p: p["brier"][M])}
    for m in clean["single_mode"]:
        acc[f"{LABELS[m]} (run 0)"] = per_level(
            lambda p, m=m: p["single_mode"][m]["accuracy"])
        brier[f"{LABELS[m]} (run 0)"] = per_level(lambda p, m=m: p["single_mode"][m]["brier"])
    jsd = {LABELS.get(m, m): per_level(lambda p, m=m: p["js"][m]) for m in clean["js"]}
    fig, axes = plt.subplots(1, 3, figsize=(21, 5))
    ShiftDisplay(acc, "accuracy").plot(ax=axes[0])
    ShiftDisplay(brier, "brier_score").plot(ax=axes[1])
    ShiftDisplay(jsd, "JS diversity (nats)").plot(ax=axes[2])
    for ax in axes:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_landscape(r: Recipe, land: dict[str, Any], path: Path) -> bool:
    if "skipped" in land:
        return False
    from ensemblekit.plotting import LossLandscapeDisplay

    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(22, 4.6))
    LossLandscapeDisplay(land["plane"], "plane").plot(ax=axes[0], metric="accuracy")
    axes[0].set_title("test accuracy on the plane through runs 0, 1, 2")
    LossLandscapeDisplay(land["plane"], "plane").plot(ax=axes[1], metric="loss")
    axes[1].set_title("test loss on the same plane")
    LossLandscapeDisplay(land["linear"], "path", label="linear").plot(ax=axes[2:])
    LossLandscapeDisplay(land["bezier"], "path", label="Bezier (trained)").plot(ax=axes[2:])
    axes[2].set_title("test loss from run 0 (t=0) to run 1 (t=1)")
    axes[3].set_title("disagreement with the end points")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- report
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _verdict(value: bool | None) -> str:
    return "n/a" if value is None else ("pass" if value else "FAIL")


def setup_differences(r: Recipe) -> list[str]:
    """What differs from the paper's set-up, for this recipe."""
    out = []
    if r.dataset == "digits":
        out += [
            "Data: scikit-learn's 1,797 handwritten digits as 8x8 grey images (inputs in "
            f"[0, 1]) instead of CIFAR-10; the last 497 are the test set, the last {r.n_val} "
            "of the remaining 1,300 the validation split (the notebook's last 500 of 50,000, "
            "scaled down).",
            f"Recipe scaled down: SmallCNN (16, 32, 32) on 8x8 inputs, batch {r.batch_size}, "
            f"Adam {r.lr:g} halved every {r.lr_halving_every} epochs, {r.epochs} epochs; the "
            f"last {r.late_epochs} epochs are the late checkpoints (the notebook: 30-39 of "
            f"40), PCA rank {r.rank}.",
            scale_rule_text(r),
            "Dataset shift: the CIFAR-10-C corruptions are applied to the digits upscaled "
            "to 32x32 RGB and scaled back to 8x8 grey; the test images of intensity 0 and of "
            "every corrupted row are the same images.",
        ]
    else:
        if r.dataset == "cifar10":
            out.append("CIFAR-10 pixels may come from a JPEG-stored copy (about 6/255 mean "
                       "difference from the official files) where the official archive was "
                       "not available.")
        if r.n_train or r.n_test:
            out.append(f"Subsets: {r.n_train or 'all'} training and {r.n_test or 'all'} test "
                       "images (a CPU-sized run, not the paper's scale).")
    if r.a_cap_steps > 0:
        out.append(cap_rule_text(r))
    if r.batches == "permutation":
        out.append("Batches: each epoch is a permutation of the training rows (the notebook "
                   "draws every batch with replacement; `--batches with-replacement` does).")
    out.append(f"Precision: {r.precision} (the paper trained in fp32).")
    out.append("Corruptions: 18 of the 19 CIFAR-10-C corruptions are generated (frost needs "
               "texture photographs that are not shipped) unless published arrays are given "
               "with --cifar10c; the published arrays were drawn from another random stream.")
    out.append(f"Subspace methods under shift are sampled around run 0 ({r.shift_samples} "
               "samples each); the notebook uses one trajectory's run as well.")
    if r.model == "resnet20v1":
        out.append("ResNet20v1: batch 128 (the Keras example uses 32; the paper's is not "
                   "known), shift by up to 4 pixels with zero fill (Keras: 10 % with "
                   "nearest fill), no ReduceLROnPlateau.")
    return out


def scale_rule_text(r: Recipe) -> str:
    """The quick preset's subspace-scale rule, its inputs and the values used."""
    rule = scale_rule(r.model, r.rank)
    used = {name: getattr(r, name) for name in PAPER_SCALES}
    by_hand = [f"{name}={used[name]:g} (rule: {rule[name]:g})" for name in PAPER_SCALES
               if not math.isclose(used[name], rule[name])]
    rms = (rule["norm"] / math.sqrt(rule["n_parameters"])) / (
        rule["paper_norm"] / math.sqrt(rule["paper_n_parameters"]))
    return (
        "Subspace scales by one rule, from the paper's MediumCNN values: the random-subspace "
        "and PCA samplers move the weights by a set length in parameter space, so their "
        "scales keep the paper's length relative to the weight vector's length at "
        f"initialisation, |theta_0| = {rule['norm']:.2f} for {r.model} on 8x8 digits "
        f"({rule['n_parameters']:,} parameters) against {rule['paper_norm']:.2f} for "
        f"MediumCNN on CIFAR-10 ({rule['paper_n_parameters']:,}), a ratio of "
        f"{rule['ratio']:.3f}; the PCA scales also carry sqrt(paper rank {PAPER_RANK} / "
        f"rank {r.rank}). Random subspace s = {used['a_random_scale']:g} U(0, 1) "
        f"(configuration A; the paper: 10 U(0, 1)) and {used['b_random_scale']:g} U(0, 1) "
        f"(B; the paper: 70 U(0, 1)); PCA c = {used['a_pca_scale']:g} (A; the paper: 1) "
        f"and {used['b_pca_scale']:g} (B; the paper: 6). The diagonal Gaussian's c is "
        f"relative to the checkpoints' standard deviation and keeps the paper's "
        f"{r.a_gauss_scale:g} (A) and {r.b_diag_scale:g} U(0, 1) (B); dropout keeps "
        f"p = {r.b_dropout_p:g} U(0, 1). Keeping the per-parameter RMS perturbation "
        f"instead would give {rms:.1f}x smaller scales, as this network's weights are "
        f"{rms:.1f}x larger per parameter at initialisation. Random-subspace samples are "
        f"redrawn (up to {r.a_max_tries} tries) below validation accuracy "
        f"{r.a_threshold:g} (the paper: 0.70 at a baseline of about 0.71-0.76)."
        + (" Set by hand: " + ", ".join(by_hand) + "." if by_hand else ""))


def cap_rule_text(r: Recipe) -> str:
    """The quick preset's accuracy cap on the configuration-A PCA scales."""
    return (
        f"PCA scales capped by accuracy (configuration A): the paper rejects random-subspace "
        f"samples below a validation accuracy, but PCA Gaus and PCA Random have no such "
        f"step, and at the scaled c their samples can leave the comparable-accuracy regime "
        f"the paper's configuration A sits in (there PCA Gaus samples at c = 1 stay about as "
        f"accurate as the original network). Per run and method, c = min(c_rule = "
        f"{r.a_pca_scale:g}, the largest c on a geometric grid over "
        f"[{CAP_MIN_FRACTION:g} c_rule, c_rule] whose samples' mean accuracy on the "
        f"validation split is at least {r.a_threshold:g}, the random subspace's bar), "
        f"found with c_rule, the lower end and {r.a_cap_steps} bisection steps on log c, "
        f"each judging {r.a_cap_samples} samples drawn once from the run's own random "
        f"stream; the test set plays no part. The chosen c are in section 4 and "
        f"results.json (a_pca_scales); configuration B keeps the rule's c.")


def _time_line(compute: dict[str, Any]) -> str:
    load = compute["environment"]["load_average"][0]
    if compute["resumed"]:
        return (f"The phases took {compute['phase_seconds']:.0f} s of wall time when computed; "
                f"this invocation loaded finished phases from the cache and took "
                f"{compute['total_seconds']:.0f} s. Load average at the end: {load:.2f}.")
    return (f"Wall time {compute['total_seconds']:.0f} s from scratch (CPU time "
            f"{compute['total_cpu_seconds']:.0f} s); load average at the end {load:.2f}.")


def render_report(r: Recipe, s: dict[str, Any], figures: dict[str, bool]) -> str:
    env = s["compute"]["environment"]
    curves = s["ensemble_size"]
    M = r.n_runs
    L: list[str] = []
    add = L.append
    add(f"# Fort, Hu & Lakshminarayanan, reproduced: {r.model} on {r.dataset} "
        f"({r.preset} preset)")
    add("")
    add(f"{M} independent runs x {r.epochs} epochs trained together "
        f"({s['compute']['training']['engine']}, {r.precision}, batches: {r.batches}) on "
        f"{s['data']['train']} images; validation split {s['data']['validation']}, test set "
        f"{s['data']['test']} images. Device: {env['device_name']} ({env['device']}). "
        + _time_line(s["compute"]))
    add("")
    add("## Summary")
    add("")
    add("| quantity | value |")
    add("|---|---|")
    acc = s["runs"]["test_accuracy"]
    add(f"| test accuracy of a single run (mean of {M}) | {np.mean(acc):.3f} |")
    add(f"| test accuracy of the {M}-run ensemble | {curves['original']['accuracy'][-1]:.3f} |")
    add(f"| Brier single / {M}-run ensemble | {curves['original']['brier'][0]:.3f} / "
        f"{curves['original']['brier'][-1]:.3f} |")
    sim = s["similarity"]
    across = _offdiag_mean(np.array(sim["across_disagreement_validation"]))
    add(f"| disagreement across runs (validation) / within a trajectory's last "
        f"{r.late_epochs} epochs | {across:.3f} / {sim['within_disagreement_late_mean']:.3f} |")
    add(f"| weight cosine across runs / within late trajectory | "
        f"{_offdiag_mean(np.array(sim['across_cosine'])):.3f} / "
        f"{sim['within_cosine_late_mean']:.3f} |")
    passed = sum(bool(c["pass"]) for c in s["claims"])
    noted = sum(bool(c["pass"]) and bool(c.get("note")) for c in s["claims"])
    add(f"| paper's qualitative claims reproduced | {passed} of {len(s['claims'])}"
        + (f" ({noted} of them partly against near-deterministic samplers, see below)"
           if noted else "") + " |")
    add("")
    add("## The paper's claims, measured")
    add("")
    add("| claim | measured | result |")
    add("|---|---|---|")
    for c in s["claims"]:
        note = f" **Note: {c['note']}.**" if c.get("note") else ""
        add(f"| {c['claim']}.{note} | {c['measured']} | {_verdict(c['pass'])} |")
    add("")
    add("## Our numbers beside the paper's")
    add("")
    if s["paper_comparison_note"]:
        add(s["paper_comparison_note"])
        add("")
    add("Paper values are read off its figures (MediumCNN / CIFAR-10 for accuracy, Brier and "
        "JS; each network's own panel for the diversity plane). A number passes when it lies "
        "within the tolerance of the paper's value; n/a when the set-up differs too much to "
        "judge (another network or data set, or fewer than 18 corruptions for shifted rows).")
    add("")
    add("| quantity | ours | paper | tolerance | result |")
    add("|---|---|---|---|---|")
    for row in s["paper_comparison"]:
        add(f"| {row['quantity']} | {_fmt(row['ours'])} | {_fmt(row['paper'])} | "
            f"±{row['tolerance']:.3f} | {_verdict(row['pass'])} |")
    add("")
    disagreement = _offdiag_mean(np.array(sim["across_disagreement_test"]))
    nd = s["diversity_plane"]["runs"]["normalized_diversity"]
    text = (f"Independent runs disagree on {disagreement:.3f} of the test images "
            f"(normalised against run 0: {np.mean(nd):.2f}), with precision {r.precision} and "
            f"batches drawn by {r.batches}.")
    if r.model == "mediumcnn" and r.dataset == "cifar10":
        text += (" The paper's MediumCNN panel (0.83-0.95 at accuracy near 0.76) implies a raw "
            "disagreement of 0.19-0.23; an earlier bf16 run with permutation batches found "
            "0.29. Compare runs with `--batches with-replacement` (the notebook's sampling) "
            "and `--precision fp32` / `bf16` to see which moves it.")
    else:
        text += (" Whether batches drawn with replacement or fp32 move MediumCNN's disagreement "
            "toward the paper's (0.19-0.23, against 0.29 measured in bf16 with permutation "
            "batches) is a question for the paper preset on CIFAR-10 "
            "(`--batches with-replacement`, `--precision fp32` against `bf16`).")
    add(text)
    add("")
    sections = [
        ("similarity", "1. Weight and function similarity within and across trajectories",
         "Weight-space cosine and prediction disagreement on the validation split, for every "
         "epoch checkpoint of the first trajectories (blocks) and for the final solutions "
         "(paper section 3.1-3.2)."),
        ("tsne", "2. t-SNE of trajectories and subspace samples",
         "Softmax outputs on the validation split, flattened per function, embedded with "
         "t-SNE; stars mark each trajectory's start, squares are samples around its end "
         "(paper section 3.3)."),
        ("diversity_plane", "3. Diversity-accuracy plane (configuration B)",
         "Samples around run 0 with per-sample random scales; red stars are the other "
         "independent runs, the green star the baseline; dashed and dotted lines are the "
         "lower and upper limit curves (paper section 3.7)."),
        ("ensemble_size", "4. Ensemble size (configuration A, all k-subsets of runs)",
         "Each method gives one model per run (the mean of its samples); ensembles are "
         "formed across runs; error bars are the spread over subsets (paper section 3.6)."),
        ("shift", "5. Dataset shift (CIFAR-10-C style)",
         "Mean over corruption types at each intensity; single-mode methods are sampled "
         "around run 0; JS diversity of the independent runs, the late checkpoints of run "
         "0's trajectory and each method's samples (paper section 3.8)."),
        ("landscape", "6. Loss landscape: plane through three solutions and paths",
         "Test accuracy in the plane through runs 0, 1 and 2; loss, accuracy and "
         "disagreement with the end points along the straight line and a trained low-loss "
         "(quadratic Bezier) path from run 0 to run 1."),
    ]
    for key, title, text in sections:
        add(f"## {title}")
        add("")
        add(text)
        add("")
        if figures.get(key):
            add(f"![{title}]({key}.png)")
        else:
            add(f"(not produced: {s['landscape'].get('skipped', 'missing')})")
        add("")
        if key == "ensemble_size":
            add("| method | " + " | ".join(f"acc k={k}" for k in range(1, M + 1)) + " | "
                + " | ".join(f"Brier k={k}" for k in range(1, M + 1)) + " |")
            add("|---|" + "---|" * (2 * M))
            for m in METHODS_A:
                c = curves[m]
                add(f"| {LABELS[m]} | " + " | ".join(f"{v:.3f}" for v in c["accuracy"])
                    + " | " + " | ".join(f"{v:.3f}" for v in c["brier"]) + " |")
            add("")
            acc_s = s["subspace_samples"]
            add("Single samples (configuration A): " + "; ".join(
                f"{LABELS[m]} mean accuracy {v['mean_sample_accuracy']:.3f}"
                + (f", JS among samples {v['js_among_samples']:.3f}"
                   if v["js_among_samples"] is not None else "")
                for m, v in acc_s.items()) + ". Random-subspace acceptance rate: "
                f"{s['random_subspace_acceptance']['random']:.2f}.")
            add("")
            spread = s["late_spread"]
            pcs = spread["principal_std"]
            c_gaus = float(np.mean(s["a_pca_scales"]["pca_gaus"]["chosen_per_run"]))
            add(f"Late checkpoints ({r.late_epochs} epochs, {spread['steps']} optimiser "
                f"steps; the paper: 10 epochs, about 3,900 steps) spread with standard "
                f"deviation {pcs[0]:.3g} along their first principal direction and "
                f"{pcs[-1]:.3g} along direction {len(pcs)} (mean over runs), and "
                f"{spread['parameter_std_mean']:.2g} per parameter on average. The diagonal "
                f"Gaussian draws within that per-parameter spread (c = {r.a_gauss_scale:g}); "
                f"the PCA Gaussian draws c = {c_gaus:.3g} along every direction, "
                f"{c_gaus / pcs[0]:.1f} to {c_gaus / pcs[-1]:.1f} times the "
                f"spread, as its c is not scaled by the PCA variances"
                + (" (c: the mean of the capped values over runs)." if r.a_cap_steps > 0
                   else "."))
            add("")
            if r.a_cap_steps > 0:
                add("PCA scales (configuration A) capped by validation accuracy: " + "; ".join(
                    f"{LABELS[m]} c = " + ", ".join(f"{c:.3g}" for c in v["chosen_per_run"])
                    + f" (runs 0-{M - 1}; rule {v['rule']:g}; samples' mean validation "
                    "accuracy at the chosen c "
                    + ", ".join(_fmt(a) for a in v["validation_accuracy_at_chosen"])
                    + f"; bar {r.a_threshold:g}"
                    + ("" if all(v["bar_met"]) else "; not met at the grid's lower end by "
                       "every run") + ")"
                    for m, v in s["a_pca_scales"].items()) + ".")
                add("")
        if key == "shift":
            bi = s["shift"]["by_intensity"]
            add("| intensity | acc single | acc 2-ens | acc "
                f"{M}-ens | Brier single | Brier {M}-ens | JS independent | JS trajectory |")
            add("|---|---|---|---|---|---|---|---|")
            for sev in range(6):
                row = bi[str(sev)]
                add(f"| {sev} | {row['accuracy']['1']:.3f} | {row['accuracy']['2']:.3f} | "
                    f"{row['accuracy'][str(M)]:.3f} | {row['brier']['1']:.3f} | "
                    f"{row['brier'][str(M)]:.3f} | {row['js']['independent']:.3f} | "
                    f"{row['js']['trajectory']:.3f} |")
            add("")
            add(f"Corruptions ({len(s['shift']['corruptions'])}): "
                f"{', '.join(s['shift']['corruptions'])}; source: {s['shift']['source']}.")
            add("")
    add("## 7. Compute record")
    add("")
    add("| phase | wall time (s) | CPU time of this process (s) | status |")
    add("|---|---|---|---|")
    for name, rec in s["compute"]["phases"].items():
        add(f"| {name} | {_fmt(rec['seconds'], 1)} | {_fmt(rec.get('cpu_seconds'), 1)} | "
            f"{rec['status']} |")
    add(f"| all phases | {s['compute']['phase_seconds']:.1f} | "
        f"{s['compute']['phase_cpu_seconds']:.1f} | |")
    add(f"| this invocation (figures and report included) | "
        f"{s['compute']['total_seconds']:.1f} | {s['compute']['total_cpu_seconds']:.1f} | "
        f"{'resumed' if s['compute']['resumed'] else 'from scratch'} |")
    tr = s["compute"]["training"]
    add("")
    add(f"Training: {tr['member_images']} member-images at "
        f"{tr['member_images_per_second']:.0f} member-images/s ({tr['engine']}: "
        f"{tr['engine_reason']}; checkpoints recorded by the {tr['checkpoints_recorded_by']}). "
        f"{env['peak_memory_kind'].capitalize()}: {env['peak_memory_mib']:.0f} MiB. "
        f"Precision {r.precision}. torch {env['torch']} ({env['torch_threads']} threads, "
        f"{env['cpu_count']} CPUs, load average {env['load_average'][0]:.2f}), numpy "
        f"{env['numpy']}, scikit-learn {env['scikit-learn']}, skorch {env['skorch']}, "
        f"ensemblekit {env['ensemblekit']}, Python {env['python']}.")
    add("")
    add("## Set-up differences from the paper")
    add("")
    for line in setup_differences(r):
        add(f"- {line}")
    if r.preset == "quick":
        add("- This is the quick preset: the paper preset (CIFAR-10, MediumCNN / SmallCNN / "
            "ResNet20v1 at full scale) needs a GPU run.")
    add("")
    return "\n".join(L)


def draw_figures(r: Recipe, res: dict[str, Any], out: Path) -> dict[str, bool]:
    """The PNG figures; which were drawn."""
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, bool] = {}
    figure_similarity(r, res, out / "similarity.png")
    figures["similarity"] = True
    figure_tsne(r, tsne_embeddings(r, res), out / "tsne.png")
    figures["tsne"] = True
    figure_plane(r, res["plane"], out / "diversity_plane.png")
    figures["diversity_plane"] = True
    figure_ensemble_size(r, res["subspace"], out / "ensemble_size.png")
    figures["ensemble_size"] = True
    figure_shift(r, res["shift"], out / "shift.png")
    figures["shift"] = True
    figures["landscape"] = figure_landscape(r, res["landscape"], out / "landscape.png")
    return figures


def write_outputs(r: Recipe, summary: dict[str, Any], figures: dict[str, bool],
                  out: Path) -> None:
    """``results.json`` and ``report.md``."""
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    (out / "report.md").write_text(render_report(r, summary, figures))


def summary_table(summary: dict[str, Any]) -> str:
    """A short plain-text table of the key numbers, for the terminal."""
    r = summary["recipe"]
    curves = summary["ensemble_size"]
    sim = summary["similarity"]
    lines = [f"{r['model']} on {r['dataset']} ({r['preset']} preset): "
             + _time_line(summary["compute"]),
             f"  single-run test accuracy        {np.mean(summary['runs']['test_accuracy']):.3f}",
             f"  {r['n_runs']}-run ensemble accuracy        "
             f"{curves['original']['accuracy'][-1]:.3f}",
             f"  Brier single / ensemble         {curves['original']['brier'][0]:.3f} / "
             f"{curves['original']['brier'][-1]:.3f}",
             f"  disagreement across runs        "
             f"{_offdiag_mean(np.array(sim['across_disagreement_validation'])):.3f}",
             f"  disagreement within trajectory  {sim['within_disagreement_late_mean']:.3f}"]
    for c in summary["claims"]:
        lines.append(f"  [{_verdict(c['pass']):>4}] {c['claim']}")
        if c.get("note"):
            lines.append(f"         note: {c['note']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI
def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    fields = ", ".join(f.name for f in dataclasses.fields(Recipe))
    parser = argparse.ArgumentParser(
        prog="reproduce_paper.py",
        description="Reproduce the CIFAR experiments of Fort, Hu & Lakshminarayanan "
                    "(arXiv:1912.02757): similarity matrices, t-SNE, the diversity-accuracy "
                    "plane, ensemble-size curves, dataset shift, loss landscape and a compute "
                    "record, from one set of independent runs.",
        epilog=f"Recipe fields for --set: {fields}.",
    )
    parser.add_argument("--model", choices=MODELS, default="smallcnn",
                        help="network (default: smallcnn)")
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="data set (default: digits, bundled with scikit-learn)")
    parser.add_argument("--preset", choices=PRESETS, default="quick",
                        help="quick: scaled down, minutes on a CPU; paper: the paper's "
                             "settings (default: quick)")
    parser.add_argument("--data-home", default=None,
                        help="folder holding cifar-10-batches-py/ (CIFAR data sets)")
    parser.add_argument("--out", default="reproduction",
                        help="output folder for report.md, results.json, figures and the "
                             "cache (default: ./reproduction)")
    parser.add_argument("--device", default="auto", help="torch device (default: auto)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="training precision of the vectorised engine (default: fp32)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="number of independent runs, one seed each (default: 5)")
    parser.add_argument("--random-state", type=int, default=None,
                        help="seed from which the runs' seeds are drawn (default: 0)")
    parser.add_argument("--batches", choices=BATCHES, default=None,
                        help="permutation: every epoch a permutation of the rows; "
                             "with-replacement: every batch drawn with replacement, as in "
                             "the released notebook (default: permutation)")
    parser.add_argument("--cifar10c", default=None, metavar="DIR",
                        help="folder with the published CIFAR-10-C .npy arrays; generated "
                             "corruptions are used otherwise")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a recipe field (JSON value), e.g. --set epochs=2; "
                             "repeatable")
    parser.add_argument("--stop-after", choices=PHASES, default=None,
                        help="stop after this phase (its results cached); a rerun resumes")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes generating corruptions of large test sets")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key] = _parse_value(value)
    for key, value in (("precision", args.precision), ("n_runs", args.seeds),
                       ("random_state", args.random_state), ("batches", args.batches)):
        if value is not None:
            overrides[key] = value
    for key in ("corruptions", "lr_milestones", "lr_factors"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    try:
        recipe = make_recipe(args.model, args.dataset, args.preset, **overrides)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    summary = reproduce(recipe, args.out, data_home=args.data_home, device=args.device,
                        cifar10c=args.cifar10c, stop_after=args.stop_after,
                        workers=args.workers)
    if summary is not None:
        print()
        print(summary_table(summary))
        print(f"\nreport: {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    # Run through the importable module, so cached objects pickle as ``reproduce_paper.*``
    # and load again whether the script is run or imported.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import reproduce_paper

    raise SystemExit(reproduce_paper.main())
