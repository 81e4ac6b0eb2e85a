"""Stage 2's view of the lungs: the predicted lungs' bounding box plus a margin, cropped and resized.

Lungs fill a median 75% x 69% box and 23% of a film's pixels, so a network fed the whole image spends most of
its work on zeros; fed the box, it sees the lungs at a finer scale for less compute. The same three functions
serve training (ground-truth or predicted lungs) and inference, so both crop alike.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (end-exclusive)


def lung_box(lung: np.ndarray, margin: float) -> Box:
    """Bounding box of a (H, W) bool lung mask, grown by ``margin`` x its size on each side, inside the image.

    An empty mask gives the whole image (nothing to crop to; stage 2 then sees the full field).
    """
    h, w = lung.shape
    rows, cols = np.flatnonzero(lung.any(1)), np.flatnonzero(lung.any(0))
    if len(rows) == 0:
        return 0, h, 0, w
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    my, mx = int(round(margin * (y1 - y0))), int(round(margin * (x1 - x0)))
    return max(0, y0 - my), min(h, y1 + my), max(0, x0 - mx), min(w, x1 + mx)


def crop_resize(x: torch.Tensor, box: Box, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Crop (C, H, W) to ``box`` and resize to (C, size, size); 'nearest' for masks."""
    y0, y1, x0, x1 = box
    crop = x[None, :, y0:y1, x0:x1].float()
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(crop, size=(size, size), mode=mode, **kw)[0]


def paste_back(prob: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """A (S, S) probability map of the crop, resized into ``box`` of a zero (H, W) canvas."""
    y0, y1, x0, x1 = box
    out = np.zeros(shape, np.float32)
    t = torch.from_numpy(np.ascontiguousarray(prob, np.float32))[None, None]
    out[y0:y1, x0:x1] = F.interpolate(t, size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)[0, 0].numpy()
    return out
