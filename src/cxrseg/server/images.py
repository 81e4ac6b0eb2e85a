"""The pictures an answer carries: masks at full size, original and overlay shrunk for display, as base64 PNG."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from cxrseg.data.io import XRay
from cxrseg.inference.overlay import render_overlay
from cxrseg.inference.result import Segmentation
from cxrseg.server.schemas import Images


def png_base64(array: np.ndarray) -> str:
    """Encode a uint8 (H, W) or (H, W, 3) array as base64 PNG text."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=3)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def mask_u8(mask: np.ndarray) -> np.ndarray:
    """A bool mask as 0/255 uint8, the convention of COVID-QU-Ex masks."""
    return mask.astype(np.uint8) * 255


def shrink(array: np.ndarray, max_side: int, resample: Image.Resampling) -> np.ndarray:
    """``array`` (uint8) scaled so its longest side is at most ``max_side``; unchanged if already small."""
    h, w = array.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return array
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(array).resize(size, resample))


def encode_images(xray: XRay, seg: Segmentation, max_side: int) -> Images:
    """Masks at full size; the original and overlay at display size, drawn on the scaled-down image."""
    grey = shrink(np.clip(np.round(xray.pixels * 255), 0, 255).astype(np.uint8), max_side, Image.Resampling.BOX)
    lung = shrink(mask_u8(seg.lung), max_side, Image.Resampling.NEAREST) > 0
    infection = shrink(mask_u8(seg.infection), max_side, Image.Resampling.NEAREST) > 0
    opacity = shrink(mask_u8(seg.opacity), max_side, Image.Resampling.NEAREST) > 0
    return Images(
        original=png_base64(grey),
        overlay=png_base64(render_overlay(grey / 255.0, lung, infection, opacity=opacity)),
        lung_mask=png_base64(mask_u8(seg.lung)),
        infection_mask=png_base64(mask_u8(seg.infection)),
    )
