"""The one result type every consumer reads: CLI files, results.csv, the API's JSON and the web page."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    "infection_probability",
    "uncertainty",
)


@dataclass
class Segmentation:
    """Masks at the input image's own size, and the figures derived from them.

    ``infection_probability`` is the stage-2 head's image-level P(infection) (None without a head);
    ``uncertainty`` is a per-pixel map (std of the infection probability across test-time
    augmentations) and ``uncertainty_score`` its mean inside the lung, both only with TTA.
    """

    source: str
    lung: np.ndarray
    infection: np.ndarray
    figures: SeverityFigures
    infection_probability: float | None = None
    uncertainty: np.ndarray | None = None
    uncertainty_score: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.lung.shape[0], self.lung.shape[1]

    def row(self) -> dict:
        """One results.csv row (keys = :data:`CSV_FIELDS`)."""
        h, w = self.size
        r = {"file": self.source, "height": h, "width": w, **self.figures.to_dict()}
        r["infection_probability"] = None if self.infection_probability is None else round(self.infection_probability, 4)
        r["uncertainty"] = None if self.uncertainty_score is None else round(self.uncertainty_score, 5)
        return r

    def to_dict(self) -> dict:
        """JSON-ready figures (no masks); the server adds encoded masks."""
        r = self.row()
        r["severity_convention"] = "right/left are the patient's (radiological: patient's right = image left)"
        return r
