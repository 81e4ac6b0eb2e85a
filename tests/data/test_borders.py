"""Flat edge bands (collimation, padding) are found and cut; anatomy, noise and a thin frame line are not."""

from __future__ import annotations

import numpy as np
import pytest

from cxrseg.data.borders import content_box
from cxrseg.data.shifts import border, text


def _film(h: int = 200, w: int = 240, seed: int = 0) -> np.ndarray:
    """Smooth 'anatomy' with texture everywhere: no flat row or column."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    return np.clip(0.5 + 0.3 * np.sin(9 * xx) * np.cos(7 * yy) + rng.normal(0, 0.05, (h, w)), 0, 1).astype(np.float32)


def test_a_film_without_bands_is_whole():
    x = _film()
    assert content_box(x) == (0, 200, 0, 240)


@pytest.mark.parametrize("fractions", [(0.08, 0.08, 0.08, 0.08), (0.2, 0.0, 0.0, 0.05), (0.0, 0.1, 0.15, 0.0)])
def test_black_bands_are_cut_exactly(fractions):
    x = _film()
    top, bottom, left, right = (int(f * n) for f, n in zip(fractions, (200, 200, 240, 240)))
    y = x.copy()
    y[:top], y[200 - bottom:], y[:, :left], y[:, 240 - right:] = 0, 0, 0, 0
    assert content_box(y) == (top, 200 - bottom, left, 240 - right)


def test_white_padding_and_the_benchmark_shift_are_cut():
    x = _film()
    y = np.ones((260, 240), np.float32)
    y[30:230] = x  # letterboxed in white
    assert content_box(y) == (30, 230, 0, 240)
    t, b, le, r = content_box(border(x, (0.08, 0.08, 0.08, 0.08)))
    assert abs(t - 16) <= 1 and abs(200 - b - 16) <= 1 and abs(le - 19) <= 1 and abs(240 - r - 19) <= 1


def test_text_in_a_band_does_not_stop_the_cut():
    x = _film(256, 256)
    y = x.copy()
    y[:40] = 0.0
    y[10:18, 20:26] = 1.0  # a small burnt-in marker in the band
    assert content_box(y)[0] == 40


def test_a_one_pixel_frame_line_and_a_capped_band_are_left_alone():
    x = _film()
    y = x.copy()
    y[0] = 0.0  # one dark line: not a band
    assert content_box(y)[0] == 0
    z = x.copy()
    z[:150] = 0.0  # 75% of the height flat: cut at most 30%
    assert content_box(z)[0] == 60


def test_tiny_images_are_whole():
    assert content_box(np.zeros((8, 8), np.float32)) == (0, 8, 0, 8)


def test_burnt_in_text_alone_is_not_a_band():
    rng = np.random.default_rng(1)
    assert content_box(text(_film(), rng, lines=3)) == (0, 200, 0, 240)
