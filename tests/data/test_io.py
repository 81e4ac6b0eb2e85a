"""Reading X-rays: every format ends as float32 (H, W) in [0, 1]; every bad file is an InputFileError naming it."""

from __future__ import annotations

import numpy as np
import pytest
from _dicom import new_dicom
from PIL import Image

from cxrseg.data.io import decode_xray, read_mask, read_xray
from cxrseg.errors import InputFileError


def _ramp(h: int = 24, w: int = 40) -> np.ndarray:
    """A uint8 image with every value distinct enough to tell orientations apart."""
    return ((np.arange(h * w).reshape(h, w) * 7) % 256).astype(np.uint8)


def test_8bit_png_is_divided_by_255(tmp_path):
    a = _ramp()
    a[0, 0], a[0, 1] = 0, 255
    Image.fromarray(a).save(tmp_path / "x.png")
    x = read_xray(tmp_path / "x.png")
    assert x.pixels.dtype == np.float32
    assert x.size == a.shape
    np.testing.assert_allclose(x.pixels, a / 255.0, atol=1e-6)


def test_8bit_png_is_not_stretched(tmp_path):
    """A dim 8-bit image keeps its absolute scale (training images are 8-bit / 255)."""
    a = np.full((20, 20), 50, np.uint8)
    a[5:10, 5:10] = 100
    Image.fromarray(a).save(tmp_path / "dim.png")
    x = read_xray(tmp_path / "dim.png")
    assert x.pixels.max() == pytest.approx(100 / 255)
    assert x.pixels.min() == pytest.approx(50 / 255)


def test_16bit_png_is_stretched_to_unit_range(tmp_path):
    a = np.linspace(1000, 3000, 20 * 30).reshape(20, 30).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # really a 16-bit file
    x = read_xray(tmp_path / "deep.png")
    np.testing.assert_allclose(x.pixels, (a.astype(np.float64) - 1000) / 2000, atol=1e-5)
    assert x.pixels.min() == 0.0 and x.pixels.max() == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_colour_and_palette_images_become_grey(tmp_path, mode):
    g = _ramp()
    rgb = Image.fromarray(np.stack([g, g, g], axis=2), "RGB")
    if mode == "RGBA":
        img = rgb.convert("RGBA")  # fully opaque
    elif mode == "P":
        img = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    else:
        img = rgb.convert(mode)
    img.save(tmp_path / "c.png")
    assert Image.open(tmp_path / "c.png").mode == mode
    x = read_xray(tmp_path / "c.png")
    assert x.pixels.shape == g.shape and x.pixels.ndim == 2
    # grey in, grey out: the luminance of (v, v, v) is v (a palette may merge a few levels)
    tol = 8 / 255 if mode == "P" else 1.5 / 255
    np.testing.assert_allclose(x.pixels, g / 255.0, atol=tol)


def test_colour_uses_luminance_weights(tmp_path):
    a = np.zeros((20, 20, 3), np.uint8)
    a[:, :10, 0] = 255  # pure red on the left
    a[:, 10:, 1] = 255  # pure green on the right
    Image.fromarray(a, "RGB").save(tmp_path / "rg.png")
    x = read_xray(tmp_path / "rg.png").pixels
    assert x[:, :10].mean() == pytest.approx(0.299, abs=0.01)
    assert x[:, 10:].mean() == pytest.approx(0.587, abs=0.01)


def test_transparent_pixels_become_black(tmp_path):
    a = np.full((20, 20, 4), 255, np.uint8)
    a[:, :10, 3] = 0  # left half transparent white
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    x = read_xray(tmp_path / "t.png").pixels
    assert np.all(x[:, :10] == 0.0)
    assert np.all(x[:, 10:] == 1.0)


def test_palette_transparency_becomes_black(tmp_path):
    idx = np.zeros((20, 20), np.uint8)
    idx[:, 10:] = 1
    img = Image.fromarray(idx, "P")
    img.putpalette([255, 255, 255, 200, 200, 200] + [0] * 762)
    img.save(tmp_path / "pt.png", transparency=0)  # index 0 (white) is transparent
    x = read_xray(tmp_path / "pt.png").pixels
    assert np.all(x[:, :10] == 0.0)
    np.testing.assert_allclose(x[:, 10:], 200 / 255, atol=1 / 255)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_is_applied(tmp_path, fmt):
    a = np.zeros((20, 40), np.uint8)  # landscape, bright block in the top-left corner
    a[:8, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / f"o.{fmt.lower()}"
    Image.fromarray(a).save(path, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    x = read_xray(path).pixels
    assert x.shape == (40, 20)  # portrait after rotation
    expected = np.rot90(a, k=-1) / 255.0  # clockwise: the block moves to the top-right
    assert np.abs(x - expected).mean() < 0.02
    assert x[:8, -8:].mean() > 0.9 and x[:8, :8].mean() < 0.1


# -- DICOM -------------------------------------------------------------------------------------------


def _write_dicom(path, stored: np.ndarray, photometric="MONOCHROME2", slope=None, intercept=None, center=None,
                 width=None, preamble=True):
    ds = new_dicom()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
    if center is not None:
        ds.WindowCenter = center
        ds.WindowWidth = width
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _stored_ramp() -> np.ndarray:
    return np.linspace(0, 4000, 32 * 48).reshape(32, 48).round().astype(np.uint16)


def test_dicom_monochrome2_is_stretched(tmp_path):
    s = _stored_ramp()
    x = read_xray(_write_dicom(tmp_path / "a.dcm", s)).pixels
    assert x.shape == s.shape
    np.testing.assert_allclose(x, s / 4000.0, atol=1e-4)


def test_dicom_monochrome1_is_inverted(tmp_path):
    s = _stored_ramp()
    x = read_xray(_write_dicom(tmp_path / "m1.dcm", s, photometric="MONOCHROME1")).pixels
    np.testing.assert_allclose(x, 1.0 - s / 4000.0, atol=1e-4)


def test_dicom_detected_by_content_not_suffix(tmp_path):
    s = _stored_ramp()
    path = _write_dicom(tmp_path / "no_suffix", s)
    np.testing.assert_allclose(decode_xray(path.read_bytes(), "upload").pixels, s / 4000.0, atol=1e-4)


def test_dicom_negative_rescale_slope_is_applied(tmp_path):
    """A negative slope flips the intensities: only visible if the modality LUT is applied."""
    s = _stored_ramp()
    x = read_xray(_write_dicom(tmp_path / "neg.dcm", s, slope=-1, intercept=4000)).pixels
    np.testing.assert_allclose(x, 1.0 - s / 4000.0, atol=1e-4)


def test_dicom_window_in_rescaled_units(tmp_path):
    """Stored 0..4000, slope 0.5 intercept -1000 -> values -1000..1000; window [-250, 250] clips both ends."""
    s = _stored_ramp()
    x = read_xray(_write_dicom(tmp_path / "w.dcm", s, slope=0.5, intercept=-1000, center=0, width=500)).pixels
    value = s * 0.5 - 1000
    expected = np.clip((value + 250) / 500, 0, 1)
    np.testing.assert_allclose(x, expected, atol=0.01)
    assert np.all(x[value < -260] == 0.0) and np.all(x[value > 260] == 1.0)


def test_dicom_window_with_monochrome1(tmp_path):
    s = _stored_ramp()
    x = read_xray(_write_dicom(tmp_path / "w1.dcm", s, photometric="MONOCHROME1", center=2000, width=1000)).pixels
    expected = 1.0 - np.clip((s.astype(float) - 1500) / 1000, 0, 1)
    np.testing.assert_allclose(x, expected, atol=0.01)


def test_dicom_without_pixels_is_input_error(tmp_path):
    ds = new_dicom()
    ds.PatientName = "Nobody"
    path = tmp_path / "nopix.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputFileError, match="nopix.dcm"):
        read_xray(path)


# -- bad files ----------------------------------------------------------------------------------------


def _png_bytes(h=64, w=64) -> bytes:
    import io

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the broken fake DICOM
@pytest.mark.parametrize(
    "name, content, words, kind",
    [
        ("truncated.png", _png_bytes()[:300], "corrupt or truncated", "invalid"),
        ("garbled.png", _png_bytes()[:60] + bytes(range(256)) * 4, "corrupt or truncated", "invalid"),
        ("notes.png", b"this is a text file, not an X-ray\n" * 10, "not an image", "not_image"),
        ("empty.png", b"", "empty", "empty"),
        ("fake.dcm", b"\0" * 128 + b"DICM" + b"\xff" * 64, "DICOM", "invalid"),
    ],
)
def test_bad_files_raise_input_error_naming_the_file(tmp_path, name, content, words, kind):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFileError) as err:
        read_xray(path)
    assert name in str(err.value)
    assert err.value.path == path
    assert words in str(err.value)
    assert err.value.kind == kind


def test_too_large_image_is_refused(tmp_path):
    path = tmp_path / "huge.png"
    Image.fromarray(np.resize(_ramp(), (200, 300))).save(path)
    with pytest.raises(InputFileError, match=r"huge\.png.*over the limit") as err:
        read_xray(path, max_pixels=200 * 300 - 1)
    assert err.value.kind == "too_large"
    assert read_xray(path, max_pixels=200 * 300).size == (200, 300)


def test_too_large_dicom_is_refused(tmp_path):
    path = _write_dicom(tmp_path / "big.dcm", _stored_ramp())
    with pytest.raises(InputFileError, match=r"big\.dcm.*over the limit"):
        read_xray(path, max_pixels=100)


def test_tiny_image_and_missing_file_and_folder(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(InputFileError, match="tiny.png"):
        read_xray(tmp_path / "tiny.png")
    with pytest.raises(InputFileError, match="missing.png.*not found"):
        read_xray(tmp_path / "missing.png")
    with pytest.raises(InputFileError, match="folder"):
        read_xray(tmp_path)


def test_read_mask_any_nonzero_is_foreground(tmp_path):
    m = np.zeros((20, 20), np.uint8)
    m[2:5, 2:5] = 1
    m[10:12, 10:12] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    got = read_mask(tmp_path / "m.png")
    assert got.dtype == bool
    np.testing.assert_array_equal(got, m > 0)
    (tmp_path / "bad.png").write_text("nope")
    with pytest.raises(InputFileError, match="bad.png"):
        read_mask(tmp_path / "bad.png")


@pytest.mark.parametrize("value, mode", [(0, "L"), (128, "L"), (40000, "I;16")])
def test_blank_image_is_refused(tmp_path, value, mode):
    path = tmp_path / "blank.png"
    dtype = np.uint16 if mode == "I;16" else np.uint8
    Image.fromarray(np.full((64, 80), value, dtype)).save(path)
    with pytest.raises(InputFileError, match=r"blank\.png: image is blank") as err:
        read_xray(path)
    assert err.value.kind == "invalid"
    assert np.ptp(read_xray(path, allow_blank=True).pixels) == 0  # a dataset's image is data: kept as it is


def test_blank_dicom_is_refused(tmp_path):
    path = _write_dicom(tmp_path / "blank.dcm", np.full((32, 32), 700, np.uint16))
    with pytest.raises(InputFileError, match=r"blank\.dcm: image is blank"):
        read_xray(path)
