"""The pydantic models of the JSON API: what /api/v1 answers, and so what /docs and the OpenAPI schema show.

Figures keep the field names of ``Segmentation.to_dict()``, so the API, results.csv and the page agree.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Figures(BaseModel):
    """The figures of :meth:`Segmentation.to_dict`, unchanged: the same names as results.csv and the page."""

    model_config = ConfigDict(extra="allow")

    file: str = Field(description="the uploaded file's name")
    height: int
    width: int
    lung_area_px: int
    right_lung_area_px: int
    left_lung_area_px: int
    infection_area_px: int
    infected_pct: float = Field(description="infected share of both lungs, 0-100")
    right_infected_pct: float
    left_infected_pct: float
    right_grade: int = Field(description="0 none, 1 under 25%, 2 25-50%, 3 50-75%, 4 75% and over")
    left_grade: int
    total_grade: int = Field(description="right + left grade, 0-8")
    right_lung_density: float = Field(
        description="mean percentile rank of the lung's pixels in the film, 0-1 (opacified lung is brighter)")
    left_lung_density: float
    severity_score: float = Field(
        description="continuous 0-8 estimate of radiologists' geographic extent score, one decimal (docs/severity.md)")
    infection_probability: float | None = Field(
        description="P(COVID-19) for the film from the stage-2 image-level head (validated on COVID-QU-Ex only)")
    covid_status: str = Field(description="what the caller said: 'unknown', or 'positive' (veto skipped)")
    covid_like: str | None = Field(description="'yes'/'no': the head's call at its threshold; 'confirmed' if positive")
    opacity_pct: float = Field(description="infection-pattern opacity in both lungs, 0-100, before any veto")
    right_opacity_pct: float
    left_opacity_pct: float
    uncertainty: float | None = Field(description="mean TTA spread inside the lung, only with TTA")
    lung_confidence: float | None = Field(
        description="stage 1's mean lung probability inside its mask, 0-1; the lungs are doubtful below 0.96 "
                    "(0.95 with TTA, 0.94 in the accurate mode), and the note says so")
    note: str = Field(description="sentences when the lungs are doubtful, or opacity was not counted as COVID-19 "
                      "infection; empty otherwise")
    severity_convention: str


class Images(BaseModel):
    """Base64-encoded PNGs. Masks are 0/255 at the input size; original and overlay are display previews."""

    original: str = Field(description="the X-ray as 8-bit grey, longest side at most preview_max_side")
    overlay: str = Field(description="RGB: lung outlined in cyan, COVID-19 infection filled in red, opacity judged "
                         "not COVID-19-like in amber; preview size")
    lung_mask: str = Field(description="0/255 lung mask at the input size")
    infection_mask: str = Field(description="0/255 infection mask at the input size")


class SegmentResponse(BaseModel):
    """One segmented X-ray: its figures, its pictures, and which models made them."""

    id: str
    figures: Figures
    images: Images
    models: dict[str, str]
    elapsed_ms: float
    dicom_seg_base64: str | None = Field(
        None, description="with ?dicom_seg=true (DICOM uploads only): a DICOM Segmentation, binary, segments 1 lungs "
        "and 2 COVID-19 infection at the upload's size, referencing it; the file's bytes, base64")
    dicom_seg_note: str | None = Field(
        None, description="with ?dicom_seg=true when no SEG could be made, why: the upload is not DICOM (a SEG must "
        "reference a DICOM image), or its header lacks what a SEG must reference; the segmentation is returned as "
        "usual, as `cxrseg predict --dicom-seg` writes the other outputs and notes the missing SEG")


class ErrorResponse(BaseModel):
    """What went wrong, in one sentence a person can act on."""

    detail: str


class Health(BaseModel):
    """Liveness, load (jobs admitted now, running or waiting, against how many may be) and upload limits."""

    status: str
    version: str
    backend: str
    workers: int
    in_flight: int
    capacity: int
    max_upload_mb: float
    max_pixels: int
    auth_required: bool = Field(description="whether the other /api/ calls need 'Authorization: Bearer KEY'")
