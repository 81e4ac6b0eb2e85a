"""The output writers: DICOM SEG out (read back with highdicom and pydicom) beside the mask PNGs, and the same
SEG from the API."""

from __future__ import annotations

import base64
import copy
import io
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from _dicom import new_dicom
from cxrseg.data.covidqu import find_dataset
from cxrseg.data.io import read_xray
from cxrseg.inference.batch import predict_files
from cxrseg.inference.writers import (
    INFECTION_SEGMENT,
    LUNG_SEGMENT,
    SEG_SOP_CLASS_UID,
    NoDicomSeg,
    algorithm_version,
    build_dicom_seg,
    dicom_seg_algorithms,
    dicom_seg_bytes,
)
from cxrseg.models.store import read_card, weights_digest

DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def dicom_from_u8(pixels: np.ndarray, photometric: str = "MONOCHROME2", study: bool = True) -> pydicom.Dataset:
    """A DX DICOM (12-bit) of an 8-bit image, with patient, study and series; MONOCHROME1 stored inverted, so
    that it reads back as the same picture."""
    from pydicom.uid import generate_uid

    ds = new_dicom()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DX
    ds.Modality, ds.PatientID, ds.PatientName, ds.PatientSex = "DX", "P-0042", "Phantom^Test", "O"
    ds.PatientBirthDate, ds.AccessionNumber, ds.StudyID = "19700101", "A-1", "S-1"
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = generate_uid(), 3, 1
    if study:
        ds.StudyInstanceUID = generate_uid()
    ds.ImagerPixelSpacing = ds.PixelSpacing = [0.2, 0.2]
    stored = pixels.astype(np.uint16) * 16
    if photometric == "MONOCHROME1":
        stored = 4095 - stored
    ds.set_pixel_data(stored, photometric, bits_stored=12)
    return ds


@pytest.fixture
def inputs(synthetic_root, tmp_path):
    """Two COVID-19 phantoms as DICOM (a square MONOCHROME2 128x128 and a non-square MONOCHROME1 96x160),
    one without StudyInstanceUID, and two PNGs."""
    folder = tmp_path / "in"
    folder.mkdir()
    samples = [s for s in find_dataset(synthetic_root).select(("Val",)) if s.label == "COVID-19"]
    square = np.asarray(Image.open(samples[0].image).convert("L"))
    wide = np.asarray(Image.open(samples[1].image).convert("L").resize((160, 96)))
    dicom_from_u8(square).save_as(folder / "square.dcm", enforce_file_format=True)
    dicom_from_u8(wide, "MONOCHROME1").save_as(folder / "wide_m1.dcm", enforce_file_format=True)
    dicom_from_u8(square, study=False).save_as(folder / "no_study.dcm", enforce_file_format=True)
    shutil.copy(samples[0].image, folder / "a.png")
    shutil.copy(samples[2].image, folder / "b.png")
    return folder


def _segment_pixels(seg: hd.seg.Segmentation, source: pydicom.Dataset) -> np.ndarray:
    """(rows, columns, 2) bool: the lung and infection segments on the source instance."""
    pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[LUNG_SEGMENT, INFECTION_SEGMENT])
    return pixels[0].astype(bool)


def test_predict_writes_a_dicom_seg_per_dicom_input(pipeline, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "image_threshold", None)  # let the tiny model's infection through
    out, notes = tmp_path / "out", []
    report = predict_files(pipeline, [inputs], out, dicom_seg=True, on_note=notes.append)  # 2 decoding processes
    assert report.done == 5 and report.failed == [] and report.dicom_segs == 2
    assert sorted(p.name for p in out.glob("*.dcm")) == ["square_seg.dcm", "wide_m1_seg.dcm"]
    assert notes == report.notes and len(notes) == 2
    assert sum("is not DICOM" in n for n in notes) == 1  # said once for the two PNGs
    assert any("no_study.dcm" in n and "StudyInstanceUID" in n for n in notes)
    assert (out / "no_study_lung.png").is_file()  # its other outputs are written as usual
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left behind

    infection_pixels = 0
    for stem in ("square", "wide_m1"):
        source = pydicom.dcmread(inputs / f"{stem}.dcm")
        path = out / f"{stem}_seg.dcm"
        raw = pydicom.dcmread(path)
        assert raw.SOPClassUID == SEG_SOP_CLASS_UID and raw.Modality == "SEG"
        assert raw.file_meta.MediaStorageSOPClassUID == SEG_SOP_CLASS_UID
        assert raw.SegmentationType == "BINARY"
        assert (raw.Rows, raw.Columns) == (source.Rows, source.Columns)  # the source's own size, non-square too
        assert raw.StudyInstanceUID == source.StudyInstanceUID
        assert raw.SeriesInstanceUID != source.SeriesInstanceUID and raw.SOPInstanceUID != source.SOPInstanceUID
        assert (raw.PatientID, str(raw.PatientName)) == (source.PatientID, str(source.PatientName))
        ref_series = raw.ReferencedSeriesSequence[0]
        assert ref_series.SeriesInstanceUID == source.SeriesInstanceUID
        ref = ref_series.ReferencedInstanceSequence[0]
        assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (DX, source.SOPInstanceUID)

        seg = hd.seg.segread(path)
        assert seg.number_of_segments == 2
        pixels = _segment_pixels(seg, source)
        lung = np.asarray(Image.open(out / f"{stem}_lung.png")) > 0
        infection = np.asarray(Image.open(out / f"{stem}_infection.png")) > 0
        assert lung.any()
        np.testing.assert_array_equal(pixels[..., 0], lung)
        np.testing.assert_array_equal(pixels[..., 1], infection)
        infection_pixels += int(infection.sum())
    assert infection_pixels > 0  # the comparison covered a non-empty infection segment


def test_segments_are_coded_and_name_the_models(pipeline, tiny_models, inputs, tmp_path):
    xray = read_xray(inputs / "wide_m1.dcm")
    assert xray.dicom is not None and "PixelData" not in xray.dicom  # the header travels, not the pixels
    assert read_xray(inputs / "a.png").dicom is None
    seg = pipeline.predict_one(xray)
    weights = dict(zip(("lung", "infection"), tiny_models))
    back = hd.seg.segread(io.BytesIO(dicom_seg_bytes(xray, seg, dicom_seg_algorithms(pipeline, weights))))
    lung, infection = back.get_segment_description(LUNG_SEGMENT), back.get_segment_description(INFECTION_SEGMENT)
    assert lung.segment_label == "Lungs"
    assert (lung.segmented_property_category.value, lung.segmented_property_type.value) == ("91723000", "39607008")
    assert infection.segment_label == "COVID-19 infection"
    assert infection.segmented_property_category.value == "49755003"
    assert infection.segmented_property_type.value == "409774005"
    assert [c.value for c in infection.anatomic_regions] == ["39607008"]
    for description, stage in ((lung, "lung"), (infection, "infection")):
        card = pipeline.lung_card if stage == "lung" else pipeline.infection_card
        assert description.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algorithm = description.algorithm_identification[0]
        assert algorithm.AlgorithmName == card["name"]
        # the version names the weights, not only the software: two trainings never share it (LO: <= 64 chars)
        expected = f"{card['software']['cxrseg']} (weights sha256 {weights_digest(weights[stage])})"
        assert algorithm.AlgorithmVersion == expected and len(expected) <= 64
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert "image_threshold=" in infection.algorithm_identification[0].AlgorithmParameters
    # a pipeline from from_pretrained names its own weights; without weights files the version is the software's
    # alone; a long one is cut to leave the digest whole
    assert pipeline.weights == {k: Path(v) for k, v in weights.items()}
    own = f"{pipeline.lung_card['software']['cxrseg']} (weights sha256 {weights_digest(weights['lung'])})"
    assert dicom_seg_algorithms(pipeline)[0][0].AlgorithmVersion == own
    bare = copy.copy(pipeline)
    bare.weights = {}
    assert dicom_seg_algorithms(bare)[0][0].AlgorithmVersion == pipeline.lung_card["software"]["cxrseg"]
    version = algorithm_version({"software": {"cxrseg": "9" * 80}}, weights["lung"])
    assert len(version) == 64 and version.endswith(f" (weights sha256 {weights_digest(weights['lung'])})")


def test_an_empty_infection_still_gets_its_segment(pipeline, inputs):
    xray = read_xray(inputs / "square.dcm")
    seg = pipeline.predict_one(xray)
    seg.infection = np.zeros_like(seg.infection)
    back = build_dicom_seg(xray, seg, dicom_seg_algorithms(pipeline))
    pixels = _segment_pixels(back, xray.dicom)
    np.testing.assert_array_equal(pixels[..., 0], seg.lung)
    assert not pixels[..., 1].any()


def test_inputs_that_cannot_have_a_seg_say_why(pipeline, inputs):
    algorithms = dicom_seg_algorithms(pipeline)
    png = read_xray(inputs / "a.png")
    with pytest.raises(NoDicomSeg, match="not DICOM") as e:
        dicom_seg_bytes(png, pipeline.predict_one(png), algorithms)
    assert e.value.not_dicom
    no_study = read_xray(inputs / "no_study.dcm")
    with pytest.raises(NoDicomSeg, match="StudyInstanceUID") as e:
        dicom_seg_bytes(no_study, pipeline.predict_one(no_study), algorithms)
    assert not e.value.not_dicom


def test_the_api_returns_the_seg(pipeline, inputs):
    from fastapi.testclient import TestClient

    from cxrseg.server.app import ServerSettings, create_app

    source = pydicom.dcmread(inputs / "wide_m1.dcm")
    with TestClient(create_app(ServerSettings(), pipeline=pipeline)) as client:
        data = (inputs / "wide_m1.dcm").read_bytes()
        r = client.post("/api/v1/segment?dicom_seg=true", files={"file": ("wide_m1.dcm", data, "application/dicom")})
        assert r.status_code == 200, r.text
        body = r.json()
        seg = hd.seg.segread(io.BytesIO(base64.b64decode(body["dicom_seg_base64"])))
        assert seg.StudyInstanceUID == source.StudyInstanceUID
        versions = [seg.get_segment_description(n).algorithm_identification[0].AlgorithmVersion for n in (1, 2)]
        assert all("(weights sha256 " in v for v in versions), versions  # the service names its weights too
        lung = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"]["lung_mask"])))) > 0
        np.testing.assert_array_equal(_segment_pixels(seg, source)[..., 0], lung)

        plain = client.post("/api/v1/segment", files={"file": ("wide_m1.dcm", data, "application/dicom")})
        assert plain.status_code == 200 and plain.json().get("dicom_seg_base64") is None

        png = (inputs / "a.png").read_bytes()
        r = client.post("/api/v1/segment?dicom_seg=true", files={"file": ("a.png", png, "image/png")})
        assert r.status_code == 200, r.text  # segmented as usual, as cxrseg predict --dicom-seg does: a note, no SEG
        assert r.json()["dicom_seg_base64"] is None and "not DICOM" in r.json()["dicom_seg_note"]
        no_study = (inputs / "no_study.dcm").read_bytes()
        r = client.post("/api/v1/segment?dicom_seg=true", files={"file": ("no_study.dcm", no_study)})
        assert r.status_code == 200 and "StudyInstanceUID" in r.json()["dicom_seg_note"], r.text


def test_cli_predict_dicom_seg(tiny_models, inputs, tmp_path):
    from typer.testing import CliRunner

    from cxrseg.cli import app

    lung, infection = tiny_models
    out = tmp_path / "cli"
    args = ["predict", str(inputs), "--out", str(out), "--lung-model", str(lung), "--infection-model", str(infection),
            "--backend", "torch", "--workers", "0", "--dicom-seg"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.dcm")) == ["square_seg.dcm", "wide_m1_seg.dcm"]
    versions = [d.algorithm_identification[0].AlgorithmVersion
                for d in hd.seg.segread(out / "square_seg.dcm").SegmentSequence]
    assert versions == [f"{read_card(w)['software']['cxrseg']} (weights sha256 {weights_digest(w)})"
                        for w in (lung, infection)]  # the weights named on the command line
    assert result.stderr.count("is not DICOM") == 1  # two PNG inputs, said once
    assert "no_study.dcm" in result.stderr and "StudyInstanceUID" in result.stderr
    assert "2 DICOM SEG file(s) written" in result.stdout

    plain = CliRunner().invoke(app, args[:-1] + ["--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    assert not list((tmp_path / "plain").glob("*.dcm")) and "DICOM" not in plain.stderr
