"""random_crop_flip / Augmenter: shapes, determinism, flips, zero-filled shifts."""

from __future__ import annotations

import pytest
import torch

from ensemblekit.datasets import Augmenter, random_crop_flip


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[r, c] = x[r + dy, c + dx], zero where that falls outside (independent of the
    library: built by slicing)."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    rs, re = max(0, -dy), min(h, h - dy)
    cs, ce = max(0, -dx), min(w, w - dx)
    out[..., rs:re, cs:ce] = x[..., rs + dy : re + dy, cs + dx : ce + dx]
    return out


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(123)
    return torch.rand(64, 3, 8, 8, generator=g) + 0.5  # strictly positive: zeros mark fill


def test_shape_dtype_and_input_untouched(batch):
    before = batch.clone()
    out = random_crop_flip(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert torch.equal(batch, before)
    u8 = (batch * 100).to(torch.uint8)
    assert random_crop_flip(u8, torch.Generator().manual_seed(0)).dtype == torch.uint8


def test_deterministic_for_seeded_generator(batch):
    a = random_crop_flip(batch, torch.Generator().manual_seed(7))
    b = random_crop_flip(batch, torch.Generator().manual_seed(7))
    c = random_crop_flip(batch, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_flip_only(batch):
    out = random_crop_flip(batch, torch.Generator().manual_seed(0), padding=0, flip=True)
    same = (out == batch).flatten(1).all(1)
    mirrored = (out == batch.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all()
    assert 10 < mirrored.sum() < 54  # about half of 64


def test_crop_is_a_zero_filled_shift(batch):
    p = 2
    out = random_crop_flip(batch, torch.Generator().manual_seed(1), padding=p, flip=False)
    seen = set()
    for x, y in zip(batch, out):
        matches = [
            (dy, dx)
            for dy in range(-p, p + 1)
            for dx in range(-p, p + 1)
            if torch.equal(y, shifted(x, dy, dx))
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 15  # many of the 25 shifts occur


def test_all_shifts_occur_uniformly():
    x = torch.ones(4000, 1, 3, 3)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=1, flip=False)
    # With padding 1 on a 3x3 image of ones, the number of surviving ones identifies the
    # shift class: 9 (none), 6 (one axis), 4 (both axes).
    kept = out.sum(dim=(1, 2, 3))
    frac = {k: (kept == k).float().mean().item() for k in (9, 6, 4)}
    assert frac[9] == pytest.approx(1 / 9, abs=0.02)
    assert frac[6] == pytest.approx(4 / 9, abs=0.03)
    assert frac[4] == pytest.approx(4 / 9, abs=0.03)


def test_identity_settings(batch):
    out = random_crop_flip(batch, torch.Generator(), padding=0, flip=False)
    assert torch.equal(out, batch)


def test_channels_last_is_kept(batch):
    x = batch.contiguous(memory_format=torch.channels_last)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.is_contiguous(memory_format=torch.channels_last)
    ref = random_crop_flip(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out, ref)


def test_global_rng_when_no_generator(batch):
    torch.manual_seed(5)
    a = random_crop_flip(batch)
    torch.manual_seed(5)
    assert torch.equal(a, random_crop_flip(batch))


def test_augmenter_matches_function(batch):
    aug = Augmenter(padding=3, flip=False)
    assert repr(aug) == "Augmenter(padding=3, flip=False)"
    assert aug == Augmenter(3, False) and aug != Augmenter(3, True)
    a = aug(batch, torch.Generator().manual_seed(2))
    b = random_crop_flip(batch, torch.Generator().manual_seed(2), padding=3, flip=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("padding", [-1, 1.5, True])
def test_bad_padding(padding, batch):
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(batch, padding=padding)
    with pytest.raises(ValueError, match="padding"):
        Augmenter(padding=padding)


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop_flip(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop_flip([[1.0]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_generator_on_other_device(batch):
    with pytest.raises(ValueError, match="same device"):
        random_crop_flip(batch.cuda(), torch.Generator())
