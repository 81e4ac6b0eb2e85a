"""The JSON API: good uploads of each format, every kind of bad upload, concurrency and a full queue."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cxrseg.data.io import decode_xray
from cxrseg.data.synthetic import phantom
from cxrseg.errors import CxrsegError
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.server.app import Figures, InferenceQueue, QueueFull, ServerSettings, create_app

SEGMENT = "/api/v1/segment"
HEALTH = "/api/v1/health"


# -- test images -----------------------------------------------------------------------------------------
def xray_u8(seed: int = 0, size: int = 128) -> np.ndarray:
    """A synthetic COVID-19 chest X-ray phantom, uint8 (size, size)."""
    return phantom("COVID-19", size, np.random.default_rng(seed))[0]


def encode(array: np.ndarray, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **params)
    return buf.getvalue()


def dicom_bytes(array: np.ndarray, photometric: str = "MONOCHROME2") -> bytes:
    """A minimal, valid DICOM file (Part 10, explicit VR little endian) holding a 12-bit image."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "CR"
    ds.PatientName = "Phantom^Test"
    pixels = array.astype(np.uint16) * 16  # 8-bit phantom spread over 12 bits
    if photometric == "MONOCHROME1":
        pixels = 4095 - pixels
    ds.set_pixel_data(pixels, photometric, bits_stored=12)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


GOOD_FILES = {
    "png": ("xray.png", lambda: encode(xray_u8(1), "PNG"), "image/png"),
    "png16": ("xray16.png", lambda: encode(xray_u8(2).astype(np.uint16) * 257, "PNG"), "image/png"),
    "jpeg": ("xray.jpg", lambda: encode(xray_u8(3), "JPEG", quality=92), "image/jpeg"),
    "dicom": ("xray.dcm", lambda: dicom_bytes(xray_u8(4)), "application/dicom"),
    "dicom-mono1": ("inverted.dcm", lambda: dicom_bytes(xray_u8(5), "MONOCHROME1"), "application/dicom"),
}


def post(client: TestClient, name: str, data: bytes, mime: str = "application/octet-stream"):
    return client.post(SEGMENT, files={"file": (name, data, mime)})


def png_array(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


@contextlib.contextmanager
def serving(pipeline, **settings) -> Iterator[TestClient]:
    """A TestClient for an app over ``pipeline`` with the given settings (lifespan run)."""
    with TestClient(create_app(ServerSettings(**settings), pipeline=pipeline)) as client:
        yield client


@pytest.fixture(scope="module")
def client(pipeline) -> Iterator[TestClient]:
    with serving(pipeline, workers=2, queue_size=64) as c:
        yield c


# -- good uploads ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(GOOD_FILES))
def test_segment_each_format_matches_the_pipeline(client, pipeline, kind):
    name, make, mime = GOOD_FILES[kind]
    data = make()
    r = post(client, name, data, mime)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = pipeline.predict_one(decode_xray(data, name))
    assert body["figures"] == expected.to_dict()
    h, w = expected.size
    lung, infection = png_array(body["images"]["lung_mask"]), png_array(body["images"]["infection_mask"])
    assert lung.shape == infection.shape == (h, w)
    assert set(np.unique(lung)) <= {0, 255}
    np.testing.assert_array_equal(lung > 0, expected.lung)
    np.testing.assert_array_equal(infection > 0, expected.infection)
    assert png_array(body["images"]["overlay"]).shape == (h, w, 3)
    assert png_array(body["images"]["original"]).shape == (h, w)
    assert body["models"] == {"lung": "cxrseg-lung", "infection": "cxrseg-infection", "backend": "torch"}


def test_figures_field_names_are_segmentations(pipeline):
    fields = set(pipeline.predict_one(xray_u8(0) / 255.0).to_dict())
    assert set(Figures.model_fields) == fields


def test_large_preview_is_scaled_but_masks_are_not(pipeline):
    data = encode(xray_u8(6, size=300), "PNG")
    with serving(pipeline, preview_max_side=100) as c:
        images = post(c, "big.png", data).json()["images"]
    assert png_array(images["original"]).shape == (100, 100)
    assert png_array(images["overlay"]).shape == (100, 100, 3)
    assert png_array(images["lung_mask"]).shape == (300, 300)


def test_upload_over_one_megabyte_stays_in_memory(pipeline, monkeypatch):
    def no_disk(self):
        raise AssertionError("the upload was spooled to a temporary file on disk")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", no_disk)
    noise = np.random.default_rng(0).integers(0, 256, (1100, 1100), dtype=np.uint8)
    data = encode(noise, "PNG")
    assert len(data) > 1024 * 1024
    with serving(pipeline) as c:
        assert post(c, "noise.png", data).status_code == 200


# -- bad uploads -----------------------------------------------------------------------------------------
def truncated_png() -> bytes:
    data = encode(xray_u8(7), "PNG")
    return data[: len(data) // 2]


BAD_FILES = {
    "empty": (b"", 400, "empty"),
    "text": (b"this is not an X-ray, just some text\n" * 20, 415, "not an image"),
    "truncated-png": (truncated_png(), 422, "truncated"),
    "truncated-dicom": (dicom_bytes(xray_u8(8))[:600], 422, "DICOM"),
    "tiny": (encode(np.zeros((8, 8), np.uint8), "PNG"), 422, "at least 16x16"),
    "blank": (encode(np.full((64, 64), 90, np.uint8), "PNG"), 422, "image is blank"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_upload_is_a_clear_4xx_and_the_service_stays_up(client, kind):
    data, status, words = BAD_FILES[kind]
    r = post(client, f"{kind}.png", data)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert words in r.json()["detail"]
    assert client.get(HEALTH).json()["status"] == "ok"
    assert post(client, "good.png", encode(xray_u8(0), "PNG")).status_code == 200


def test_missing_file_field_is_422(client):
    r = client.post(SEGMENT, data={"other": "x"})
    assert r.status_code == 422
    assert "detail" in r.json()


def test_file_just_over_the_default_size_limit_is_413(client):
    r = post(client, "big.png", b"\0" * 20_000_001)
    assert r.status_code == 413
    assert "20 MB" in r.json()["detail"]


def test_body_far_over_the_size_limit_is_413_json(client):
    r = post(client, "huge.png", b"\0" * 25_000_000)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/json"
    assert "20 MB" in r.json()["detail"]


def test_streamed_body_without_length_is_cut_off_at_the_limit(pipeline):
    def chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(50):
            yield b"\0" * 10_000

    with serving(pipeline, max_upload_mb=0.1) as c:
        r = c.post(SEGMENT, content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413
        assert "0.1 MB" in r.json()["detail"]
        assert c.get(HEALTH).status_code == 200


def test_size_limit_is_configurable(pipeline):
    data = encode(xray_u8(9), "PNG")
    with serving(pipeline, max_upload_mb=len(data) / 2e6) as c:
        assert post(c, "x.png", data).status_code == 413
    with serving(pipeline, max_upload_mb=len(data) / 1e6) as c:
        assert post(c, "x.png", data).status_code == 200


def test_image_over_the_default_pixel_limit_is_413(client):
    data = encode(np.zeros((8193, 8193), bool), "PNG")  # 1-bit: a few kB on the wire
    r = post(client, "bomb.png", data)
    assert r.status_code == 413
    assert "8193x8193" in r.json()["detail"] and "over the limit" in r.json()["detail"]


def test_pixel_limit_is_configurable_and_applies_to_dicom(pipeline):
    with serving(pipeline, max_pixels=100 * 100) as c:
        for name, data in [("x.png", encode(xray_u8(0), "PNG")), ("x.dcm", dicom_bytes(xray_u8(0)))]:
            r = post(c, name, data)
            assert r.status_code == 413, name
            assert "over the limit of 10000 pixels" in r.json()["detail"]


# -- load --------------------------------------------------------------------------------------------------
def test_32_concurrent_requests_all_answered_correctly(client, pipeline):
    images = {f"x{i}.png": encode(xray_u8(10 + i), "PNG") for i in range(4)}
    expected = {n: pipeline.predict_one(decode_xray(d, n)).to_dict() for n, d in images.items()}
    names = [f"x{i % 4}.png" for i in range(32)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(lambda n: post(client, n, images[n]), names))
    assert [r.status_code for r in responses] == [200] * 32
    for name, r in zip(names, responses):
        assert r.json()["figures"] == expected[name]
    assert client.get(HEALTH).json()["in_flight"] == 0


class BlockingPipeline:
    """The real pipeline, but each predict waits until the test opens the gate."""

    def __init__(self, pipeline) -> None:
        self._pipeline = pipeline
        self.gate = threading.Event()

    def __getattr__(self, name):
        return getattr(self._pipeline, name)

    def predict(self, xrays, **options):
        assert self.gate.wait(timeout=60), "test never opened the gate"
        return self._pipeline.predict(xrays, **options)


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_full_queue_answers_503_with_retry_after(pipeline):
    blocking = BlockingPipeline(pipeline)
    data = encode(xray_u8(0), "PNG")
    with serving(blocking, workers=1, queue_size=1) as c, ThreadPoolExecutor(max_workers=2) as pool:
        held = [pool.submit(post, c, f"held{i}.png", data) for i in range(2)]  # one running, one waiting
        # The event loop keeps answering while the worker is stuck in the model.
        wait_until(lambda: c.get(HEALTH).json()["in_flight"] == 2)
        r = post(c, "third.png", data)
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert "busy" in r.json()["detail"]
        blocking.gate.set()
        assert [f.result(timeout=60).status_code for f in held] == [200, 200]
        assert c.get(HEALTH).json()["in_flight"] == 0
        assert post(c, "after.png", data).status_code == 200


def test_inference_queue_counts_a_job_until_it_really_ends():
    async def scenario() -> None:
        queue = InferenceQueue(workers=1, queue_size=1)
        gate = threading.Event()
        running = asyncio.ensure_future(queue.run(gate.wait, 30))
        waiting = asyncio.ensure_future(queue.run(lambda: "ok"))
        await asyncio.sleep(0.05)
        assert queue.in_flight == 2 and queue.is_full()
        with pytest.raises(QueueFull) as refused:
            await queue.run(lambda: "never")
        assert refused.value.retry_after >= 1
        running.cancel()  # the client hung up, but its job is still on the worker
        await asyncio.sleep(0.05)
        assert queue.in_flight == 2
        gate.set()
        assert await waiting == "ok"
        wait_until(lambda: queue.in_flight == 0)
        queue.shutdown()

    asyncio.run(scenario())


# -- saving --------------------------------------------------------------------------------------------------
def test_save_dir_keeps_upload_and_results(pipeline, tmp_path):
    data = dicom_bytes(xray_u8(0))
    with serving(pipeline, save_dir=tmp_path / "saved") as c:
        body = post(c, "../../etc/study.dcm", data).json()
    folders = list((tmp_path / "saved").iterdir())
    assert [f.name for f in folders] == [body["id"]]  # no temporary folder left behind
    record = folders[0]
    assert sorted(p.name for p in record.iterdir()) == [
        "result.json", "upload.dcm", "upload_infection.png", "upload_lung.png", "upload_overlay.png"]
    assert (record / "upload.dcm").read_bytes() == data
    saved = json.loads((record / "result.json").read_text())
    assert saved["figures"] == body["figures"] and saved["figures"]["file"] == "study.dcm"
    assert np.array_equal(np.asarray(Image.open(record / "upload_lung.png")), png_array(body["images"]["lung_mask"]))


# -- the rest of the surface -----------------------------------------------------------------------------
def test_health_models_and_docs(client):
    health = client.get(HEALTH).json()
    assert health["status"] == "ok" and health["backend"] == "torch"
    assert health["max_upload_mb"] == 20 and health["max_pixels"] == 8192 * 8192
    cards = client.get("/api/v1/models").json()
    assert cards["lung"]["stage"] == "lung" and cards["infection"]["stage"] == "infection"
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/segment", "/api/v1/health", "/api/v1/models"} <= set(paths)


def test_page_and_its_assets_are_served_without_external_references(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200
        assert "http://" not in r.text and "https://" not in r.text
    assert "http://" not in page.text and "https://" not in page.text
    fields = set(Figures.model_fields)
    for name in ("right_infected_pct", "left_infected_pct", "right_grade", "left_grade", "total_grade"):
        assert f'data-field="{name}"' in page.text and name in fields


def test_bad_settings_and_missing_models_fail_before_serving(tmp_path):
    with pytest.raises(CxrsegError, match="port"):
        create_app(ServerSettings(port=0))
    with pytest.raises(CxrsegError, match="not found"):
        create_app(ServerSettings(lung=tmp_path / "lung.safetensors", infection=tmp_path / "inf.safetensors"))


def test_dicom_seg_of_a_non_dicom_upload_is_a_note_not_an_error(client):
    """As ``cxrseg predict --dicom-seg``: the PNG is segmented as usual, with a note instead of a SEG."""
    data = encode(xray_u8(1), "PNG")
    plain = client.post(SEGMENT, files={"file": ("xray.png", data, "image/png")}).json()
    r = client.post(f"{SEGMENT}?dicom_seg=true", files={"file": ("xray.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["figures"] == plain["figures"] and body["images"] == plain["images"]
    assert body["dicom_seg_base64"] is None and "not DICOM" in body["dicom_seg_note"]
    assert plain["dicom_seg_note"] is None
    dicom = client.post(f"{SEGMENT}?dicom_seg=true", files={"file": ("xray.dcm", dicom_bytes(xray_u8(4)))}).json()
    assert dicom["dicom_seg_base64"] and dicom["dicom_seg_note"] is None, dicom["dicom_seg_note"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SegmentResponse"]["properties"]
    assert "DICOM" in schema["dicom_seg_note"]["description"]


def test_covid_status_positive_skips_the_veto_and_bad_status_is_422(pipeline, monkeypatch):
    monkeypatch.setattr(pipeline, "image_threshold", 1.01)  # every film judged not COVID-19-like
    data = encode(xray_u8(0), "PNG")
    with serving(pipeline) as c:
        unknown = c.post("/api/v1/segment", files={"file": ("a.png", data)}).json()["figures"]
        positive = c.post("/api/v1/segment?covid_status=positive", files={"file": ("a.png", data)}).json()["figures"]
        bad = c.post("/api/v1/segment?covid_status=maybe", files={"file": ("a.png", data)})
    assert unknown["covid_status"] == "unknown" and unknown["infected_pct"] == 0
    assert positive["covid_status"] == "positive" and positive["covid_like"] == "confirmed"
    assert positive["infected_pct"] == positive["opacity_pct"] == unknown["opacity_pct"]
    assert ("not COVID-19-like" in unknown["note"]) == (unknown["opacity_pct"] > 0)
    assert 0 <= unknown["lung_confidence"] <= 1
    assert bad.status_code == 422 and "detail" in bad.json()


def test_models_include_the_classifier_card_when_one_decides(pipeline, monkeypatch):
    """With a whole-film classifier beside stage 2's head, /api/v1/models returns its card too."""
    from types import SimpleNamespace

    monkeypatch.setattr(pipeline, "classifier", SimpleNamespace(card={"name": "cxrseg-classifier", "stage": "classifier"}))
    with serving(pipeline) as c:
        cards = c.get("/api/v1/models").json()
    assert cards["classifier"]["stage"] == "classifier" and set(cards) == {"lung", "infection", "classifier"}


def test_the_accurate_setting_builds_the_accurate_pipeline_and_lists_both_lung_cards(tiny_models):
    """``cxrseg serve --accurate``: the settings reach from_pretrained; /api/v1/models names each stage-1 model."""
    from cxrseg.server.app import load_pipeline

    lung, infection = tiny_models
    assert load_pipeline(ServerSettings(lung=lung, infection=infection, backend="torch", accurate=True)).accurate
    two = TwoStagePipeline.from_pretrained([lung, lung], infection, backend="torch", accurate=True)
    with serving(two) as c:
        cards = c.get("/api/v1/models").json()
        r = c.post(SEGMENT, files={"file": ("x.png", encode(xray_u8(2), "PNG"), "image/png")})
    assert set(cards) == {"lung", "lung-2", "infection"} and cards["lung-2"]["stage"] == "lung"
    assert r.status_code == 200 and r.json()["figures"]["uncertainty"] is not None  # TTA on
