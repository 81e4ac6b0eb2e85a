"""How much ground-truth infection stage 1's lung mask keeps: stage 2 only sees, and only keeps, the lung ROI.

    python benchmarks/roi_coverage.py --data ../shared/data/COVID-QU-Ex --split Val

Runs the shipped lung model on the split's COVID-19 images and prints the share of infection pixels inside the
predicted lungs, and the per-image infection Dice a perfect stage 2 would reach behind that ROI (its ceiling).
"""

from __future__ import annotations

import argparse

import numpy as np

from cxrseg.data.covidqu import find_dataset, require_samples
from cxrseg.data.dataset import load_arrays
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.progress import ProgressReporter


def coverage(infection: np.ndarray, lung: np.ndarray) -> dict[str, float | int]:
    """Figures for (N, H, W) bool ground-truth infection and predicted lung masks (images without infection skipped)."""
    keep = infection.reshape(len(infection), -1).any(axis=1)
    infection, lung = infection[keep], lung[keep]
    total = infection.sum(axis=(1, 2))
    inside = (infection & lung).sum(axis=(1, 2))
    return {
        "images": int(keep.sum()),
        "pooled_inside": float(inside.sum() / total.sum()) if keep.any() else float("nan"),
        "dice_ceiling_mean": float((2 * inside / (inside + total)).mean()) if keep.any() else float("nan"),
        "images_losing_over_10pct": int((inside < 0.9 * total).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="Val")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    index = find_dataset(args.data, part="infection", splits=(args.split,), classes=("COVID-19",))
    bundle = load_arrays(require_samples(index, (args.split,)), progress=ProgressReporter("read", unit="img").iterate)
    pipe = TwoStagePipeline.from_pretrained()
    images = bundle.images.astype(np.float32) / 255.0
    lungs = [
        pipe.lungs(images[i : i + args.batch_size])[1]
        for i in ProgressReporter("stage 1", unit="batch").iterate(range(0, len(images), args.batch_size))
    ]
    c = coverage(bundle.infections, np.concatenate(lungs))
    print(f"| COVID-19 {args.split} images | infection pixels inside predicted lungs (pooled) "
          "| per-image Dice ceiling (mean) | images losing > 10% of their infection |")
    print("|---:|---:|---:|---:|")
    print(f"| {c['images']} | {c['pooled_inside']:.4f} | {c['dice_ceiling_mean']:.4f} | {c['images_losing_over_10pct']} |")


if __name__ == "__main__":
    main()
