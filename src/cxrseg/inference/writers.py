"""Every output file of one segmented X-ray, written from the one :class:`Segmentation` (and its :class:`XRay`).

``cxrseg predict``, ``cxrseg demo`` and the server all write through here, so a format is defined once:

* ``STEM_lung.png``, ``STEM_infection.png``: masks at the input's own size, stored as 2-bit greyscale PNGs
  (0 and 3) that every PNG reader scales to 0/255 (PIL opens them as mode 'L', 0/255; :func:`encode_mask_png`);
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

Each segment carries the model that made it (card name, thresholds, and as its version the cxrseg version
with the weights' SHA-256 prefix, where the caller names the weights files) as its algorithm identification
(family: Artificial Intelligence, DCM 123110).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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


# -- PNG encoding ------------------------------------------------------------------------------------------
# Written here rather than by PIL: PIL tries all five PNG row filters on every row of an 8-bit or RGB image and
# keeps the best, which cost half the time of an overlay; masks have two values and need two bits a pixel.
# zlib level 1 (level 6 was several times slower for a few percent smaller files).

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY, _RGB = 0, 2  # PNG colour types


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(rows: np.ndarray, width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """A PNG from its filtered scanlines (H, 1 + row bytes) uint8, each row led by its filter type."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (_PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
            + _chunk(b"IEND", b""))


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A (H, W) bool mask as a 2-bit greyscale PNG with samples 0 and 3, which PNG readers scale to 0 and 255.

    The smallest depth that PIL still opens as mode 'L' (1-bit greyscale opens as mode '1'), so
    ``np.asarray(Image.open(f))`` stays uint8 0/255 as with 8-bit files, at a quarter of the data to deflate.
    """
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    rows = np.zeros((h, (2 * w + 7) // 8 + 1), np.uint8)  # filter 0 (None): a mask's runs compress as they are
    rows[:, 1:] = np.packbits(np.repeat(mask, 2, axis=1), axis=1)  # each pixel twice: 0b11 where set
    return _png(rows, w, h, 2, _GREY)


def encode_png(array: np.ndarray) -> bytes:
    """An 8-bit grey (H, W) or RGB (H, W, 3) uint8 array as PNG, every row with the 'Up' filter."""
    a = np.ascontiguousarray(array, np.uint8)
    if a.ndim == 3 and a.shape[2] == 3:
        colour = _RGB
    elif a.ndim == 2:
        colour = _GREY
    else:
        raise ValueError(f"encode_png needs (H, W) or (H, W, 3) uint8, not {a.shape}")
    h, w = a.shape[:2]
    flat = a.reshape(h, -1)
    rows = np.empty((h, flat.shape[1] + 1), np.uint8)
    rows[:, 0] = 2  # Up: each byte minus the one above (wrapping), the first row against zeros
    rows[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])
    return _png(rows, w, h, 8, colour)


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_png(path: Path, array: np.ndarray) -> None:
    """Write a bool mask (2-bit, read back as 0/255), or an 8-bit grey or RGB array, as PNG, atomically."""
    _write_bytes(path, encode_mask_png(array) if array.dtype == bool else encode_png(array))


def write_outputs(out: Path, stem: str, xray: XRay, seg: Segmentation) -> None:
    """The mask PNGs, the overlay and (with TTA) the uncertainty map of one image, into ``out``."""
    save_png(out / f"{stem}_lung.png", np.asarray(seg.lung, bool))
    save_png(out / f"{stem}_infection.png", np.asarray(seg.infection, bool))
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


def algorithm_version(card: dict, weights: str | Path | None = None) -> str:
    """The SEG's AlgorithmVersion (an LO, at most 64 characters): the cxrseg version that made the weights and,
    given the weights file, its SHA-256 prefix, so that two sets of weights never share a version."""
    version = str(card.get("software", {}).get("cxrseg") or __version__)
    if weights is None:
        return version[:64]
    from cxrseg.models.store import weights_digest

    suffix = f" (weights sha256 {weights_digest(weights)})"
    return version[: 64 - len(suffix)] + suffix


def _algorithm(card: dict, parameters: dict[str, Any],
               weights: str | Path | None) -> hd.AlgorithmIdentificationSequence:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    params = {k: str(v) for k, v in parameters.items() if v is not None}
    if card.get("created"):
        params["weights_created"] = str(card["created"])
    return hd.AlgorithmIdentificationSequence(
        name=str(card.get("name", "cxrseg"))[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=algorithm_version(card, weights),
        source="cxrseg",
        parameters=params,
    )


def dicom_seg_algorithms(
    pipeline: Any, weights: Mapping[str, str | Path] | None = None,
) -> tuple[hd.AlgorithmIdentificationSequence, hd.AlgorithmIdentificationSequence]:
    """(lung, infection) algorithm identifications of a :class:`TwoStagePipeline`: card name, version (see
    :func:`algorithm_version`; ``weights`` maps 'lung' and 'infection' to the weights files, by default those the
    pipeline was built from) and the decision applied (thresholds, TTA, the whole-film
    classifier's weights digest when one joins stage 2's decision)."""
    from cxrseg.models.store import weights_digest

    weights = weights or getattr(pipeline, "weights", None) or {}
    tta = bool(getattr(pipeline, "tta", False))
    classifier = getattr(pipeline, "classifier", None)
    # the accurate mode averages a second stage-1 model with the first: its digest joins the parameters
    more = {f"{k}_sha256": weights_digest(v) for k, v in weights.items() if k.startswith("lung-")}
    lung = _algorithm(pipeline.lung_card, {"threshold": pipeline.lung_threshold, "tta": tta, **more}, weights.get("lung"))
    infection = _algorithm(
        pipeline.infection_card,
        {"threshold": pipeline.infection_threshold, "image_threshold": pipeline.image_threshold,
         "min_area": pipeline.min_area, "tta": tta,
         "classifier_sha256": None if classifier is None else weights_digest(classifier.weights)},
        weights.get("infection"),
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
