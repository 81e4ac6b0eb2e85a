"""Clean-up of predicted masks: two largest lung components with holes filled, infection clipped to lung."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def clean_lung(mask: np.ndarray, keep: int = 2) -> np.ndarray:
    """Keep the ``keep`` largest connected components of a bool mask and fill their holes."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros_like(mask, bool)
    if n > keep:
        sizes = np.bincount(labels.ravel())[1:]
        kept = np.argsort(sizes)[::-1][:keep] + 1
        mask = np.isin(labels, kept)
    return ndimage.binary_fill_holes(mask)


def clean_infection(mask: np.ndarray, lung: np.ndarray, min_area: int = 0) -> np.ndarray:
    """Clip infection to the lung and drop components smaller than ``min_area`` pixels."""
    mask = mask & lung
    if min_area > 0 and mask.any():
        labels, n = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())
        small = sizes < min_area
        small[0] = True
        mask = ~small[labels]
    return mask


def split_lungs(lung: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) lung masks in radiological convention: the patient's right lung is on the image's left.

    With two components each is assigned by its centroid; a single merged component is cut at its own
    horizontal centroid.
    """
    labels, n = ndimage.label(lung)
    w = lung.shape[1]
    if n >= 2:
        sizes = np.bincount(labels.ravel())[1:]
        a, b = (np.argsort(sizes)[::-1][:2] + 1).tolist()
        ca = ndimage.center_of_mass(lung, labels, a)[1]
        cb = ndimage.center_of_mass(lung, labels, b)[1]
        first, second = (a, b) if ca <= cb else (b, a)
        return labels == first, labels == second
    if not lung.any():
        empty = np.zeros_like(lung, bool)
        return empty, empty.copy()
    cx = int(round(np.nonzero(lung)[1].mean()))
    cols = np.arange(w)[None, :]
    return lung & (cols < cx), lung & (cols >= cx)
