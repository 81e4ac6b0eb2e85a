"""Flat borders around a film (collimation, padding to a square, scanner frames): where the content is.

A row or column at an edge counts as border when nearly all its pixels lie within a small tolerance of its median
(a uniform band; a line of burnt-in text across it does not stop that). The pipeline ranks the lungs' density inside
the content box, so bands do not shift it; with ``crop_borders`` (opt-in) it also runs the models on the box only
and pastes the masks back.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]  # (top, bottom, left, right) as slice bounds: image[top:bottom, left:right]


def _flat(lines: np.ndarray, tol: float, share: float) -> np.ndarray:
    """For each row of ``lines`` (N, L): are at least ``share`` of its values within ``tol`` of its median?"""
    med = np.median(lines, axis=1, keepdims=True)
    return (np.abs(lines - med) <= tol).mean(axis=1) >= share


def _run(flags: np.ndarray) -> int:
    """Length of the leading run of True."""
    return int(np.argmin(flags)) if not flags.all() else len(flags)


def content_box(image: np.ndarray, tol: float = 0.03, share: float = 0.97, max_fraction: float = 0.3,
                min_band: int = 2) -> Box:
    """The (top, bottom, left, right) box inside the flat bands at the edges of an (H, W) image in [0, 1].

    Each side loses its leading run of flat rows/columns, at most ``max_fraction`` of the image, and only when the
    run is at least ``min_band`` pixels (a one-pixel frame line is left alone). The whole image when no side has a
    band, or when the image is too small to judge.
    """
    h, w = image.shape
    if h < 16 or w < 16:
        return 0, h, 0, w
    x = np.asarray(image, np.float32)
    rows, cols = _flat(x, tol, share), _flat(x.T, tol, share)
    cut_h, cut_w = int(max_fraction * h), int(max_fraction * w)

    def band(flags: np.ndarray, cap: int) -> int:
        n = min(_run(flags), cap)
        return n if n >= min_band else 0

    top, bottom = band(rows, cut_h), band(rows[::-1], cut_h)
    left, right = band(cols, cut_w), band(cols[::-1], cut_w)
    return top, h - bottom, left, w - right

