"""The default path's masks against the fp32 reference's on real films (issue #13: Dice >= 0.99, nothing lost).

    python benchmarks/precision_agreement.py --data ../shared/data/COVID-QU-Ex [--split Val] [--every 3]

Runs the shipped pipeline twice over every ``--every``-th film of the split, on the default path (``--backend auto
--precision auto``: PyTorch bf16 where the CPU has it) and on PyTorch fp32, and prints the infection and lung Dice
between the two, per film (both empty scores 1) and pooled, the films under 0.99 and the films whose image-level
decision differs. The unit test checks the same on the two example films and three phantoms; this is the real-data
figure behind it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cxrseg.data.io import read_xray
from cxrseg.inference.pipeline import TwoStagePipeline


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2 * int((a & b).sum()) / s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="COVID-QU-Ex folder")
    ap.add_argument("--split", default="Val")
    ap.add_argument("--every", type=int, default=3, help="take every N-th film (sorted by class and name)")
    a = ap.parse_args()
    start = time.perf_counter()
    files = sorted((a.data / "Infection Segmentation Data" / a.split).glob("*/images/*.png"))[:: a.every]
    films = [read_xray(f) for f in files]
    default = TwoStagePipeline.from_pretrained()
    ref = TwoStagePipeline.from_pretrained(backend="torch", precision="fp32").predict(films)
    out = default.predict(films)
    inf = np.array([dice(r.infection, f.infection) for r, f in zip(ref, out)])
    lung = np.array([dice(r.lung, f.lung) for r, f in zip(ref, out)])
    flips = sum(bool(r.infection.any()) != bool(f.infection.any()) for r, f in zip(ref, out))
    pooled = dice(np.concatenate([r.infection.ravel() for r in ref]), np.concatenate([f.infection.ravel() for f in out]))
    print(f"{len(films)} {a.split} films (1 in {a.every}), {default.backend_name} against torch fp32, "
          f"{time.perf_counter() - start:.0f} s\n")
    print("| mask | Dice per film: mean | median | min | films under 0.99 | pooled |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| infection | {inf.mean():.4f} | {np.median(inf):.4f} | {inf.min():.4f} | {(inf < 0.99).sum()} | {pooled:.4f} |")
    print(f"| lung | {lung.mean():.4f} | {np.median(lung):.4f} | {lung.min():.4f} | {(lung < 0.99).sum()} | |")
    print(f"\nimage-level decision differs on {flips} film(s)")


if __name__ == "__main__":
    main()
