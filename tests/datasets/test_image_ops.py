"""The numpy ports behind the corruptions, checked against independent references."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
from scipy import ndimage

from ensemblekit.datasets import _image_ops as ops


def test_hsv_round_trip_matches_colorsys():
    rgb = np.random.default_rng(0).random((500, 3))
    rgb[:50] = rgb[:50, :1]  # greys (zero saturation)
    rgb[50:60] = [[1.0, 1.0, 0.2]] * 10  # ties for the maximum
    hsv = ops.rgb_to_hsv(rgb)
    expected = np.array([colorsys.rgb_to_hsv(*p) for p in rgb])
    np.testing.assert_allclose(hsv, expected, atol=1e-12)
    back = np.array([colorsys.hsv_to_rgb(*p) for p in hsv])
    np.testing.assert_allclose(ops.hsv_to_rgb(hsv), back, atol=1e-12)


@pytest.mark.parametrize("factor", [1.0, 1.01, 1.04, 1.1300000000000001, 1.25, 1.75, 2.25])
def test_clipped_zoom_matches_scipy_zoom(factor):
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32)
    crop = math.ceil(32 / factor)
    top = (32 - crop) // 2
    ref = []
    for image in x:
        z = ndimage.zoom(image[top : top + crop, top : top + crop], (factor, factor, 1), order=1)
        trim = (z.shape[0] - 32) // 2
        ref.append(z[trim : trim + 32, trim : trim + 32])
    out = ops.clipped_zoom(x, factor)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.stack(ref), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["mirror", "reflect"])
def test_bilinear_sample_matches_map_coordinates(mode):
    rng = np.random.default_rng(2)
    x = rng.random((2, 16, 16, 3))
    rows = rng.uniform(-6, 22, (2, 16, 16))
    cols = rng.uniform(-6, 22, (2, 16, 16))
    out = ops.bilinear_sample(x, rows, cols, mode)
    for n in range(2):
        for c in range(3):
            ref = ndimage.map_coordinates(x[n, :, :, c], [rows[n], cols[n]], order=1, mode=mode)
            np.testing.assert_allclose(out[n, :, :, c], ref, atol=1e-12)


def test_motion_blur_of_a_dot():
    dot = np.zeros((2, 32, 32, 1), dtype=np.uint8)
    dot[:, 16, 16] = 255
    out = ops.motion_blur(dot, radius=6, sigma=1.0, angles=np.array([0.0, 90.0]))[..., 0]
    weights = np.exp(-(np.arange(13) ** 2) / 2.0)
    weights /= weights.sum()
    # Angle 0: tap i reads i columns to the right, so the trail extends to the left.
    trail = out[0, 16, 16::-1][:13].astype(int)
    assert np.abs(trail - np.floor(255 * weights)).max() <= 1
    assert out[0].sum() == out[0, 16].sum()
    # Angle 90: the trail extends upwards.
    column = out[1, 16::-1, 16][:13].astype(int)
    assert np.abs(column - np.floor(255 * weights)).max() <= 1
    assert out[1].sum() == out[1, :, 16].sum()


def test_motion_blur_keeps_constants_and_replicates_edges():
    flat = np.full((3, 8, 8, 3), 200, dtype=np.uint8)
    out = ops.motion_blur(flat, radius=9, sigma=2.5, angles=np.array([-45.0, 10.0, 44.0]))
    np.testing.assert_array_equal(out, flat)


def test_canny_step_edge():
    step = np.zeros((1, 16, 16), dtype=np.uint8)
    step[:, :, 8:] = 200
    edges = ops.canny(step, 50, 150)
    # Sobel responds equally on both sides of the step; non-maximum suppression keeps the
    # left one (ties go to the right neighbour, the comparison to the left is strict).
    assert set(np.unique(edges)) == {0, 255}
    np.testing.assert_array_equal(np.nonzero(edges[0])[1], np.full(16, 7))
    weak = ops.canny(step // 8, 50, 150)  # magnitude 4 * 25 = 100 < high threshold
    assert not weak.any()


def test_canny_hysteresis_links_weak_to_strong():
    img = np.zeros((1, 16, 16), dtype=np.uint8)
    img[:, :, 8:] = 30  # magnitude 120: between the thresholds
    img[:, :3, 8:] = 60  # magnitude 240 in the top rows: strong
    edges = ops.canny(img, 50, 150)
    # The weak edge below (rows 4-15) survives through its connection to the strong part.
    assert edges[0, 4:, 7].all() and edges[0, :2, 7].all()
    isolated = np.zeros((1, 16, 16), dtype=np.uint8)
    isolated[:, :, 8:] = 30
    assert not ops.canny(isolated, 50, 150).any()


def test_chamfer_distance_of_a_point():
    img = np.full((1, 9, 9), 255, dtype=np.uint8)
    img[0, 4, 4] = 0
    d = ops.distance_transform_l2_5x5(img)[0]
    assert d.dtype == np.float32
    for (r, c), expected in {
        (4, 4): 0.0,
        (4, 5): 1.0,
        (5, 5): 1.4,
        (5, 6): 2.1969,
        (4, 6): 2.0,
        (6, 6): 2.8,
        (0, 0): 5.6,
    }.items():
        assert d[r, c] == pytest.approx(expected, abs=1e-4), (r, c)  # 16-bit fixed point
    np.testing.assert_array_equal(d, d.T)  # symmetric about the source
    np.testing.assert_array_equal(d, d[::-1, ::-1])


def test_chamfer_distance_close_to_euclidean():
    img = np.full((1, 32, 32), 255, dtype=np.uint8)
    img[0, 3, 5] = img[0, 25, 20] = 0
    r, c = np.mgrid[0:32, 0:32]
    exact = np.minimum(np.hypot(r - 3, c - 5), np.hypot(r - 25, c - 20))
    d = ops.distance_transform_l2_5x5(img)[0]
    assert np.abs(d - exact).max() < 0.03 * exact.max()


def test_equalize_hist():
    two = np.zeros((1, 4, 4), dtype=np.uint8)
    two[0, :2] = 10
    two[0, 2:] = 90
    out = ops.equalize_hist(two)
    assert set(np.unique(out)) == {0, 255}
    np.testing.assert_array_equal(out[0, :2], 0)
    flat = np.full((1, 4, 4), 7, dtype=np.uint8)
    np.testing.assert_array_equal(ops.equalize_hist(flat), flat)
    rng = np.random.default_rng(0)
    img = rng.integers(20, 60, (2, 32, 32)).astype(np.uint8)
    eq = ops.equalize_hist(img)
    for a, b in zip(img, eq):  # monotone map onto the full range
        order = np.argsort(a, axis=None, kind="stable")
        assert np.all(np.diff(b.ravel()[order].astype(int)) >= 0)
        assert b.min() == 0 and b.max() == 255


def test_box_blur_and_filter2d_borders():
    img = np.arange(16, dtype=np.uint8).reshape(1, 4, 4) * 10
    blurred = ops.box_blur3(img)
    # Reflect-101 border: the corner's neighbourhood is rows/cols (1, 0, 1).
    corner = np.array([[50, 40, 50], [10, 0, 10], [50, 40, 50]]).mean()
    assert blurred[0, 0, 0] == round(corner)
    assert blurred[0, 1, 1] == round(img[0, :3, :3].mean())
    ident = ops.filter2d_u8(img, [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(ident, img)
    assert ops.filter2d_u8(img, [[0, 0, 0], [0, 10, 0], [0, 0, 0]]).max() == 255


def test_plasma_fractal():
    rng = np.random.default_rng(0)
    maps = ops.plasma_fractal(3, 32, 2.0, rng)
    assert maps.shape == (3, 32, 32)
    np.testing.assert_allclose(maps.min(axis=(1, 2)), 0)
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1)
    smoother = ops.plasma_fractal(20, 32, 3.0, np.random.default_rng(1))
    rougher = ops.plasma_fractal(20, 32, 1.5, np.random.default_rng(1))
    # Faster amplitude decay leaves less fine detail.
    assert np.abs(np.diff(smoother, axis=2)).mean() < np.abs(np.diff(rougher, axis=2)).mean()
    with pytest.raises(ValueError, match="power of two"):
        ops.plasma_fractal(1, 30, 2.0, rng)
