"""Severity figures from a lung and an infection mask: areas, infected share per lung, grades and a severity score.

Grade per lung by infected share: 0 none, 1 under 25%, 2 25-50%, 3 50-75%, 4 75% and over; total 0-8. These are
the share of the segmented lung that the mask covers, binned: a description of the mask.

The **severity score** (0-8, one decimal) is the mask's estimate of the radiologists' *geographic extent* score
(Wong et al. 2020; Cohen et al. 2020: each lung 0-4 by the share involved, summed, as a mean of raters), so it is
read on their scale rather than as a share of the mask. Per lung, with ``s`` the infected share in [0, 1]::

    lung score = 4 * SCORE_SCALE * s ** SCORE_POWER          (0 when s = 0; at most 4 * SCORE_SCALE <= 4)
    severity_score = round(right lung score + left lung score, 1)

It is 0 with no infection, rises with either lung's share, and is bounded by 8. The two constants were fitted to
radiologists' scores (below; docs/severity.md): the scale undoes how generously the masks mark a lung compared with
how radiologists rate it (and the half grade per lung that binning adds: 30% is grade 2, 4 x 0.3 = 1.2), the power
below 1 lifts small shares (the models mark only part of diffuse disease). The integer grades stay the plain bins
of the share, a description of the mask; the score is the figure to compare with a radiologist's.

Right and left follow the radiological convention (the patient's right lung is on the image's left).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cxrseg.inference.postprocess import split_lungs

# Calibration of the severity score against radiologists' geographic extent (0-8): 41 frontal films of 31 COVID-19
# patients, each scored by three blinded radiologists (Cohen et al. 2020; ../shared/severity, never shipped nor used to
# train). Fitted by
#     python benchmarks/severity.py --covidqu ../shared/data/COVID-QU-Ex     (covid_status 'positive')
# which segments the films with the models named in CALIBRATED_FOR and picks the pair with the least mean absolute
# error over all 41 films on a grid (SCORE_SCALE 0.30-1.00, SCORE_POWER 0.30-2.00, steps 0.01). The figures quoted for
# the score (docs/severity.md, README) are cross-validated by patient: leave one patient out, refit on the rest,
# score the left-out patient's films. The score is computed from the models' masks, so the constants belong to the
# models: refit when either model or stage 2's pixel threshold changes (the script prints the new pair and says
# whether CALIBRATED_FOR matches the models it ran): the models shipped at commit 9fea76b (stage 1 of 2026-11-23,
# stage 2 of 2026-11-26). Scale 0.72 caps a lung at 2.9 and a film at 5.8: these models mark whole lungs on films the
# radiologists scored anywhere from 0 to 8 (mean 4.8), so a whole-lung mask is best read as about 5.8.
SCORE_SCALE = 0.72
SCORE_POWER = 0.63
CALIBRATED_FOR = "lung sha256 f4e304ee52ee, infection sha256 d3c345c74a6b, pixel threshold 0.2, min area 100"


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


def lung_score(share: float, scale: float = SCORE_SCALE, power: float = SCORE_POWER) -> float:
    """One lung's calibrated score, 0 to ``4 * min(scale, 1)``, from its infected share in [0, 1] (unrounded)."""
    s = min(max(float(share), 0.0), 1.0)
    return 4.0 * min(max(scale, 0.0), 1.0) * s**power if s > 0 else 0.0


def severity_score(right_share: float, left_share: float, scale: float = SCORE_SCALE,
                   power: float = SCORE_POWER) -> float:
    """The severity score 0-8 (one decimal) from the two lungs' infected shares: see the module docstring."""
    return round(min(8.0, lung_score(right_share, scale, power) + lung_score(left_share, scale, power)), 1)


@dataclass(frozen=True)
class SeverityFigures:
    """Pixel areas at the input image's size, infected percentages (0-100), grades (0-4 per lung, 0-8 total) and
    ``severity_score``: the continuous 0-8 estimate of radiologists' geographic extent score (module docstring)."""

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
    severity_score: float

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
        severity_score=severity_score(rs, ls),
    )
