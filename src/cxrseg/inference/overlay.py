"""Pictures for people: the X-ray with the lung outlined and the infection filled in colour."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LUNG_COLOUR = (0, 200, 255)
INFECTION_COLOUR = (255, 40, 40)
OPACITY_COLOUR = (255, 190, 0)  # opacity the image-level judgement did not count as COVID-19 infection
TRUTH_COLOUR = (60, 220, 60)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The boundary pixels of a bool mask, ``width`` pixels thick."""
    if not mask.any():
        return mask.copy()
    return mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=0)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) float in [0, 1] -> (H, W, 3) uint8."""
    g = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def render_overlay(
    image: np.ndarray, lung: np.ndarray, infection: np.ndarray, alpha: float = 0.45, opacity: np.ndarray | None = None
) -> np.ndarray:
    """RGB uint8: lung outline in cyan, infection filled in translucent red, and ``opacity`` that is not
    counted as infection (judged not COVID-19-like) in amber, so it never vanishes from the picture."""
    rgb = to_rgb(image).astype(np.float32)
    width = max(1, round(max(image.shape) / 256))
    if opacity is not None:
        other = opacity & ~infection
        rgb[other] = (1 - alpha) * rgb[other] + alpha * np.array(OPACITY_COLOUR, np.float32)
    rgb[infection] = (1 - alpha) * rgb[infection] + alpha * np.array(INFECTION_COLOUR, np.float32)
    rgb[outline(lung, width)] = LUNG_COLOUR
    return rgb.astype(np.uint8)


def render_comparison(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB uint8: ground truth outlined in green, prediction in red (for Val figure grids)."""
    rgb = to_rgb(image)
    rgb[outline(truth)] = TRUTH_COLOUR
    rgb[outline(pred)] = INFECTION_COLOUR
    return rgb
