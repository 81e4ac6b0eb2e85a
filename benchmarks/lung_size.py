"""What stage 1 loses when it sees a smaller grid: lung Dice on a split at each input size, against the 256 masks.

    python benchmarks/lung_size.py --data ../shared/data/COVID-QU-Ex --sizes 256,192,160,128 --every 4
    python benchmarks/lung_size.py --data ../shared/data/COVID-QU-Ex --lung-model runs/lung-192/best.safetensors

Each film (read at 256, COVID-QU-Ex's own size) is resized to the input size (antialiased), stage 1 runs there, and
its probabilities are resized back to 256 and cleaned as the pipeline does. Without ``--sizes`` a model runs at its
own size (its card's ``input_size``): the way to measure a stage 1 trained smaller (issue #13's "right-sized
stages"; docs/experiments.md row 64).
"""

from __future__ import annotations

import argparse

import numpy as np

from cxrseg.data.covidqu import DATA_SIZE, find_dataset, require_samples
from cxrseg.data.dataset import load_arrays
from cxrseg.data.normalize import normalize_input
from cxrseg.inference.pipeline import TwoStagePipeline, resize_batch
from cxrseg.inference.postprocess import clean_lung


def dice_per_image(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,) Dice of (N, H, W) bool masks; 1 where both are empty."""
    inter = (pred & truth).sum(axis=(1, 2))
    total = pred.sum(axis=(1, 2)) + truth.sum(axis=(1, 2))
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def lungs_at(pipe: TwoStagePipeline, images: np.ndarray, size: int) -> np.ndarray:
    """Cleaned (N, H, W) lung masks of (N, H, W) float films in [0, 1], with stage 1 run at ``size``."""
    x = resize_batch(normalize_input(images, pipe.lung_config.input_norm), (size, size))
    prob = resize_batch(pipe._probs(pipe.lung_backend, x[:, None])[0], images.shape[-2:])
    return np.stack([clean_lung(p > pipe.lung_threshold) for p in prob])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="COVID-QU-Ex folder")
    ap.add_argument("--split", default="Val")
    ap.add_argument("--lung-model", default=None, help="stage-1 weights (default: shipped)")
    ap.add_argument("--sizes", default=None, help="comma-separated input sizes (default: the model's own)")
    ap.add_argument("--every", type=int, default=1, help="take every n-th film of the split")
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args(argv)

    pipe = TwoStagePipeline.from_pretrained(lung=a.lung_model, classifier="none", batch_size=a.batch_size)
    sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else [pipe.lung_size]
    samples = require_samples(find_dataset(a.data, splits=(a.split,)), (a.split,))[:: a.every]
    bundle = load_arrays(samples, DATA_SIZE)
    images, truth = bundle.images.astype(np.float32) / 255.0, bundle.lungs
    dice: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
    for i in range(0, len(images), a.batch_size):
        for s in sizes:
            dice[s].append(dice_per_image(lungs_at(pipe, images[i : i + a.batch_size], s), truth[i : i + a.batch_size]))
    print(f"stage 1 {a.lung_model or 'shipped'} (trained at {pipe.lung_size}); {a.split}, {len(samples)} films "
          f"(every {a.every}), Dice against the masks at {DATA_SIZE}\n")
    print("| input size | work vs 256 | lung Dice (per-image mean) |\n|---:|---:|---:|")
    for s in sizes:
        print(f"| {s} | {(s / 256) ** 2:.2f}x | {np.concatenate(dice[s]).mean():.4f} |")


if __name__ == "__main__":
    main()
