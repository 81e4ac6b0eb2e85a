"""The one result type every consumer reads: CLI files, results.csv, the API's JSON and the web page."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrseg.inference.lung_check import LOW_LUNG_CONFIDENCE, doubtful, lung_warning
from cxrseg.inference.severity import SeverityFigures

CSV_FIELDS = (
    "file",
    "height",
    "width",
    "lung_area_px",
    "right_lung_area_px",
    "left_lung_area_px",
    "infection_area_px",
    "infected_pct",
    "right_infected_pct",
    "left_infected_pct",
    "right_grade",
    "left_grade",
    "total_grade",
    "right_lung_density",
    "left_lung_density",
    "severity_score",
    "infection_probability",
    "covid_status",
    "covid_like",
    "opacity_pct",
    "right_opacity_pct",
    "left_opacity_pct",
    "uncertainty",
    "lung_confidence",
    "note",
)

VALIDATION_CAVEAT = "this judgement was not validated outside COVID-QU-Ex"


@dataclass
class Segmentation:
    """Masks at the input image's own size, and the figures derived from them. Two claims are kept apart:

    * ``opacity`` / ``opacity_figures``: the extent of infection-pattern opacity in each lung, as segmented,
      before any image-level judgement;
    * ``infection_probability``: P(COVID-19) for the film from the stage-2 head (None without a head), and
      ``infection`` / ``figures``: the COVID-19 infection mask and grades, which are the opacity unless the
      head judged the film not COVID-19-like (P below ``image_threshold``) while ``covid_status`` is
      'unknown'. With 'positive' (confirmed by the user) the judgement is skipped.

    ``uncertainty`` is a per-pixel map (std of the infection probability across test-time augmentations) and
    ``uncertainty_score`` its mean inside the lung, both only with TTA. ``lung_confidence`` is stage 1's mean
    probability inside its lung mask (:mod:`cxrseg.inference.lung_check`): low on inputs that are not frontal
    chest X-rays, and on films whose lungs are likely wrong.
    """

    source: str
    lung: np.ndarray
    infection: np.ndarray
    figures: SeverityFigures
    infection_probability: float | None = None
    uncertainty: np.ndarray | None = None
    uncertainty_score: float | None = None
    opacity: np.ndarray | None = None  # None: same as ``infection`` (no image-level decision was made)
    opacity_figures: SeverityFigures | None = None
    covid_status: str = "unknown"
    image_threshold: float | None = None
    lung_confidence: float | None = None
    lung_confidence_threshold: float = LOW_LUNG_CONFIDENCE["plain"]  # below it the lungs are doubtful

    def __post_init__(self) -> None:
        if self.opacity is None:
            self.opacity, self.opacity_figures = self.infection, self.figures

    @property
    def covid_like(self) -> bool | None:
        """The head's call: P(COVID-19) at or above its threshold (None: no head, or no threshold)."""
        if self.infection_probability is None or self.image_threshold is None:
            return None
        return self.infection_probability >= self.image_threshold

    @property
    def vetoed(self) -> bool:
        """Opacity was found but not counted as COVID-19 infection, because the film was judged not COVID-like."""
        return bool(self.opacity.any()) and not self.infection.any()

    @property
    def lungs_doubtful(self) -> bool:
        """Stage 1 found the lungs with low confidence: perhaps not a frontal chest X-ray, or wrong lungs."""
        return doubtful(self.lung_confidence, self.lung_confidence_threshold)

    @property
    def note(self) -> str:
        """Plain sentences for a reader: the lungs were found with low confidence, or the two claims disagree
        (opacity judged not COVID-19-like); empty when neither."""
        notes = [lung_warning(self.lung_confidence, self.lung_confidence_threshold)]
        if self.vetoed and self.infection_probability is not None:
            notes.append(
                f"opacity in {self.opacity_figures.infected_pct:.1f}% of the lungs was judged not COVID-19-like "
                f"(P(COVID-19) {self.infection_probability:.2f} < {self.image_threshold:.2f}), so it is not counted "
                f"as COVID-19 infection; {VALIDATION_CAVEAT}"
            )
        return "; ".join(n for n in notes if n)

    @property
    def size(self) -> tuple[int, int]:
        return self.lung.shape[0], self.lung.shape[1]

    def row(self) -> dict:
        """One results.csv row (keys = :data:`CSV_FIELDS`)."""
        h, w = self.size
        r = {"file": self.source, "height": h, "width": w, **self.figures.to_dict()}
        r["infection_probability"] = None if self.infection_probability is None else round(self.infection_probability, 4)
        r["covid_status"] = self.covid_status
        like = self.covid_like
        r["covid_like"] = "confirmed" if self.covid_status == "positive" else (None if like is None else ("yes" if like else "no"))
        of = self.opacity_figures
        r["opacity_pct"], r["right_opacity_pct"], r["left_opacity_pct"] = (
            of.infected_pct, of.right_infected_pct, of.left_infected_pct)
        r["uncertainty"] = None if self.uncertainty_score is None else round(self.uncertainty_score, 5)
        r["lung_confidence"] = None if self.lung_confidence is None else round(self.lung_confidence, 4)
        r["note"] = self.note
        return r

    def to_dict(self) -> dict:
        """JSON-ready figures (no masks); the server adds encoded masks."""
        r = self.row()
        r["severity_convention"] = "right/left are the patient's (radiological: patient's right = image left)"
        return r
