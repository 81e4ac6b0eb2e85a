"""Fake predict output folders for the report tests: results.csv rows with varied figures, overlay and mask PNGs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from cxrseg.inference.result import CSV_FIELDS


def fake_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` results.csv rows with the current columns and varied figures (a third with infection)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        right = float(rng.uniform(0, 90)) if i % 3 == 0 else 0.0
        left = float(rng.uniform(0, 60)) if i % 6 == 0 else 0.0
        grade = lambda p: 0 if p <= 0 else 1 + min(3, int(p // 25))  # noqa: E731
        rows.append({
            "file": f"/scans/site{i % 4}/img{i:05d}.png", "height": 300, "width": 280,
            "lung_area_px": 20000 + i, "right_lung_area_px": 10000, "left_lung_area_px": 10000 + i,
            "infection_area_px": int(100 * (right + left)), "infected_pct": round((right + left) / 2, 2),
            "right_infected_pct": round(right, 2), "left_infected_pct": round(left, 2),
            "right_grade": grade(right), "left_grade": grade(left), "total_grade": grade(right) + grade(left),
            "infection_probability": round(float(rng.uniform(0.4, 1) if right else rng.uniform(0, 0.6)), 4),
            "uncertainty": "",
        })
    return rows


def write_csv(path: Path, rows: list[dict], fields=None) -> Path:
    fields = list(fields or (rows[0].keys() if rows else CSV_FIELDS))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def write_pngs(folder: Path, rows: list[dict], size=(300, 280)) -> None:
    """Overlay and mask PNGs named as predict names them (the file's stem: the fake files' stems are unique)."""
    h, w = size
    for i, row in enumerate(rows):
        stem = Path(row["file"]).stem
        overlay = np.zeros((h, w, 3), np.uint8)
        overlay[..., 0] = (40 * i) % 256
        overlay[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4, 2] = 200
        Image.fromarray(overlay).save(folder / f"{stem}_overlay.png")
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
        Image.fromarray(mask).save(folder / f"{stem}_lung.png")
        Image.fromarray(mask).save(folder / f"{stem}_infection.png")
