"""Every output file of one segmented X-ray, written from the one :class:`Segmentation` (and its :class:`XRay`).

``cxrseg predict``, ``cxrseg demo`` and the server all write through here, so a format is defined once:

* ``STEM_lung.png``, ``STEM_infection.png``: 8-bit 0/255 masks at the input's own size;
* ``STEM_overlay.png``: the X-ray with the lung outlined in cyan, the COVID-19 infection filled in red and any
  opacity judged not COVID-19-like (so not counted as infection) in amber;
* ``STEM_uncertainty.png``: the flip-TTA spread (only with TTA), 0-255 for a std of 0-0.5;
* ``STEM_seg.dcm``: for a DICOM input, a DICOM Segmentation (binary, made with highdicom) of the same two
  masks, referencing the source study, series and instance (:func:`write_dicom_seg`).

Every file is written atomically (:mod:`cxrseg._atomic`): a crash never leaves half a file.

The DICOM SEG's two segments and their coded concepts (SNOMED CT, from DICOM CID 7150/7151):

1. **Lungs**: category *Anatomical Structure* (SCT 91723000), type *Lung* (SCT 39607008); both lungs in
   one segment (the figures give right and left apart).
2. **COVID-19 infection**: category *Morphologically Abnormal Structure* (SCT 49755003, "Morphologically
   Altered Structure" in the current standard), type *Inflammation* (SCT 409774005, "Inflammatory
   morphology"), anatomic region *Lung* (SCT 39607008). The model marks the opacities of COVID-19 pneumonia
   (ground glass and consolidation); CID 7151 has no opacity concept, and inflammation is the morphology
   of an infection, closer than the generic *Lesion* (SCT 52988006).

Each segment carries the model that made it (card name, cxrseg version, thresholds) as its algorithm
identification (family: Artificial Intelligence, DCM 123110).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cxrseg import __version__
from cxrseg._atomic import atomic_path
from cxrseg.data.io import XRay
from cxrseg.errors import CxrsegError
from cxrseg.inference.overlay import render_overlay
from cxrseg.inference.result import Segmentation

if TYPE_CHECKING:
    import highdicom as hd

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
SEG_SERIES_NUMBER = 900  # a series number apart from the usual acquisition series
LUNG_SEGMENT, INFECTION_SEGMENT = 1, 2
# Type 2 patient/study attributes highdicom copies from the source; a source without them gets them empty.
_TYPE2_FROM_SOURCE = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                      "StudyDate", "StudyTime", "ReferringPhysicianName")


def save_png(path: Path, array: np.ndarray) -> None:
    """Write an 8-bit grey or RGB array as PNG, atomically."""
    # zlib level 1: masks and overlays compress almost as well as at the default 6, several times faster.
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=1)


def write_outputs(out: Path, stem: str, xray: XRay, seg: Segmentation) -> None:
    """The mask PNGs, the overlay and (with TTA) the uncertainty map of one image, into ``out``."""
    save_png(out / f"{stem}_lung.png", seg.lung.astype(np.uint8) * 255)
    save_png(out / f"{stem}_infection.png", seg.infection.astype(np.uint8) * 255)
    save_png(out / f"{stem}_overlay.png", render_overlay(xray.pixels, seg.lung, seg.infection, opacity=seg.opacity))
    if seg.uncertainty is not None:
        scaled = np.clip(seg.uncertainty / 0.5, 0, 1)  # the std of values in [0, 1] is at most 0.5
        save_png(out / f"{stem}_uncertainty.png", np.round(scaled * 255).astype(np.uint8))


# -- DICOM Segmentation ------------------------------------------------------------------------------------


class NoDicomSeg(CxrsegError):
    """This input cannot get a DICOM SEG (not DICOM, or its header lacks what a SEG must reference)."""

    def __init__(self, source: str, reason: str, not_dicom: bool = False) -> None:
        super().__init__(f"{source}: no DICOM SEG ({reason})")
        self.source, self.reason, self.not_dicom = source, reason, not_dicom


def _algorithm(card: dict, parameters: dict[str, Any]) -> hd.AlgorithmIdentificationSequence:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    version = str(card.get("software", {}).get("cxrseg") or __version__)
    params = {k: str(v) for k, v in parameters.items() if v is not None}
    if card.get("created"):
        params["weights_created"] = str(card["created"])
    return hd.AlgorithmIdentificationSequence(
        name=str(card.get("name", "cxrseg"))[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=version[:64],
        source="cxrseg",
        parameters=params,
    )


def dicom_seg_algorithms(pipeline: Any) -> tuple[hd.AlgorithmIdentificationSequence, hd.AlgorithmIdentificationSequence]:
    """(lung, infection) algorithm identifications of a :class:`TwoStagePipeline`: card name, the cxrseg
    version that made the weights, and the decision the pipeline applies (thresholds, TTA)."""
    tta = bool(getattr(pipeline, "tta", False))
    lung = _algorithm(pipeline.lung_card, {"threshold": pipeline.lung_threshold, "tta": tta})
    infection = _algorithm(
        pipeline.infection_card,
        {"threshold": pipeline.infection_threshold, "image_threshold": pipeline.image_threshold,
         "min_area": pipeline.min_area, "tta": tta},
    )
    return lung, infection


def _source_header(xray: XRay, seg: Segmentation):
    """The source's DICOM header, checked and completed for highdicom; raises :class:`NoDicomSeg`."""
    ds = xray.dicom
    if ds is None:
        raise NoDicomSeg(xray.source, "the input is not DICOM", not_dicom=True)
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID") if not ds.get(k)]
    if missing:
        raise NoDicomSeg(xray.source, f"its DICOM header lacks {', '.join(missing)}, which a SEG must reference")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise NoDicomSeg(xray.source, "multi-frame DICOM: only its first frame was segmented")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if (rows, cols) != seg.size:
        raise NoDicomSeg(xray.source, f"the masks are {seg.size[1]}x{seg.size[0]}, the DICOM image {cols}x{rows}")
    absent = [k for k in _TYPE2_FROM_SOURCE if k not in ds]
    # A projection X-ray (no patient position) with PixelSpacing but no SliceThickness: highdicom 0.28 would copy
    # the spacing into a Pixel Measures item without SliceThickness, which its own reader then rejects. The SEG
    # of a projection image maps pixel for pixel onto the instance it references, so it goes without.
    drop_spacing = "PixelSpacing" in ds and "SliceThickness" not in ds and "ImagePositionPatient" not in ds
    if absent or drop_spacing:  # a shallow copy leaves the caller's header alone
        ds = ds.copy()
        for k in absent:
            setattr(ds, k, None)  # Type 2: present but empty means unknown
        if drop_spacing:
            del ds.PixelSpacing
    return ds


def build_dicom_seg(xray: XRay, seg: Segmentation, algorithms: tuple) -> hd.seg.Segmentation:
    """A binary DICOM Segmentation of ``seg``'s lung and infection masks on ``xray``'s source DICOM image.

    ``algorithms``: from :func:`dicom_seg_algorithms`. Raises :class:`NoDicomSeg` when the input is not
    DICOM or cannot be referenced. Both segments always get their frame, an empty infection included.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source = _source_header(xray, seg)
    lung_algorithm, infection_algorithm = algorithms
    automatic = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    segments = [
        hd.seg.SegmentDescription(
            segment_number=LUNG_SEGMENT, segment_label="Lungs",
            segmented_property_category=codes.SCT.AnatomicalStructure, segmented_property_type=codes.SCT.Lung,
            algorithm_type=automatic, algorithm_identification=lung_algorithm,
        ),
        hd.seg.SegmentDescription(
            segment_number=INFECTION_SEGMENT, segment_label="COVID-19 infection",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.InflammatoryMorphology,
            algorithm_type=automatic, algorithm_identification=infection_algorithm,
            anatomic_regions=[codes.SCT.Lung],
        ),
    ]
    masks = np.stack([seg.lung, seg.infection], axis=-1)[None].astype(bool)  # (frames, rows, columns, segments)
    try:
        return hd.seg.Segmentation(
            source_images=[source],
            pixel_array=masks,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments,
            series_instance_uid=hd.UID(),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="cxrseg",
            manufacturer_model_name="cxrseg two-stage U-Net",
            software_versions=__version__,
            device_serial_number="none",
            content_label="CXRSEG",
            content_description="Lungs, COVID-19 infection (cxrseg; research use only)",
            series_description="cxrseg lungs + COVID-19 infection",
            content_qualification=hd.ContentQualificationValues.RESEARCH,
            omit_empty_frames=False,
        )
    except (AttributeError, TypeError, ValueError) as e:  # highdicom's checks of the source header
        raise NoDicomSeg(xray.source, f"highdicom could not make one from its header: {e}") from e


def dicom_seg_bytes(xray: XRay, seg: Segmentation, algorithms: tuple) -> bytes:
    """The DICOM SEG of :func:`build_dicom_seg` as a DICOM file's bytes (with its file meta)."""
    buffer = io.BytesIO()
    build_dicom_seg(xray, seg, algorithms).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_dicom_seg(path: Path, xray: XRay, seg: Segmentation, algorithms: tuple) -> Path:
    """Write the DICOM SEG to ``path`` atomically; raises :class:`NoDicomSeg` (writing nothing) when the
    input cannot have one."""
    data = dicom_seg_bytes(xray, seg, algorithms)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
