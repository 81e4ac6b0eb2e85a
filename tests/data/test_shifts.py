"""Acquisition shifts, input normalisation and the stage-2 crop: shapes, ranges, and the properties relied on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrseg.data.normalize import equalize, normalize_input
from cxrseg.data.roi import crop_resize, lung_box, paste_back
from cxrseg.data.shifts import BENCHMARK_SHIFTS, FRAMING_SHIFTS, RandAcquisitionShift, framing, gamma, window


@pytest.fixture()
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:80] / 96.0
    return np.clip(0.2 + 0.5 * x + 0.2 * y + 0.05 * rng.standard_normal((96, 80)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("name", sorted(BENCHMARK_SHIFTS))
def test_each_shift_keeps_shape_and_range_and_changes_the_image(name, image):
    out = BENCHMARK_SHIFTS[name](image, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, image)


@pytest.mark.parametrize("zoom", sorted(FRAMING_SHIFTS.values()))
def test_framing_enlarges_the_centre_and_keeps_masks_aligned(zoom, image):
    out = framing(image, zoom)
    assert out.shape == image.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    mask = np.zeros(image.shape, bool)
    mask[40:56, 30:50] = True
    framed = framing(mask, zoom, nearest=True)
    assert framed.dtype == bool and framed.sum() > mask.sum()
    np.testing.assert_array_equal(framing(mask.astype(np.float32), zoom) > 0.5, framed)  # image and mask agree
    # the centre pixel stays put; the edges leave the frame
    assert framed[48, 40] and not framed[:, :5].any()
    with pytest.raises(ValueError, match="zoom"):
        framing(image, 0.9)


def test_equalisation_is_blind_to_monotone_tone_changes(image):
    """What makes it the input normalisation: gamma and a window leave the equalised image nearly unchanged."""
    base = equalize(image)
    for shifted in (gamma(image, 0.6), gamma(image, 1.6), window(image, 0.1, 0.9)):
        assert np.abs(equalize(shifted) - base).mean() < 0.03
    assert np.abs(gamma(image, 0.6) - image).mean() > 0.1  # the shifts themselves are large
    stacked = normalize_input(np.stack([image, image]), "equalize")
    np.testing.assert_allclose(stacked[1], base)
    np.testing.assert_array_equal(normalize_input(image, "none"), image)
    with pytest.raises(ValueError):
        normalize_input(image, "zscore")


def test_random_shift_is_reproducible_and_sometimes_identity(image):
    a, b = RandAcquisitionShift(prob=0.6, seed=3), RandAcquisitionShift(prob=0.6, seed=3)
    outs = [a(image) for _ in range(20)]
    for o, p in zip(outs, (b(image) for _ in range(20))):
        np.testing.assert_array_equal(o, p)
    assert any(o is image for o in outs) and any(o is not image for o in outs)


def test_lung_box_crop_and_paste_back_round_trip():
    lung = np.zeros((100, 120), bool)
    lung[20:70, 30:100] = True
    box = lung_box(lung, 0.1)
    assert box == (15, 75, 23, 107)
    assert lung_box(np.zeros((10, 12), bool), 0.1) == (0, 10, 0, 12)  # nothing to crop to: whole image
    assert lung_box(np.ones((10, 12), bool), 0.5) == (0, 10, 0, 12)  # the margin stays inside the image
    prob = np.zeros((100, 120), np.float32)
    prob[30:60, 40:90] = 1.0
    crop = crop_resize(torch.from_numpy(prob)[None], box, 64)
    assert crop.shape == (1, 64, 64)
    back = paste_back(crop[0].numpy(), box, prob.shape)
    assert back.shape == prob.shape and back[:15].max() == 0
    agree = ((back > 0.5) == (prob > 0.5)).mean()
    assert agree > 0.99
