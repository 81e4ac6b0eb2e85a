"""Morphological clean-ups of the infection mask, measured on a split with the shipped decision (issue #11).

    python benchmarks/infection_postprocess.py --data ../shared/data/COVID-QU-Ex

Stage 2 runs once (default path); each variant then reshapes every kept infection mask (after the shipped pixel
threshold, lung clip and minimum area; films the image-level decision vetoes stay empty), and the table gives the
per-image mean Dice over all images (Tahir et al.'s convention), on COVID-19 films, and the negatives flagged.
The hysteresis rows keep only the mask's components whose peak probability reaches a higher threshold.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from cxrseg.data.covidqu import DATA_SIZE, find_dataset, require_samples
from cxrseg.data.dataset import load_arrays
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.inference.postprocess import clean_infection

Variant = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (infection mask, lung, probability) -> mask


def hysteresis(mask: np.ndarray, prob: np.ndarray, high: float) -> np.ndarray:
    """Keep only the components of ``mask`` whose peak probability reaches ``high`` (hysteresis thresholding)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    peak = np.asarray(ndimage.maximum(prob, labels, np.arange(1, n + 1)))
    return np.concatenate([[False], peak >= high])[labels]


VARIANTS: dict[str, Variant] = {
    "as shipped": lambda m, lung, p: m,
    "holes filled": lambda m, lung, p: ndimage.binary_fill_holes(m) & lung,
    "closing, 1 px": lambda m, lung, p: ndimage.binary_closing(m, iterations=1) & lung,
    "closing, 2 px, holes filled": lambda m, lung, p: ndimage.binary_fill_holes(ndimage.binary_closing(m, iterations=2)) & lung,
    "opening, 1 px": lambda m, lung, p: ndimage.binary_opening(m, iterations=1),
    "dilation, 1 px": lambda m, lung, p: ndimage.binary_dilation(m, iterations=1) & lung,
    "erosion, 1 px": lambda m, lung, p: ndimage.binary_erosion(m, iterations=1),
    "hysteresis: components peaking at 0.5 or more": lambda m, lung, p: hysteresis(m, p, 0.5),
    "hysteresis: components peaking at 0.8 or more": lambda m, lung, p: hysteresis(m, p, 0.8),
}


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two bool masks; 1 when both are empty (the convention of the all-images figure)."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def score(masks: list[np.ndarray], truth: np.ndarray) -> dict[str, float]:
    """Per-image mean Dice over all images and over those with infection, and the share of the others flagged."""
    positive = truth.reshape(len(truth), -1).any(1)
    d = np.array([dice(m, t) for m, t in zip(masks, truth)])
    flagged = np.array([m.any() for m in masks])
    return {"all": float(d.mean()), "covid": float(d[positive].mean()), "flagged": float(flagged[~positive].mean())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="COVID-QU-Ex folder")
    ap.add_argument("--split", default="Val")
    a = ap.parse_args(argv)
    pipe = TwoStagePipeline.from_pretrained()
    threshold, image_threshold, min_area = pipe.infection_threshold, pipe.image_threshold, pipe.min_area
    pipe.image_threshold, pipe.min_area, pipe.infection_threshold = None, 0, 0.0  # raw probabilities, no veto
    bundle = load_arrays(require_samples(find_dataset(a.data, part="infection", splits=(a.split,)), (a.split,)), DATA_SIZE)
    out = pipe.run_model_size(bundle.images.astype(np.float32) / 255.0)
    kept = np.ones(len(bundle), bool) if image_threshold is None else out.image_prob >= image_threshold
    base = [clean_infection(p > threshold, lung, min_area) & k for p, lung, k in zip(out.infection_prob, out.lung, kept)]
    print(f"{a.split}: {len(bundle)} films; shipped decision: pixel {threshold}, image {image_threshold}, "
          f"min area {min_area}; backend {pipe.backend_name}\n")
    print("| clean-up | infection Dice, all images | COVID-19 | negatives flagged |\n|---|---:|---:|---:|")
    for name, f in VARIANTS.items():
        r = score([f(m, lung, p) if m.any() else m for m, lung, p in zip(base, out.lung, out.infection_prob)],
                  bundle.infections > 0)
        print(f"| {name} | {r['all']:.4f} | {r['covid']:.4f} | {r['flagged']:.1%} |")


if __name__ == "__main__":
    main()
