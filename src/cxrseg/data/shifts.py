"""Acquisition shifts: what another hospital's scanner, processing or export does to a chest X-ray.

Each shift maps a (H, W) float32 image in [0, 1] to another, leaving the anatomy (and so the masks) where it
was. The same functions serve two jobs: ``benchmarks/shift.py`` applies each at one fixed strength to measure
what it costs, and :class:`RandAcquisitionShift` draws random ones as training augmentation. The framing shifts
(:data:`FRAMING_SHIFTS`) are the exception: a tighter field of view moves the anatomy, so the benchmark frames the
ground-truth masks the same way.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from cxrseg.data.normalize import equalize

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def gamma(x: np.ndarray, g: float) -> np.ndarray:
    """Power-law tone curve: g < 1 brightens (a 'soft' film), g > 1 darkens."""
    return np.power(np.clip(x, 0.0, 1.0), g, dtype=np.float32)


def window(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Contrast window: [low, high] stretched to [0, 1], the rest clipped (a PACS export's window/level)."""
    return np.clip((x - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma).astype(np.float32)


def sharpen(x: np.ndarray, amount: float, sigma: float = 2.0) -> np.ndarray:
    """Unsharp masking, the edge enhancement many CR/DR consoles apply by default."""
    return np.clip(x + amount * (x - ndimage.gaussian_filter(x, sigma)), 0.0, 1.0).astype(np.float32)


def noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Quantum-like noise: Gaussian, stronger in bright (low-dose, high-attenuation) regions."""
    n = rng.standard_normal(x.shape).astype(np.float32) * sigma * (0.5 + x)
    return np.clip(x + n, 0.0, 1.0).astype(np.float32)


def resample(x: np.ndarray, factor: float) -> np.ndarray:
    """Down-sample by ``factor`` and back up: a small or heavily scaled film."""
    h, w = x.shape
    img = Image.fromarray(np.round(x * 255).astype(np.uint8))
    small = img.resize((max(8, int(w / factor)), max(8, int(h / factor))), Image.BILINEAR)
    return np.asarray(small.resize((w, h), Image.BILINEAR), np.float32) / 255.0


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.round(x * 255).astype(np.uint8)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf), np.float32) / 255.0


def border(x: np.ndarray, fractions: tuple[float, float, float, float]) -> np.ndarray:
    """Black collimation borders: (top, bottom, left, right) fractions of the image blacked out."""
    out = x.copy()
    h, w = x.shape
    t, b, lf, r = (int(round(f * s)) for f, s in zip(fractions, (h, h, w, w)))
    out[:t], out[h - b :], out[:, :lf], out[:, w - r :] = 0, 0, 0, 0
    return out


def text(x: np.ndarray, rng: np.random.Generator, lines: int = 2) -> np.ndarray:
    """Burnt-in annotations (side marker, date, institution) in white, in the corners, as many films carry."""
    h, w = x.shape
    img = Image.fromarray(np.round(x * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    size = max(8, int(h * rng.uniform(0.03, 0.06)))
    font = ImageFont.load_default(size=size)
    for _ in range(lines):
        label = rng.choice(["R", "L", "PORTABLE", "AP ERECT", "2020-04-01 10:12", "ICU BED 7", "SUPINE"])
        cx = rng.choice([0.02, 0.7]) * w
        cy = rng.choice([0.02, 0.9]) * h
        draw.text((cx, cy), str(label), fill=int(rng.uniform(200, 255)), font=font)
    return np.asarray(img, np.float32) / 255.0


def framing(x: np.ndarray, zoom: float, nearest: bool = False) -> np.ndarray:
    """A tighter field of view: the central ``1/zoom`` of the film enlarged to its full size, as a narrower
    collimation, a larger patient or another detector distance frames the chest. ``nearest`` for masks (bool or
    {0, 1}); the image is resampled bilinearly. The same ``zoom`` on a film and its masks keeps them aligned."""
    h, w = x.shape
    dh, dw = (int(round(n * (1 - 1 / zoom) / 2)) for n in (h, w))
    if zoom < 1 or not (dh or dw):
        raise ValueError(f"framing zoom must be > 1 and visible at {h}x{w}, got {zoom}")
    box = (dw, dh, w - dw, h - dh)
    if nearest:
        img = Image.fromarray(np.asarray(x, np.uint8) * 255)
        return np.asarray(img.resize((w, h), Image.NEAREST, box=box)) > 127
    img = Image.fromarray(np.asarray(x, np.float32), mode="F")
    return np.clip(np.asarray(img.resize((w, h), Image.BILINEAR, box=box), np.float32), 0.0, 1.0)


# One fixed strength of each shift, for benchmarks/shift.py: roughly the largest change seen between hospitals.
BENCHMARK_SHIFTS: dict[str, Shift] = {
    "gamma 0.6": lambda x, rng: gamma(x, 0.6),
    "gamma 1.6": lambda x, rng: gamma(x, 1.6),
    "window 0.15-0.85": lambda x, rng: window(x, 0.15, 0.85),
    "histogram equalisation": lambda x, rng: equalize(x),
    "blur sigma 1.5": lambda x, rng: blur(x, 1.5),
    "sharpen 1.5": lambda x, rng: sharpen(x, 1.5),
    "noise 0.04": lambda x, rng: noise(x, 0.04, rng),
    "down-sample x4": lambda x, rng: resample(x, 4.0),
    "JPEG quality 20": lambda x, rng: jpeg(x, 20),
    "collimation border 8%": lambda x, rng: border(x, (0.08, 0.08, 0.08, 0.08)),
    "burnt-in text": lambda x, rng: text(x, rng, lines=3),
}

# Field-of-view shifts for benchmarks/shift.py: name -> zoom of :func:`framing`. In COVID-QU-Ex the COVID-19 films'
# lungs fill more of the frame than the other films' (Train: median lung box 76% of the width, 87% at the 75th
# percentile, against 73-77% and 79-81% for Non-COVID and Normal), so framing is a cue the models can learn.
FRAMING_SHIFTS: dict[str, float] = {
    "tighter framing 1.1x": 1.1,
    "tighter framing 1.2x": 1.2,
}


def random_shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random shift at a random strength (the training distribution around :data:`BENCHMARK_SHIFTS`)."""
    kind = rng.integers(10)
    if kind == 0:
        return gamma(x, float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))))
    if kind == 1:
        low = rng.uniform(0.0, 0.25)
        return window(x, low, rng.uniform(max(low + 0.4, 0.7), 1.0))
    if kind == 2:
        return equalize(x)
    if kind == 3:
        return blur(x, rng.uniform(0.5, 2.0))
    if kind == 4:
        return sharpen(x, rng.uniform(0.5, 2.0), rng.uniform(1.0, 4.0))
    if kind == 5:
        return noise(x, rng.uniform(0.01, 0.06), rng)
    if kind == 6:
        return resample(x, rng.uniform(1.5, 5.0))
    if kind == 7:
        return jpeg(x, int(rng.integers(15, 70)))
    if kind == 8:
        return border(x, tuple(rng.uniform(0.0, 0.1, 4) * (rng.random(4) < 0.6)))
    return text(x, rng, lines=int(rng.integers(1, 4)))


class RandAcquisitionShift:
    """Training augmentation: with probability ``prob``, one to ``max_shifts`` random acquisition shifts."""

    def __init__(self, prob: float = 0.6, max_shifts: int = 2, seed: int = 0) -> None:
        self.prob, self.max_shifts = prob, max_shifts
        self.rng = np.random.default_rng(seed)

    def set_random_state(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.rng.random() >= self.prob:
            return x
        for _ in range(int(self.rng.integers(1, self.max_shifts + 1))):
            x = random_shift(x, self.rng)
        return x
