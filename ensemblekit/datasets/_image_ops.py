"""Batched image operations behind the CIFAR-10-C corruptions.

Numpy/scipy ports of the few ImageMagick, OpenCV and scikit-image routines that the original
corruption script relies on. All functions work on a batch axis first and never touch a
global random state. Images are ``(N, H, W, C)`` (channels last, as in the original code)
unless a docstring says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# --------------------------------------------------------------------------- colour space


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """Hexcone HSV of RGB values in [0, 1] (last axis), all components in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    s = np.divide(delta, v, out=np.zeros_like(v), where=v > 0)
    safe = np.where(delta > 0, delta, 1.0)
    hue = np.where(
        b == v, 4.0 + (r - g) / safe, np.where(g == v, 2.0 + (b - r) / safe, (g - b) / safe)
    )
    hue = np.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
    return np.stack([hue, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.astype(np.int64) % 6
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    # Which of (v, p, q, t) is R, G and B in each of the six hue sectors.
    candidates = (v, p, q, t)
    return np.stack(
        [np.choose(_SECTOR_PICK[channel][sector], candidates) for channel in range(3)], axis=-1
    )


_SECTOR_PICK = np.array([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])


# --------------------------------------------------------------------------- geometry


def _zoom_taps(side: int, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights along one axis of :func:`clipped_zoom`.

    Output index ``o`` reads the centred crop at coordinate ``(o + trim) * (crop - 1) /
    (out - 1)`` (the corner-aligned grid of ``scipy.ndimage.zoom(order=1)``), linearly
    interpolated between indices ``lo`` and ``hi`` of the full image with weight ``frac``
    on ``hi``.
    """
    crop = math.ceil(side / factor)
    top = (side - crop) // 2
    out_side = round(crop * factor)
    trim = (out_side - side) // 2
    step = (crop - 1) / (out_side - 1) if out_side > 1 else 0.0
    coord = (np.arange(side) + trim) * step
    lo = np.minimum(np.floor(coord).astype(np.int64), crop - 1)
    hi = np.minimum(lo + 1, crop - 1)
    return top + lo, top + hi, coord - lo


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre of square images ``(N, S, S, C)`` by ``factor``, keeping size.

    Crops the centred ``ceil(S / factor)`` square (offset rounded down), upsamples it
    linearly to side ``round(crop * factor)`` on the corner-aligned grid of
    ``scipy.ndimage.zoom(order=1)`` and trims the excess symmetrically (rounded down).
    Computed in float64, rows first; the result has the dtype of ``x``.
    """
    lo, hi, frac = _zoom_taps(x.shape[1], factor)
    y = x.astype(np.float64, copy=False)
    w = frac[None, :, None, None]
    y = y[:, lo] * (1.0 - w) + y[:, hi] * w
    w = frac[None, None, :, None]
    y = y[:, :, lo] * (1.0 - w) + y[:, :, hi] * w
    return y.astype(x.dtype, copy=False)


def plasma_fractal(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height maps on a torus, ``(n, size, size)`` scaled to [0, 1].

    Starts from a zero corner and a step of ``size``; at each level the cell centres, then
    the horizontal edge midpoints, then the vertical ones get the mean of their four
    neighbours (wrapping around) plus ``w * U(-w, w)``; then the step halves and ``w``, which
    starts at 100, is divided by ``decay``. Each map is finally shifted and scaled to [0, 1].
    """
    if size & (size - 1):
        raise ValueError(f"size must be a power of two, got {size}.")
    grid = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        return total / 4.0 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[:, ::step, ::step]
        around = corners + np.roll(corners, -1, axis=1)
        around = around + np.roll(around, -1, axis=2)
        grid[:, half::step, half::step] = noisy_mean(around)
        centres = grid[:, half::step, half::step]
        corners = grid[:, ::step, ::step]
        # Midpoints of horizontal edges: centres above and below, corners left and right.
        grid[:, ::step, half::step] = noisy_mean(
            centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        )
        # Midpoints of vertical edges: centres left and right, corners above and below.
        grid[:, half::step, ::step] = noisy_mean(
            centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        )
        step = half
        wibble /= decay
    grid -= grid.min(axis=(1, 2), keepdims=True)
    return grid / grid.max(axis=(1, 2), keepdims=True)


def _extend_index(index: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map integer indices outside ``0 .. n-1`` back inside, as a border extension does."""
    if mode == "mirror":  # d c b | a b c d | c b a  (reflect-101)
        period = 2 * n - 2
        index = np.abs(index) % period if period else np.zeros_like(index)
        return np.where(index >= n, period - index, index)
    if mode == "reflect":  # c b a | a b c d | d c b  (half-sample symmetric)
        period = 2 * n
        index = index % period
        return np.where(index >= n, period - 1 - index, index)
    raise ValueError(f"unknown border mode {mode!r}")


def bilinear_sample(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Sample images ``(N, H, W, C)`` at per-image positions ``(N, H', W')``, all channels.

    Linear interpolation of the image extended beyond its border by ``mode`` ("mirror":
    reflect-101, "reflect": half-sample symmetric), computed in float64 and returned in the
    dtype of ``x``.
    """
    n, h, w, _ = x.shape
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    fr = (rows - r0)[..., None]
    fc = (cols - c0)[..., None]
    ra, rb = _extend_index(r0, h, mode), _extend_index(r0 + 1, h, mode)
    ca, cb = _extend_index(c0, w, mode), _extend_index(c0 + 1, w, mode)
    batch = np.arange(n).reshape((n,) + (1,) * (rows.ndim - 1))
    src = x.astype(np.float64, copy=False)
    top = src[batch, ra, ca] * (1.0 - fc) + src[batch, ra, cb] * fc
    bottom = src[batch, rb, ca] * (1.0 - fc) + src[batch, rb, cb] * fc
    return (top * (1.0 - fr) + bottom * fr).astype(x.dtype, copy=False)


# --------------------------------------------------------------------------- motion blur


def motion_blur(images: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's ``MotionBlurImage`` on uint8 images ``(N, H, W, C)``, one angle each.

    The kernel has width ``2 * ceil(radius) + 1`` and one-sided Gaussian weights
    ``exp(-i**2 / (2 sigma**2))``, ``i = 0 .. width - 1``, normalised to sum 1. Tap ``i``
    reads the pixel ``(ceil(i sin a - 0.5), ceil(i cos a - 0.5))`` rows/columns away (rows
    grow downwards), with edge replication outside the image. The 8-bit result is
    ``floor(round(257 v) / 257)`` of the exact weighted sum ``v``, which is how a 16-bit
    ImageMagick build writes an 8-bit file.

    Parameters
    ----------
    images : ndarray of uint8, shape (N, H, W, C)
    radius, sigma : float
        ImageMagick's radius and sigma.
    angles : ndarray of shape (N,)
        Direction of the trail of each image, in degrees.
    """
    n, h, w, _ = images.shape
    width = 2 * math.ceil(radius) + 1
    taps = np.arange(width)
    weights = np.exp(-(taps**2) / (2.0 * sigma * sigma))
    weights /= weights.sum()
    theta = np.deg2rad(np.asarray(angles, dtype=np.float64))[:, None]
    dx = np.ceil(taps * np.cos(theta) - 0.5).astype(np.int64)
    dy = np.ceil(taps * np.sin(theta) - 0.5).astype(np.int64)
    batch = np.arange(n)[:, None, None]
    total = np.zeros(images.shape, dtype=np.float64)
    for i in range(width):
        rows = np.clip(np.arange(h)[None, :] + dy[:, i, None], 0, h - 1)
        cols = np.clip(np.arange(w)[None, :] + dx[:, i, None], 0, w - 1)
        total += weights[i] * images[batch, rows[:, :, None], cols[:, None, :]]
    return np.floor(np.round(257.0 * total) / 257.0).astype(np.uint8)


# --------------------------------------------------------------------------- OpenCV ports


def _pad_edge(x: np.ndarray, k: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (k, k), (k, k)), mode="edge")


def canny(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """OpenCV ``Canny(image, low, high)`` (3x3 Sobel, L1 gradient) on uint8 ``(N, H, W)``.

    Sobel derivatives with replicated borders; magnitude ``|dx| + |dy|``; non-maximum
    suppression along the gradient direction quantised by tan(22.5 deg) in OpenCV's
    fixed point (ties resolved towards the right/lower neighbour, magnitudes outside the
    image are 0); then hysteresis: pixels above ``high`` and every 8-connected pixel above
    ``low`` linked to them. Returns a uint8 edge map (255 on edges, else 0).
    """
    n, h, w = images.shape
    p = _pad_edge(images.astype(np.int32), 1)

    def at(dr: int, dc: int) -> np.ndarray:
        return p[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    mag = np.abs(gx) + np.abs(gy)
    m = np.pad(mag, ((0, 0), (1, 1), (1, 1)))  # zero magnitude outside the image

    def nb(dr: int, dc: np.ndarray | int) -> np.ndarray:
        if isinstance(dc, np.ndarray):  # per-pixel column offset (diagonal case)
            rows = np.arange(h)[None, :, None] + 1 + dr
            cols = np.arange(w)[None, None, :] + 1 + dc
            return m[np.arange(n)[:, None, None], rows, cols]
        return m[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]

    ax = np.abs(gx).astype(np.int64)
    ay = np.abs(gy).astype(np.int64) << 15
    tg22 = ax * 13573  # round(tan(22.5 deg) * 2**15)
    tg67 = tg22 + (ax << 16)
    horizontal = ay < tg22
    vertical = ~horizontal & (ay > tg67)
    s = np.where((gx ^ gy) < 0, -1, 1)
    keep = np.where(
        horizontal,
        (mag > nb(0, -1)) & (mag >= nb(0, 1)),
        np.where(
            vertical,
            (mag > nb(-1, 0)) & (mag >= nb(1, 0)),
            (mag > nb(-1, -s)) & (mag > nb(1, s)),
        ),
    )
    candidate = keep & (mag > math.floor(low))
    strong = candidate & (mag > math.floor(high))
    # Hysteresis = 8-connected components of candidates that contain a strong pixel,
    # with no connection across the batch axis.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labels, count = ndimage.label(candidate, structure=structure)
    linked = np.zeros(count + 1, dtype=bool)
    linked[np.unique(labels[strong])] = True
    linked[0] = False
    return np.where(linked[labels], 255, 0).astype(np.uint8)


_DIST_SHIFT = 16
_HV = round(1.0 * (1 << _DIST_SHIFT))
_DIAG = round(1.4 * (1 << _DIST_SHIFT))
_LONG = round(2.1969 * (1 << _DIST_SHIFT))
_FAR = 1 << 40


def distance_transform_l2_5x5(images: np.ndarray) -> np.ndarray:
    """OpenCV ``distanceTransform(image, DIST_L2, 5)`` on ``(N, H, W)``: a 5x5 chamfer.

    Distance from each non-zero pixel to the nearest zero pixel with the chamfer weights
    1 (horizontal/vertical), 1.4 (diagonal) and 2.1969 (knight's move) in OpenCV's 16-bit
    fixed point; one forward and one backward raster pass; nothing outside the image is a
    source. Returns float32.
    """
    n, h, w = images.shape
    big = np.full((n, h + 4, w + 4), _FAR, dtype=np.int64)
    source = images == 0
    cols = np.arange(w, dtype=np.int64)
    hv_ramp = cols * _HV
    for i in range(h):
        r = i + 2
        row = big[:, r - 1]
        above = big[:, r - 2]
        best = np.minimum.reduce(
            [
                above[:, 1 : w + 1] + _LONG,  # (-2, -1)
                above[:, 3 : w + 3] + _LONG,  # (-2, +1)
                row[:, 0:w] + _LONG,  # (-1, -2)
                row[:, 1 : w + 1] + _DIAG,  # (-1, -1)
                row[:, 2 : w + 2] + _HV,  # (-1, 0)
                row[:, 3 : w + 3] + _DIAG,  # (-1, +1)
                row[:, 4 : w + 4] + _LONG,  # (-1, +2)
            ]
        )
        best = np.where(source[:, i], 0, best)
        # The left neighbour (0, -1) chains along the row: a running minimum of
        # best[k] + (j - k) * HV over k <= j.
        best = np.minimum.accumulate(best - hv_ramp, axis=1) + hv_ramp
        big[:, r, 2 : w + 2] = best
    for i in range(h - 1, -1, -1):
        r = i + 2
        row = big[:, r + 1]
        below = big[:, r + 2]
        best = np.minimum.reduce(
            [
                big[:, r, 2 : w + 2],
                below[:, 3 : w + 3] + _LONG,  # (+2, +1)
                below[:, 1 : w + 1] + _LONG,  # (+2, -1)
                row[:, 4 : w + 4] + _LONG,  # (+1, +2)
                row[:, 3 : w + 3] + _DIAG,  # (+1, +1)
                row[:, 2 : w + 2] + _HV,  # (+1, 0)
                row[:, 1 : w + 1] + _DIAG,  # (+1, -1)
                row[:, 0:w] + _LONG,  # (+1, -2)
            ]
        )
        # The right neighbour (0, +1) chains along the row from the right.
        rev = best[:, ::-1] - hv_ramp
        best = (np.minimum.accumulate(rev, axis=1) + hv_ramp)[:, ::-1]
        big[:, r, 2 : w + 2] = best
    dist = big[:, 2 : h + 2, 2 : w + 2]
    return (dist.astype(np.float32) * np.float32(1.0 / (1 << _DIST_SHIFT))).astype(np.float32)


def box_blur3(x: np.ndarray) -> np.ndarray:
    """OpenCV ``blur(x, (3, 3))`` on ``(N, H, W)`` (mirror border without repeating the edge).

    uint8 input gives uint8 output rounded to nearest; float32 input gives float32.
    """
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1)), mode="reflect")
    h, w = x.shape[1:]
    total = sum(padded[:, r : r + h, c : c + w] for r in range(3) for c in range(3))
    mean = total * (1.0 / 9.0)
    if x.dtype == np.uint8:
        return np.clip(np.rint(mean), 0, 255).astype(np.uint8)
    return mean.astype(np.float32)


def equalize_hist(images: np.ndarray) -> np.ndarray:
    """OpenCV ``equalizeHist`` on uint8 ``(N, H, W)``, one histogram per image."""
    n = images.shape[0]
    flat = images.reshape(n, -1)
    total = flat.shape[1]
    hist = np.stack([np.bincount(row, minlength=256) for row in flat])
    first = np.argmax(hist > 0, axis=1)
    first_count = hist[np.arange(n), first]
    cum = np.cumsum(hist, axis=1) - first_count[:, None]
    denom = np.maximum(total - first_count, 1).astype(np.float32)
    scale = np.float32(255.0) / denom
    lut = np.clip(np.rint(cum.astype(np.float32) * scale[:, None]), 0, 255).astype(np.uint8)
    out = np.take_along_axis(lut, flat.astype(np.int64), axis=1).reshape(images.shape)
    constant = first_count == total
    out[constant] = first[constant, None, None].astype(np.uint8)
    return out


def filter2d_u8(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """OpenCV ``filter2D(images, CV_8U, kernel)`` (3x3 correlation, mirror border, saturation)."""
    kernel = np.asarray(kernel, dtype=np.float64)
    out = ndimage.correlate(images.astype(np.float64), kernel[None], mode="mirror")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
