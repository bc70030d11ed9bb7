"""CIFAR-10-C corruptions: contract, determinism, severity ordering and known values."""

from __future__ import annotations

import colorsys
import itertools
import sys

import numpy as np
import pytest
from sklearn.datasets import load_sample_image

from ensemblekit.datasets import CORRUPTIONS, corrupt

STOCHASTIC = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "fog",
    "elastic_transform",
    "spatter",
}
# Mean absolute change grows with severity by construction of the parameters.
MONOTONIC = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "defocus_blur",
    "zoom_blur",
    "snow",
    "fog",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
    "gaussian_blur",
}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Twelve natural 32x32 patches from scikit-learn's bundled photographs."""
    patches = []
    for name in ("china.jpg", "flower.jpg"):
        photo = load_sample_image(name).astype(np.float64)
        small = photo[:424, :640].reshape(106, 4, 160, 4, 3).mean(axis=(1, 3))
        for top, left in [(0, 0), (37, 60), (70, 120), (10, 100), (60, 10), (74, 128)]:
            patches.append(small[top : top + 32, left : left + 32])
    return np.stack(patches).round().astype(np.uint8).transpose(0, 3, 1, 2).copy()


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_implemented_names():
    assert len(CORRUPTIONS) == 18 and len(set(CORRUPTIONS)) == 18
    assert "frost" not in CORRUPTIONS
    assert CORRUPTIONS[:3] == ("gaussian_noise", "shot_noise", "impulse_noise")


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_contract(corruption, images):
    before = images.copy()
    out = {s: corrupt(images, corruption, s, random_state=0) for s in range(1, 6)}
    np.testing.assert_array_equal(images, before)  # input untouched
    for s, o in out.items():
        assert o.shape == images.shape and o.dtype == np.uint8, s
        assert not np.array_equal(o, images), s
    again = corrupt(images, corruption, 3, random_state=0)
    np.testing.assert_array_equal(again, out[3])
    other = corrupt(images, corruption, 3, random_state=1)
    assert (not np.array_equal(other, out[3])) == (corruption in STOCHASTIC)
    # A single image is accepted and treated like a batch of one.
    single = corrupt(images[0], corruption, 3, random_state=0)
    assert single.shape == (3, 32, 32)
    if corruption not in STOCHASTIC:
        np.testing.assert_array_equal(single, out[3][0])
    changes = [mad(out[s], images) for s in range(1, 6)]
    if corruption in MONOTONIC:
        assert all(a < b for a, b in itertools.pairwise(changes)), changes


def test_glass_blur_more_iterations_change_more(images):
    change = {
        s: mad(corrupt(images, "glass_blur", s, random_state=0), images) for s in (2, 3, 4, 5)
    }
    # Severities 4 and 5 repeat the shuffle of 2 and 3 (same sigma) twice.
    assert change[4] > change[2] and change[5] > change[3]


def test_glass_blur_severity_one_only_copies_up_left_neighbours(images):
    out = corrupt(images, "glass_blur", 1, random_state=3).transpose(0, 2, 3, 1)
    src = images.transpose(0, 2, 3, 1)
    # sigma 0.05 blurs nothing; rows and columns 0 and 1 are never targets.
    np.testing.assert_array_equal(out[:, :2], src[:, :2])
    np.testing.assert_array_equal(out[:, :, :2], src[:, :, :2])
    candidates = np.stack([src[:, 2:, 2:], src[:, 1:-1, 2:], src[:, 2:, 1:-1], src[:, 1:-1, 1:-1]])
    match = (candidates == out[None, :, 2:, 2:]).all(axis=-1).any(axis=0)
    assert match.all()
    assert (out[:, 2:, 2:] != src[:, 2:, 2:]).any(axis=-1).mean() > 0.3


def test_motion_blur_and_spatter_order(images):
    motion = [mad(corrupt(images, "motion_blur", s, random_state=0), images) for s in range(1, 6)]
    # Severities 3 and 4 differ only in kernel width (sigma 2 makes the extra taps ~1e-8).
    assert motion[0] < motion[1] < motion[2] < motion[4]
    assert motion[3] == pytest.approx(motion[2], abs=0.05)
    spatter = [mad(corrupt(images, "spatter", s, random_state=0), images) for s in range(1, 6)]
    # Severities 1-3 are water, 4-5 mud: each kind grows with severity.
    assert spatter[0] < spatter[1] < spatter[2] and spatter[3] < spatter[4]


def mean_saturation(images: np.ndarray) -> float:
    rgb = images.transpose(0, 2, 3, 1).reshape(-1, 3) / 255.0
    return float(np.mean([colorsys.rgb_to_hsv(*p)[1] for p in rgb[::7]]))


def test_saturate_desaturates_then_saturates(images):
    sat = [mean_saturation(corrupt(images, "saturate", s)) for s in range(1, 6)]
    clean = mean_saturation(images)
    # Multipliers 0.3, 0.1, 1.5, 2 (+0.1), 2.5 (+0.2).
    assert sat[1] < sat[0] < clean < sat[2] < sat[3] < sat[4]


def test_elastic_severity_one_is_an_affine_warp():
    # On an affine ramp, bilinear sampling through an affine map stays affine, so second
    # differences vanish (up to the floor of each value); the elastic field of severity 5
    # bends the ramp.
    r, c = np.mgrid[0:32, 0:32]
    ramp = (40 + 3 * r + 2 * c).astype(np.uint8)
    image = np.stack([ramp, ramp, ramp])[None]
    centre = np.s_[:, 0, 8:24, 8:24]
    for seed in range(3):
        mild = corrupt(image, "elastic_transform", 1, random_state=seed)[centre].astype(int)
        assert np.abs(np.diff(mild, 2, axis=-1)).max() <= 2
        assert not np.array_equal(mild, image[centre])
    strong = corrupt(image, "elastic_transform", 5, random_state=0)[centre].astype(int)
    assert np.abs(np.diff(strong, 2, axis=-1)).max() > 2


CONSTANT_PRESERVING = [
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "gaussian_blur",
    "elastic_transform",
    "pixelate",
]


@pytest.mark.parametrize("corruption", CONSTANT_PRESERVING)
def test_constant_image_is_unchanged(corruption):
    image = np.full((2, 3, 32, 32), 97, dtype=np.uint8)
    image[1] = np.array([10, 200, 120], dtype=np.uint8)[:, None, None]
    for s in (1, 5):
        np.testing.assert_array_equal(corrupt(image, corruption, s, random_state=0), image)


def test_float_rounding_can_floor_constant_images_by_one():
    # x -> (x - mean) * c + mean can land a hair below x; the floor then gives x - 1, as
    # in the original generator.
    image = np.full((1, 3, 32, 32), 97, dtype=np.uint8)
    for corruption in ("zoom_blur", "jpeg_compression", "contrast"):
        out = corrupt(image, corruption, 5).astype(int)
        assert np.abs(out - 97).max() <= 1


def test_gaussian_noise_statistics():
    grey = np.full((4, 3, 32, 32), 128, dtype=np.uint8)
    diff = corrupt(grey, "gaussian_noise", 5, random_state=0).astype(float) - 128
    assert diff.std() == pytest.approx(0.10 * 255, rel=0.03)
    assert diff.mean() == pytest.approx(-0.5, abs=0.6)  # floor, not round


def test_shot_noise_statistics():
    grey = np.full((4, 3, 32, 32), 128, dtype=np.uint8)
    out = corrupt(grey, "shot_noise", 5, random_state=0).astype(float)
    # Poisson(50 * x) / 50 has standard deviation sqrt(x / 50).
    assert out.std() == pytest.approx(np.sqrt(128 / 255 / 50) * 255, rel=0.05)


def test_impulse_noise_per_channel_value():
    grey = np.full((8, 3, 32, 32), 128, dtype=np.uint8)
    out = corrupt(grey, "impulse_noise", 5, random_state=0)
    changed = out != 128
    assert changed.mean() == pytest.approx(0.07, abs=0.01)
    assert set(np.unique(out[changed])) == {0, 255}
    assert (out[changed] == 255).mean() == pytest.approx(0.5, abs=0.06)
    # Channels are hit independently: most hit pixels change in one channel only.
    per_pixel = changed.sum(axis=1)
    assert (per_pixel == 1).sum() > 5 * (per_pixel >= 2).sum()


def test_defocus_kernels():
    dot = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    dot[:, :, 16, 16] = 255
    box = corrupt(dot, "defocus_blur", 5)[0, 0]  # radius 1.5: a 3x3 box of 1/9
    assert np.abs(box[15:18, 15:18].astype(int) - 255 / 9).max() <= 1
    assert box.sum() - box[15:18, 15:18].sum() == 0
    plus = corrupt(dot, "defocus_blur", 4)[0, 0].astype(int)  # radius 1: 5-pixel plus
    for r, c in [(16, 16), (15, 16), (17, 16), (16, 15), (16, 17)]:
        assert abs(plus[r, c] - 51) <= 1
    assert plus[15, 15] == 0
    centre = corrupt(dot, "defocus_blur", 1)[0, 0, 16, 16]  # 3x3 Gaussian, centre 0.845
    assert abs(int(centre) - 0.845 * 255) <= 1.5


def test_brightness_and_saturate_known_values():
    black = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    assert np.all(corrupt(black, "brightness", 1) == 12)  # V = 0.05 -> floor(12.75)
    assert np.all(corrupt(black, "brightness", 5) == 76)  # V = 0.3 -> floor(76.5)
    grey = np.full((1, 3, 32, 32), 200, dtype=np.uint8)
    for s in (1, 2, 3):  # S = 0 stays 0
        np.testing.assert_array_equal(corrupt(grey, "saturate", s), grey)
    tinted = corrupt(grey, "saturate", 4)  # S = 0.1 at hue 0 (red)
    assert tuple(tinted[0, :, 0, 0]) == (200, 180, 180)


def test_contrast_keeps_channel_means():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    out = corrupt(img, "contrast", 5).astype(float)
    np.testing.assert_allclose(out.mean(axis=(2, 3)), img.mean(axis=(2, 3)), atol=0.6)
    assert out.std() < 0.2 * img.std()


def test_snow_only_brightens(images):
    for s in (1, 5):
        out = corrupt(images, "snow", s, random_state=0).astype(int)
        assert (out >= images.astype(int) - 1).all()


def test_pixelate_blocks():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 3, 32, 32), dtype=np.uint8)
    out = corrupt(img, "pixelate", 5)  # 32 -> 20 -> 32 pixels
    assert len(np.unique(out[0, 0], axis=0)) <= 32
    assert mad(out, img) > 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"corruption": "blur"}, "gaussian_noise, shot_noise"),
        ({"corruption": "frost"}, "not implemented"),
        ({"severity": 0}, "severity"),
        ({"severity": 6}, "severity"),
        ({"severity": 2.0}, "severity"),
        ({"severity": True}, "severity"),
        ({"images": np.zeros((2, 3, 32, 32), np.float32)}, "uint8"),
        ({"images": np.zeros((2, 32, 32, 3), np.uint8)}, r"\(N, 3, 32, 32\)"),
        ({"images": np.zeros((3, 28, 28), np.uint8)}, r"\(3, 32, 32\)"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"images": np.zeros((1, 3, 32, 32), np.uint8), "corruption": "fog", "severity": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        corrupt(**args)


def test_never_touches_global_rng(images):
    np.random.seed(0)
    expected = np.random.random(3)
    np.random.seed(0)
    for name in ("gaussian_noise", "fog", "snow", "glass_blur"):
        corrupt(images[:2], name, 3)
    np.testing.assert_array_equal(np.random.random(3), expected)


def test_missing_pillow_is_explained(monkeypatch, images):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match="pip install pillow"):
        corrupt(images, "pixelate", 1)
