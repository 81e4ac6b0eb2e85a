"""The plain two-stage baseline that ``cxrseg predict`` is timed against: what anyone would write in an afternoon.

    python benchmarks/baseline_predict.py FOLDER --out OUT [--lung-model W] [--infection-model W]
        [--batch-size 8] [--threads N] [--overlay]

Decode each PNG/JPEG with PIL in this process, run the two U-Nets that ``cxrseg predict`` runs (the same
weights and cards, built by :func:`cxrseg.models.store.load_model`) in PyTorch eager fp32 under
``inference_mode``, batch 8, threshold, and write ``STEM_lung.png`` and ``STEM_infection.png`` (8-bit 0/255,
PIL's default PNG settings) at the input's own size. The models get their inputs as their cards say (so the
masks are right): stage 1 the X-ray resized to its size (histogram-equalised if its card says so); stage 2
the X-ray and the stage-1 mask (masked or as two channels), cropped to the lungs' box + margin when the card
says so, with its image-level head's veto. No post-processing (largest components, hole filling), no
overlay (``--overlay`` adds a plain one), no CSV, no worker processes, no overlap of I/O with compute.

``benchmarks/predict_speed.py`` runs this and ``cxrseg predict`` as subprocesses on the same folder, in the
same run, and reports whole-process wall times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cxrseg.models.store import load_model, shipped_weights

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def equalize(x: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of (H, W) in [0, 1] (256 bins), as the models were trained with."""
    q = np.clip(np.round(x * 255), 0, 255).astype(np.int64)
    cdf = np.cumsum(np.bincount(q.ravel(), minlength=256)).astype(np.float64)
    return (cdf / cdf[-1])[q].astype(np.float32)


def resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W)."""
    return t if tuple(t.shape[-2:]) == tuple(size) else F.interpolate(t, size=size, mode="bilinear", align_corners=False)


def box_of(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1) of a bool mask grown by ``margin`` of its size; the whole image if empty."""
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return 0, h, 0, w
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    my, mx = round(margin * (y1 - y0)), round(margin * (x1 - x0))
    return max(0, y0 - my), min(h, y1 + my), max(0, x0 - mx), min(w, x1 + mx)


def plain_overlay(grey: np.ndarray, lung: np.ndarray, infection: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    rgb[infection] = 0.55 * rgb[infection] + 0.45 * np.array([255, 40, 40], np.float32)
    inner = np.zeros_like(lung)
    inner[1:-1, 1:-1] = lung[1:-1, 1:-1] & lung[:-2, 1:-1] & lung[2:, 1:-1] & lung[1:-1, :-2] & lung[1:-1, 2:]
    rgb[lung & ~inner] = (0, 200, 255)
    return rgb.astype(np.uint8)


class Stage:
    def __init__(self, weights: Path) -> None:
        self.model, card = load_model(weights)
        self.model.eval()
        arch = card.get("architecture", {})
        self.size = int(card.get("input_size", 256))
        self.equalize = arch.get("input_norm", "none") == "equalize"
        self.two_channels = arch.get("roi_input", "masked") == "image_and_mask"
        self.margin = arch.get("roi_margin")
        self.threshold = float(card.get("threshold", 0.5))
        t = card.get("image_threshold")
        self.image_threshold = None if t is None else float(t)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.model(x)
        seg, cls = out if isinstance(out, tuple) else (out, None)
        return torch.sigmoid(seg[:, 0]), None if cls is None else torch.sigmoid(cls)


def run_batch(files: list[Path], lung: Stage, infection: Stage, out: Path, overlay: bool) -> None:
    greys = [np.asarray(Image.open(f).convert("L")) for f in files]
    s = lung.size
    small = resize(torch.stack([torch.from_numpy(g.astype(np.float32) / 255)[None] for g in greys]), (s, s))[:, 0].numpy()
    x1 = np.stack([equalize(im) for im in small]) if lung.equalize else small
    lung_prob, _ = lung(torch.from_numpy(x1)[:, None])
    lung_s = (lung_prob > lung.threshold).numpy()

    x2 = np.stack([equalize(im) for im in small]) if infection.equalize else small
    boxes = [box_of(m, infection.margin) if infection.margin is not None else (0, s, 0, s) for m in lung_s]
    crops = []
    for img, m, (y0, y1, x0, x1) in zip(x2, lung_s, boxes):
        im = torch.from_numpy(np.ascontiguousarray(img[y0:y1, x0:x1]))[None, None]
        mk = torch.from_numpy(m[y0:y1, x0:x1].astype(np.float32))[None, None]
        im = resize(im, (infection.size, infection.size))
        mk = F.interpolate(mk, size=(infection.size, infection.size), mode="nearest")
        crops.append(torch.cat([im, mk], 1) if infection.two_channels else im * mk)
    inf_prob, image_prob = infection(torch.cat(crops))

    for i, (f, g) in enumerate(zip(files, greys)):
        y0, y1, x0, x1 = boxes[i]
        canvas = torch.zeros(1, 1, s, s)
        canvas[..., y0:y1, x0:x1] = resize(inf_prob[i][None, None], (y1 - y0, x1 - x0))
        probs = resize(torch.stack([lung_prob[i][None], canvas[0]]), g.shape)[:, 0].numpy()
        lung_m = probs[0] > lung.threshold
        vetoed = image_prob is not None and infection.image_threshold is not None and image_prob[i] < infection.image_threshold
        inf_m = (probs[1] > infection.threshold) & lung_m & (not vetoed)
        Image.fromarray(lung_m.astype(np.uint8) * 255).save(out / f"{f.stem}_lung.png")
        Image.fromarray(inf_m.astype(np.uint8) * 255).save(out / f"{f.stem}_infection.png")
        if overlay:
            Image.fromarray(plain_overlay(g, lung_m, inf_m)).save(out / f"{f.stem}_overlay.png")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="plain two-stage PyTorch-eager fp32 baseline (masks as PNG)")
    ap.add_argument("inputs", type=Path, help="folder of images")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lung-model", type=Path, default=None)
    ap.add_argument("--infection-model", type=Path, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--overlay", action="store_true", help="also write a plain STEM_overlay.png")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if a.threads:
        torch.set_num_threads(a.threads)
    lung = Stage(a.lung_model or shipped_weights("lung"))
    infection = Stage(a.infection_model or shipped_weights("infection"))
    files = sorted(f for f in a.inputs.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
    a.out.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(files), a.batch_size):
        run_batch(files[i : i + a.batch_size], lung, infection, a.out, a.overlay)
    print(f"{len(files)} images in {time.perf_counter() - t0:.1f} s after imports -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
