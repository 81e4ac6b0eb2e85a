"""Real-world inputs through the pipeline: DICOM (modality LUT, VOI window, MONOCHROME1, signed, RGB),
16-bit PNG/TIFF, RGB/RGBA/palette, an EXIF-rotated JPEG and a 4000x5000 image. Masks come back at the
input's full size, and the same picture in any of these forms is normalised like the 8-bit training PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _dicom import new_dicom
from PIL import Image

from cxrseg.data.io import read_xray
from cxrseg.data.synthetic import phantom
from cxrseg.errors import InputFileError

H, W = 192, 160  # non-square, so a transposed result cannot pass


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """A full-range 8-bit X-ray phantom (H, W) uint8: the reference, as a training PNG would hold it."""
    img, _, _ = phantom("COVID-19", 128, np.random.default_rng(5))
    a = np.asarray(Image.fromarray(img).resize((W, H), Image.BILINEAR), np.float32)
    return np.round((a - a.min()) / (a.max() - a.min()) * 255).astype(np.uint8)


def write_dicom(path: Path, pixels: np.ndarray, **attrs) -> Path:
    """A standard DICOM file (preamble, file meta, PixelData) as a modality would write it."""
    ds = new_dicom()
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def files(picture, tmp_path_factory) -> dict[str, Path]:
    """The same picture in many real-world forms; every one decodes to ``picture / 255``."""
    d = tmp_path_factory.mktemp("realworld")
    p = picture.astype(np.uint16)
    out = {}

    def save(name, im, **kw):
        im.save(d / name, **kw)
        out[name] = d / name

    save("reference_8bit.png", Image.fromarray(picture))
    save("full_16bit.png", Image.fromarray(p * 257))  # the 8-bit picture scaled to 0..65535
    save("12bit_in_16bit.png", Image.fromarray(p * 16))  # a detector's 12-bit range in a 16-bit file
    save("full_16bit.tif", Image.fromarray(p * 257))
    save("12bit_in_16bit.tif", Image.fromarray(p * 16), compression="tiff_lzw")
    save("rgb.png", Image.fromarray(np.stack([picture] * 3, -1)))
    save("rgba_opaque.png", Image.fromarray(np.dstack([picture] * 3 + [np.full_like(picture, 255)])))
    save("palette.png", Image.fromarray(picture).convert("P"))  # 8-bit palette of greys
    save("grey.bmp", Image.fromarray(picture))
    # MONOCHROME1 (bright = low values), 12 bits stored, modality LUT (slope 2, intercept -1024).
    out["mono1.dcm"] = write_dicom(d / "mono1.dcm", (255 - p) * 16, PhotometricInterpretation="MONOCHROME1",
                                   BitsStored=12, HighBit=11, RescaleSlope=2, RescaleIntercept=-1024)
    # Signed pixels with negative values (PixelRepresentation 1).
    out["signed.dcm"] = write_dicom(d / "signed.dcm", (picture.astype(np.int16) - 128) * 8)
    # A VOI window that spans the whole modality range: the same picture.
    out["window_full.dcm"] = write_dicom(d / "window_full.dcm", p * 16, RescaleSlope=1, RescaleIntercept=0,
                                         WindowCenter=2040.5, WindowWidth=4081)
    out["rgb.dcm"] = write_dicom(d / "rgb.dcm", np.stack([picture] * 3, -1), PhotometricInterpretation="RGB")
    return out


LOSSLESS = [
    "full_16bit.png", "12bit_in_16bit.png", "full_16bit.tif", "12bit_in_16bit.tif", "rgb.png", "rgba_opaque.png",
    "palette.png", "grey.bmp", "mono1.dcm", "signed.dcm", "window_full.dcm", "rgb.dcm",
]


@pytest.mark.parametrize("name", LOSSLESS)
def test_same_picture_decodes_to_the_same_array(files, picture, name) -> None:
    x = read_xray(files[name])
    assert x.pixels.dtype == np.float32 and x.size == (H, W)
    tol = 1.5 / 255 if name == "rgb.dcm" else 1e-5  # pydicom's RGB->luminance is float, the rest exact
    np.testing.assert_allclose(x.pixels, picture / 255.0, atol=tol)


@pytest.fixture(scope="module")
def reference_seg(pipeline, files):
    return pipeline.predict_one(files["reference_8bit.png"])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("name", ["full_16bit.png", "12bit_in_16bit.tif", "palette.png", "mono1.dcm", "rgb.dcm"])
def test_pipeline_gives_the_training_normalised_result(pipeline, files, reference_seg, name) -> None:
    seg = pipeline.predict_one(files[name])
    assert seg.lung.shape == seg.infection.shape == (H, W)
    assert reference_seg.lung.any()
    assert _iou(seg.lung, reference_seg.lung) > 0.99
    assert abs(int(seg.infection.sum()) - int(reference_seg.infection.sum())) <= 0.01 * H * W


def test_dicom_voi_window_is_applied(files, picture, tmp_path) -> None:
    """A narrow window saturates what lies outside it, as a viewer would show it."""
    p = picture.astype(np.float64) * 16  # modality values (slope 1, intercept 0)
    c, w = 2040.0, 2000.0
    path = write_dicom(tmp_path / "narrow.dcm", picture.astype(np.uint16) * 16, RescaleSlope=1, RescaleIntercept=0,
                       WindowCenter=c, WindowWidth=w)
    expected = np.clip((p - (c - 0.5)) / (w - 1) + 0.5, 0, 1)  # DICOM PS3.3 C.11.2.1.2 linear window
    x = read_xray(path)
    np.testing.assert_allclose(x.pixels, expected, atol=2e-3)
    assert (x.pixels == 0).mean() > (picture == 0).mean()  # saturation grew: the window did something


def test_exif_rotated_jpeg(pipeline, picture, tmp_path) -> None:
    """A JPEG stored sideways with EXIF Orientation 6 (rotate 90 degrees clockwise to display)."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(picture, 1)))  # W x H on disk
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    stored.save(path, quality=95, exif=exif)
    with Image.open(path) as im:
        assert im.size == (H, W)  # the raw pixels are sideways
    x = read_xray(path)
    assert x.size == (H, W)
    assert np.abs(x.pixels - picture / 255.0).mean() < 0.02  # upright, up to JPEG loss
    seg = pipeline.predict_one(path)
    assert seg.lung.shape == (H, W)


def test_large_image_masks_at_full_size(pipeline, picture, reference_seg, tmp_path) -> None:
    """A 4000x5000 X-ray (20 megapixels): masks at 5000 rows x 4000 columns, the same lungs as the small one."""
    path = tmp_path / "large.png"
    Image.fromarray(picture).resize((4000, 5000), Image.BILINEAR).save(path, compress_level=1)
    seg = pipeline.predict_one(path)
    assert seg.lung.shape == seg.infection.shape == (5000, 4000)
    assert seg.lung.dtype == bool and seg.lung.any()
    small = np.asarray(Image.fromarray(seg.lung.astype(np.uint8) * 255).resize((W, H), Image.NEAREST)) > 127
    assert _iou(small, reference_seg.lung) > 0.95
    row = seg.row()
    assert (row["height"], row["width"]) == (5000, 4000)
    with pytest.raises(InputFileError, match="over the limit"):
        read_xray(path, max_pixels=4000 * 4999)
