"""Pack COVID-QU-Ex Train (+ a Val subset) small enough to travel to a lent GPU machine (64 MiB with the repo).

Writes the dataset's own layout under OUT, so `cxrseg train --data OUT/COVID-QU-Ex` reads it unchanged:
images as JPEG (quality 80: 29 MB for the 3,728 Train images, against 111 MB of PNG), masks as 1-bit PNG.
JPEG at this quality is one of the acquisition shifts the models are trained to tolerate anyway; the models
are selected and reported on the full, lossless Val split here, never on the packed copy.

    python scripts/pack_gpu_data.py --data ../shared/data/COVID-QU-Ex --out .gpu/data --val 150
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from cxrseg.data.covidqu import (
    IMAGES_DIR,
    INFECTION_DIR,
    INFECTION_PART,
    LUNG_DIR,
    find_dataset,
    require_samples,
    stratified_subset,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path(".gpu/data"))
    ap.add_argument("--quality", type=int, default=80)
    ap.add_argument("--val", type=int, default=150, help="Val images to pack (class-stratified), for the log")
    a = ap.parse_args()
    index = find_dataset(a.data, part="infection", splits=("Train", "Val"))
    chosen = require_samples(index, ("Train",), "infection") + stratified_subset(
        require_samples(index, ("Val",), "infection"), a.val, 0
    )
    root = a.out / "COVID-QU-Ex" / INFECTION_PART
    total = 0
    for i, s in enumerate(chosen):
        folder = root / s.split / s.label
        for sub in (IMAGES_DIR, LUNG_DIR, INFECTION_DIR):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        img = folder / IMAGES_DIR / f"{s.name}.jpg"
        Image.open(s.image).convert("L").save(img, format="JPEG", quality=a.quality)
        for src, sub in ((s.lung, LUNG_DIR), (s.infection, INFECTION_DIR)):
            Image.open(src).convert("L").point(lambda v: 255 if v > 127 else 0).convert("1").save(
                folder / sub / f"{s.name}.png", optimize=True
            )
        total += sum(p.stat().st_size for p in (img, folder / LUNG_DIR / f"{s.name}.png", folder / INFECTION_DIR / f"{s.name}.png"))
        if (i + 1) % 500 == 0:
            print(f"packed {i + 1}/{len(chosen)} ({total / 1e6:.1f} MB)", flush=True)
    print(f"packed {len(chosen)} samples into {root}: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
