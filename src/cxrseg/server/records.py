"""Saving an upload and its results to ``save_dir`` (only when set; otherwise uploads stay in memory only).

Each record is written all at once (temp folder + rename), with the file names ``cxrseg predict`` uses.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

from cxrseg.data.io import IMAGE_SUFFIXES, is_dicom_bytes
from cxrseg.server.schemas import SegmentResponse


def upload_suffix(data: bytes, filename: str) -> str:
    """A file suffix for the saved upload: .dcm for DICOM content, else the client's if it is an image suffix."""
    if is_dicom_bytes(data):
        return ".dcm"
    suffix = Path(filename).suffix.lower()
    return suffix if suffix in IMAGE_SUFFIXES else ".bin"


def save_record(save_dir: Path, response: SegmentResponse, upload: bytes) -> Path:
    """Write the upload, masks, overlay and figures to ``save_dir/<id>/``, all at once (temp folder + rename).

    Files are named as ``cxrseg predict`` names them, with the stem 'upload': upload_lung.png and so on.
    """
    final = save_dir / response.id
    tmp = save_dir / f".{response.id}.tmp"
    tmp.mkdir(parents=True)
    try:
        (tmp / f"upload{upload_suffix(upload, response.figures.file)}").write_bytes(upload)
        for field, name in (("lung_mask", "lung"), ("infection_mask", "infection"), ("overlay", "overlay")):
            (tmp / f"upload_{name}.png").write_bytes(base64.b64decode(getattr(response.images, field)))
        record = response.model_dump(exclude={"images"})
        (tmp / "result.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
