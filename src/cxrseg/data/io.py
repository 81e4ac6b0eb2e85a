"""Read any chest X-ray (PNG, JPEG, TIFF, 8/16-bit, grey or colour, DICOM) into one float array in [0, 1].

Every entry point (dataset, CLI, server) reads through here, so an image is normalised the same way
whether it is a training PNG or a hospital DICOM:

* 8-bit images are divided by 255 (training images are 8-bit, so this is the reference scale);
* deeper images (16-bit PNG/TIFF, DICOM) are stretched from their own min to max, after DICOM's
  modality LUT (rescale slope/intercept) and VOI LUT/windowing, and MONOCHROME1 is inverted;
* colour and palette images are converted to luminance; EXIF orientation is applied.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxrseg.errors import InputFileError

if TYPE_CHECKING:
    from pydicom import Dataset

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"})
MAX_PIXELS = 8192 * 8192  # refuse larger images: decompression bombs and out-of-memory
_DICOM_MAGIC_OFFSET = 128


def is_dicom_bytes(data: bytes) -> bool:
    return len(data) >= _DICOM_MAGIC_OFFSET + 4 and data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM"


@dataclass(frozen=True)
class XRay:
    """A decoded X-ray: ``pixels`` float32 (H, W) in [0, 1]; ``source`` names where it came from.

    ``dicom`` is the source's DICOM header (its pydicom Dataset without the pixel data) when the input was
    DICOM, else None: the DICOM SEG writer references the source study, series and instance from it.
    """

    pixels: np.ndarray
    source: str
    dicom: Dataset | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the original image."""
        return self.pixels.shape[0], self.pixels.shape[1]


def _stretch(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros_like(a, dtype=np.float32)
    return (a - lo) / (hi - lo)


def _from_pil(img: Image.Image, source: str, max_pixels: int) -> XRay:
    w, h = img.size
    if w * h > max_pixels:
        raise InputFileError(source, f"image is {w}x{h} pixels, over the limit of {max_pixels} pixels", "too_large")
    if w < 16 or h < 16:
        raise InputFileError(source, f"image is only {w}x{h} pixels; an X-ray needs at least 16x16")
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        return XRay(_stretch(arr), source)
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA"):
        # Flatten transparency onto black, the background of an X-ray.
        background = Image.new(mode, img.size, (0, 0, 0, 255) if mode == "RGBA" else (0, 255))
        img = Image.alpha_composite(background.convert("RGBA"), img.convert("RGBA"))
    if img.mode != "L":
        img = img.convert("L")
    return XRay(np.asarray(img, dtype=np.float32) / 255.0, source)


def _read_dicom(data: bytes, source: str, max_pixels: int) -> XRay:
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError as e:  # pragma: no cover - pydicom is a declared dependency
        raise InputFileError(source, f"DICOM support needs pydicom ({e})") from e
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as e:  # pydicom raises many types for broken files
        raise InputFileError(source, f"unreadable DICOM ({type(e).__name__}: {e})") from e
    if arr.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
        arr = arr[0]  # multi-frame: take the first frame
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if arr.ndim != 2:
        raise InputFileError(source, f"DICOM pixel data has shape {arr.shape}; expected a 2-D image")
    h, w = arr.shape
    if h * w > max_pixels:
        raise InputFileError(source, f"image is {w}x{h} pixels, over the limit of {max_pixels} pixels", "too_large")
    arr = apply_modality_lut(arr, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        arr = apply_voi_lut(arr, ds, index=0)
    out = _stretch(np.asarray(arr))
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 1.0 - out
    # Keep the header only (no pixel data, no read buffer): it travels with the X-ray between processes.
    for pixel_tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if pixel_tag in ds:
            delattr(ds, pixel_tag)
    ds.buffer = None
    return XRay(out, source, dicom=ds)


def _with_content(xray: XRay, allow_blank: bool = False) -> XRay:
    """``xray``, unless every pixel has one value: a blank film (or a failed export) has nothing to segment, and
    the models would still draw lungs on it. ``allow_blank``: keep it (a dataset's image is data, not a request)."""
    if not allow_blank and float(xray.pixels.max()) - float(xray.pixels.min()) < 1e-6:
        value = float(xray.pixels.flat[0])
        raise InputFileError(xray.source, f"image is blank (every pixel has the value {value:.3g})")
    return xray


def decode_xray(data: bytes, source: str = "<upload>", max_pixels: int = MAX_PIXELS, allow_blank: bool = False) -> XRay:
    """Decode an X-ray from bytes (any supported format); errors name ``source``. A blank image (one value
    everywhere) is refused unless ``allow_blank``."""
    if not data:
        raise InputFileError(source, "file is empty", "empty")
    if is_dicom_bytes(data) or source.lower().endswith((".dcm", ".dicom")):
        return _with_content(_read_dicom(data, source, max_pixels), allow_blank)
    Image.MAX_IMAGE_PIXELS = None  # we apply our own limit, with a clearer message
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > max_pixels:
            raise InputFileError(source, f"image is {w}x{h} pixels, over the limit of {max_pixels} pixels", "too_large")
        img.load()
    except InputFileError:
        raise
    except UnidentifiedImageError as e:
        raise InputFileError(source, "not an image (PNG, JPEG, TIFF, BMP or DICOM expected)", "not_image") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InputFileError(source, f"corrupt or truncated image ({e})") from e
    return _with_content(_from_pil(img, source, max_pixels), allow_blank)


def read_xray(path: str | Path, max_pixels: int = MAX_PIXELS, allow_blank: bool = False) -> XRay:
    """Read an X-ray file; raises :class:`InputFileError` naming the file on any problem (a blank image is one,
    unless ``allow_blank``)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file not found", "missing")
    if path.is_dir():
        raise InputFileError(path, "is a folder, not an image file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputFileError(path, f"cannot read ({e.strerror})") from e
    return decode_xray(data, str(path), max_pixels, allow_blank)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a 0/255 mask PNG as a bool array; any non-zero pixel counts as foreground."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "1", "P", "I", "I;16", "RGB", "RGBA", "LA"):
                raise InputFileError(path, f"unsupported mask mode {img.mode}")
            arr = np.asarray(img.convert("L") if img.mode in ("RGB", "RGBA", "LA", "P") else img)
    except FileNotFoundError as e:
        raise InputFileError(path, "file not found", "missing") from e
    except InputFileError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputFileError(path, f"not a readable mask image ({e})") from e
    return arr > 0


def read_gray_u8(path: str | Path) -> np.ndarray:
    """Read a training image as uint8 (H, W), the form the in-memory dataset cache keeps (blank images too)."""
    return np.round(read_xray(path, allow_blank=True).pixels * 255.0).astype(np.uint8)
