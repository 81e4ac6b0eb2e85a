"""Tiny phantom datasets in the COVID-QU-Ex layout: ellipse lungs, blob infections (tests and demos).

COVID-19 images get bright blobs inside the lungs with a matching infection mask; Non-COVID images get
diffuse haze with an empty infection mask (the hard negative of the real data); Normal images get neither.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxrseg.data.covidqu import CLASSES, IMAGES_DIR, INFECTION_DIR, INFECTION_PART, LUNG_DIR, LUNG_PART


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def phantom(label: str, size: int = 256, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic X-ray: (uint8 image, bool lung mask, bool infection mask)."""
    rng = rng or np.random.default_rng()
    s = size
    jitter = lambda a: a * (1 + rng.uniform(-0.08, 0.08))  # noqa: E731
    right = _ellipse(s, s, jitter(0.5 * s), jitter(0.32 * s), jitter(0.3 * s), jitter(0.13 * s))
    left = _ellipse(s, s, jitter(0.5 * s), jitter(0.68 * s), jitter(0.3 * s), jitter(0.13 * s))
    lung = right | left
    img = np.full((s, s), 0.75) + rng.normal(0, 0.04, (s, s))
    img[lung] = 0.25 + rng.normal(0, 0.04, lung.sum())
    infection = np.zeros_like(lung)
    if label == "COVID-19":
        for _ in range(rng.integers(1, 4)):
            ys, xs = np.nonzero(lung)
            k = rng.integers(len(ys))
            blob = _ellipse(s, s, ys[k], xs[k], rng.uniform(0.04, 0.09) * s, rng.uniform(0.04, 0.08) * s) & lung
            infection |= blob
        img[infection] += 0.3
    elif label == "Non-COVID":
        yy = np.mgrid[0:s, 0:s][0] / s
        img[lung] += 0.12 * np.sin(12 * yy[lung]) ** 2  # stripes of haze, no labelled infection
    img = np.clip(img, 0, 1)
    return (img * 255).astype(np.uint8), lung, infection


def make_synthetic_covidqu(
    root: str | Path,
    counts: dict[str, int] | None = None,
    size: int = 256,
    seed: int = 0,
    lung_part: bool = False,
) -> Path:
    """Write a small COVID-QU-Ex-shaped dataset under ``root``; ``counts`` is images per class per split."""
    counts = counts or {"Train": 6, "Val": 3}
    rng = np.random.default_rng(seed)
    root = Path(root)
    parts = [INFECTION_PART] + ([LUNG_PART] if lung_part else [])
    for part in parts:
        for split, n in counts.items():
            for label in CLASSES:
                base = root / part / split / label
                dirs = [IMAGES_DIR, LUNG_DIR] + ([INFECTION_DIR] if part == INFECTION_PART else [])
                for d in dirs:
                    (base / d).mkdir(parents=True, exist_ok=True)
                stem = {"COVID-19": "covid", "Non-COVID": "non_COVID", "Normal": "Normal"}[label]
                for i in range(n):
                    img, lung, inf = phantom(label, size, rng)
                    name = f"{stem}_{split.lower()}_{i}.png"
                    Image.fromarray(img).save(base / IMAGES_DIR / name)
                    Image.fromarray(lung.astype(np.uint8) * 255).save(base / LUNG_DIR / name)
                    if part == INFECTION_PART:
                        Image.fromarray(inf.astype(np.uint8) * 255).save(base / INFECTION_DIR / name)
    return root
