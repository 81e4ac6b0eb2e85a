"""Severity figures from a lung and an infection mask: areas, infected share per lung, grades and a severity score.

Grade per lung by infected share: 0 none, 1 under 25%, 2 25-50%, 3 50-75%, 4 75% and over; total 0-8. These are
the share of the segmented lung that the mask covers, binned: a description of the mask.

The **severity score** (0-8, one decimal) estimates the radiologists' *geographic extent* score (Wong et al. 2020;
Cohen et al. 2020: each lung 0-4 by the share involved by ground-glass opacity or consolidation, summed, as a mean of
raters), so it is read on their scale rather than as a share of the mask. Per lung, with ``s`` the infected share in
[0, 1] and ``d`` the lung's *density*::

    lung score = clip(EXTENT * s ** POWER + DENSITY * d + OFFSET, 0, 4)     (0 when s = 0)
    severity_score = round(right lung score + left lung score, 1)

The density ``d`` is the mean percentile rank of the lung's pixels among all the film's pixels (the lung's mean on
the histogram-equalised film, 0-1): aerated lung is among the darkest of a film, opacified lung is not. It is
unchanged by any monotone tone curve (gamma, contrast window, equalisation), so it reads the same across scanners,
and it carries what the mask's extent cannot: how dense the marked lung is. The masks mark whole lungs on films the
radiologists scored anywhere from 0 to 8, and there the extent alone cannot tell them apart. The four constants
were fitted to radiologists' scores (below; docs/severity.md). A lung the mask does not mark scores 0, whatever its
density. The integer grades stay the plain bins of the share, a description of the mask; the score is the figure
to compare with a radiologist's.

Right and left follow the radiological convention (the patient's right lung is on the image's left).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cxrseg.data.normalize import equalize
from cxrseg.inference.postprocess import split_lungs


@dataclass(frozen=True)
class ScoreCalibration:
    """The severity score's four constants (module docstring): per lung
    ``clip(extent * share ** power + density * lung_density + offset, 0, 4)``, 0 for an unmarked lung."""

    extent: float
    power: float
    density: float
    offset: float

    def lung_score(self, share: float, lung_density: float) -> float:
        """One lung's score, 0-4 (unrounded)."""
        s = min(max(float(share), 0.0), 1.0)
        if s <= 0:
            return 0.0
        return min(max(self.extent * s**self.power + self.density * float(lung_density) + self.offset, 0.0), 4.0)


# Calibration against radiologists' geographic extent (0-8): 41 frontal films of 31 COVID-19 patients, each scored by
# three blinded radiologists (Cohen et al. 2020; ../shared/severity, never shipped nor used to train). Fitted by
#     python benchmarks/severity.py --covidqu ../shared/data/COVID-QU-Ex     (covid_status 'positive')
# which segments the films with the models named in CALIBRATED_FOR and fits the four constants for the least mean
# absolute error over all 41 films (cxrseg.evaluation.severity_fit: an exact least-absolute-deviations fit of
# extent, density and offset for each power on a grid). The figures quoted for the score (docs/severity.md, README)
# are cross-validated by patient: leave one patient out, refit on the rest, score the left-out patient's films. The
# shares come from the models' masks, so the constants belong to the models: refit when either model or stage 2's
# pixel threshold changes (the script prints the new constants and says whether CALIBRATED_FOR matches the models
# it ran).
SCORE = ScoreCalibration(extent=3.13, power=0.48, density=3.72, offset=-1.59)
CALIBRATED_FOR = "lung sha256 f4e304ee52ee, infection sha256 9c565111faee, pixel threshold 0.2, min area 100"


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


def severity_score(right_share: float, left_share: float, right_density: float, left_density: float,
                   calibration: ScoreCalibration = SCORE) -> float:
    """The severity score 0-8 (one decimal) from each lung's infected share and density: module docstring."""
    total = calibration.lung_score(right_share, right_density) + calibration.lung_score(left_share, left_density)
    return round(min(8.0, total), 1)


def lung_densities(image: np.ndarray, lung: np.ndarray, box: tuple[int, int, int, int] | None = None
                   ) -> tuple[float, float]:
    """(right, left) lung density: the mean percentile rank of each lung's pixels among the film's (0-1; 0 for a
    missing lung). ``image`` is (H, W) in [0, 1] and ``lung`` a bool mask of the same size; any size works (the
    pipeline uses the model-size image, where it costs nothing). ``box`` (top, bottom, left, right): rank among
    the pixels inside it only, e.g. :func:`cxrseg.data.borders.content_box`, so that flat edge bands (padding,
    collimation) do not shift the ranks."""
    if image.shape != lung.shape:
        raise ValueError(f"image {image.shape} and lung mask {lung.shape} differ in size")
    if box is not None:
        t, b, le, r = box
        image, lung = image[t:b, le:r], lung[t:b, le:r]
    eq = equalize(np.asarray(image, np.float32))
    return tuple(float(eq[m].mean()) if m.any() else 0.0 for m in split_lungs(lung))  # type: ignore[return-value]


@dataclass(frozen=True)
class SeverityFigures:
    """Pixel areas at the input image's size, infected percentages (0-100), grades (0-4 per lung, 0-8 total), each
    lung's density (0-1) and ``severity_score``: the continuous 0-8 estimate of radiologists' geographic extent
    score (module docstring)."""

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
    right_lung_density: float
    left_lung_density: float
    severity_score: float

    def to_dict(self) -> dict:
        return asdict(self)


def _share(inf: np.ndarray, lung: np.ndarray) -> float:
    area = int(lung.sum())
    return float((inf & lung).sum()) / area if area else 0.0


def severity(lung: np.ndarray, infection: np.ndarray, density: tuple[float, float],
             sides: tuple[np.ndarray, np.ndarray] | None = None) -> SeverityFigures:
    """The figures of one film from its lung and infection masks (same size) and its (right, left) lung density
    (:func:`lung_densities`). ``sides``: ``split_lungs(lung)`` when the caller has it already."""
    right, left = split_lungs(lung) if sides is None else sides
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
        right_lung_density=round(float(density[0]), 3),
        left_lung_density=round(float(density[1]), 3),
        severity_score=severity_score(rs, ls, *density),
    )
