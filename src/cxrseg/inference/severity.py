"""Severity figures from a lung and an infection mask: areas, infected share per lung, and grades.

Grade per lung by infected share: 0 none, 1 under 25%, 2 25-50%, 3 50-75%, 4 75% and over; total 0-8.
Right and left follow the radiological convention (the patient's right lung is on the image's left).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cxrseg.inference.postprocess import split_lungs


def grade(share: float) -> int:
    """0-4 from an infected share in [0, 1]; any infection at all is at least grade 1."""
    if share <= 0:
        return 0
    if share < 0.25:
        return 1
    if share < 0.50:
        return 2
    if share < 0.75:
        return 3
    return 4


@dataclass(frozen=True)
class SeverityFigures:
    """Pixel areas at the input image's size and infected percentages (0-100)."""

    lung_area_px: int
    right_lung_area_px: int
    left_lung_area_px: int
    infection_area_px: int
    infected_pct: float
    right_infected_pct: float
    left_infected_pct: float
    right_grade: int
    left_grade: int
    total_grade: int

    def to_dict(self) -> dict:
        return asdict(self)


def _share(inf: np.ndarray, lung: np.ndarray) -> float:
    area = int(lung.sum())
    return float((inf & lung).sum()) / area if area else 0.0


def severity(lung: np.ndarray, infection: np.ndarray) -> SeverityFigures:
    right, left = split_lungs(lung)
    rs, ls = _share(infection, right), _share(infection, left)
    rg, lg = grade(rs), grade(ls)
    return SeverityFigures(
        lung_area_px=int(lung.sum()),
        right_lung_area_px=int(right.sum()),
        left_lung_area_px=int(left.sum()),
        infection_area_px=int((infection & lung).sum()),
        infected_pct=round(100 * _share(infection, lung), 3),
        right_infected_pct=round(100 * rs, 3),
        left_infected_pct=round(100 * ls, 3),
        right_grade=rg,
        left_grade=lg,
        total_grade=rg + lg,
    )
