"""Infection Dice of COVID-19 images by ground-truth lesion size, from a per-image CSV of `cxrseg evaluate`.

    python benchmarks/lesion_size.py docs/eval-val/per_image.csv [OTHER.csv ...]

Prints one Markdown table, a column per CSV: where a loss change helps (small lesions) or costs (large ones).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

BINS = ((0, 2000), (2000, 5000), (5000, 10000), (10000, None))  # lesion pixels in a 256x256 image


def dice_by_size(path: Path) -> list[tuple[int, float]]:
    """(images, mean Dice) per bin, for the rows whose class is COVID-19."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["class"] == "COVID-19"]
    out = []
    for lo, hi in BINS:
        d = [float(r["infection_dice"]) for r in rows if lo <= int(r["infection_gt_px"]) < (hi or float("inf"))]
        out.append((len(d), sum(d) / len(d) if d else float("nan")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", type=Path)
    args = parser.parse_args()
    columns = [dice_by_size(p) for p in args.csv]
    print("| lesion pixels | images | " + " | ".join(f"Dice, {p}" for p in args.csv) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    for i, (lo, hi) in enumerate(BINS):
        label = f"{lo}-{hi}" if hi else f">= {lo}"
        print(f"| {label} | {columns[0][i][0]} | " + " | ".join(f"{c[i][1]:.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
