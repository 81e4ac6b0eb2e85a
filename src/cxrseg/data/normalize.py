"""Input normalisation applied before a network, the same in training and inference (named in the card).

'none': the [0, 1] grayscale from :mod:`cxrseg.data.io`.
'equalize': global histogram equalisation (256 bins). Any monotone change of the grey levels (gamma, a contrast
window, another console's tone curve, equalisation itself) leaves its output almost unchanged, so a network fed
with it does not learn one hospital's look.
"""

from __future__ import annotations

import numpy as np

NORMS = ("none", "equalize")


def equalize(x: np.ndarray) -> np.ndarray:
    """Histogram-equalise one (H, W) image in [0, 1]: each pixel becomes the share of pixels at or below it."""
    q = np.clip(np.round(x * 255), 0, 255).astype(np.int64)
    cdf = np.cumsum(np.bincount(q.ravel(), minlength=256)).astype(np.float64)
    cdf /= cdf[-1]
    return cdf[q].astype(np.float32)


def normalize_input(x: np.ndarray, mode: str) -> np.ndarray:
    """Apply ``mode`` to an (H, W) or (N, H, W) float array in [0, 1]."""
    if mode == "none":
        return x.astype(np.float32, copy=False)
    if mode != "equalize":
        raise ValueError(f"unknown input normalisation {mode!r}; use one of {NORMS}")
    if x.ndim == 2:
        return equalize(x)
    return np.stack([equalize(im) for im in x]) if len(x) else x.astype(np.float32)
