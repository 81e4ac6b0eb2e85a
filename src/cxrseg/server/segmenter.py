"""``Segmenter``: one upload's bytes in, a :class:`SegmentResponse` out, run on an inference worker thread.

The pipeline is shared by every worker, so calls into it are serialised by a lock; decoding and PNG encoding
run outside the lock.
"""

from __future__ import annotations

import base64
import functools
import datetime as _dt
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from cxrseg.data.io import XRay, decode_xray
from cxrseg.inference.result import Segmentation
from cxrseg.inference.writers import NoDicomSeg, dicom_seg_algorithms, dicom_seg_bytes
from cxrseg.server.images import encode_images
from cxrseg.server.records import save_record
from cxrseg.server.schemas import Figures, SegmentResponse
from cxrseg.server.settings import ServerSettings


def record_id() -> str:
    """A sortable, unique name for one request: UTC time plus a random suffix."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


class Segmenter:
    """Bytes in, :class:`SegmentResponse` out; runs on a worker thread, with the shared pipeline behind a lock."""

    def __init__(self, pipeline: Any, settings: ServerSettings) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self._lock = threading.Lock()
        self.model_names = {
            "lung": str(pipeline.lung_card.get("name", "lung")),
            "infection": str(pipeline.infection_card.get("name", "infection")),
            "backend": str(pipeline.backend_name),
        }
        if getattr(pipeline, "classifier", None) is not None:  # the whole-film classifier beside stage 2's head
            self.model_names["classifier"] = str(pipeline.classifier.card.get("name", "classifier"))

    @functools.cached_property
    def _algorithms(self):
        """The SEG's algorithm identifications: the same for every upload, and they hash the weights files."""
        return dicom_seg_algorithms(self.pipeline)

    def dicom_seg(self, xray: XRay, seg: Segmentation) -> tuple[str | None, str | None]:
        """(the DICOM SEG's bytes in base64, None), or (None, why there is none) for an upload that cannot have one.

        As ``cxrseg predict --dicom-seg`` does, a missing SEG is a note beside the segmentation, not an error.
        """
        try:
            return base64.b64encode(dicom_seg_bytes(xray, seg, self._algorithms)).decode(), None
        except NoDicomSeg as e:
            if e.not_dicom:
                return None, "no DICOM SEG: the upload is not DICOM, and a DICOM SEG must reference a DICOM image"
            return None, f"no DICOM SEG: {e.reason}"

    def __call__(self, data: bytes, filename: str, dicom_seg: bool = False, covid_status: str = "unknown") -> SegmentResponse:
        start = time.perf_counter()
        xray = decode_xray(data, filename, self.settings.max_pixels)
        with self._lock:
            seg = self.pipeline.predict([xray], covid_status=covid_status)[0]
        seg_b64, seg_note = self.dicom_seg(xray, seg) if dicom_seg else (None, None)
        response = SegmentResponse(
            id=record_id(),
            figures=Figures(**seg.to_dict()),
            images=encode_images(xray, seg, self.settings.preview_max_side),
            models=self.model_names,
            elapsed_ms=0.0,
            dicom_seg_base64=seg_b64,
            dicom_seg_note=seg_note,
        )
        if self.settings.save_dir is not None:
            save_record(Path(self.settings.save_dir), response, data)
        response.elapsed_ms = round(1000 * (time.perf_counter() - start), 1)
        return response
