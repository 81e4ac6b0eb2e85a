"""The HTTP service: upload a chest X-ray, get the figures, masks and overlay back as JSON, or use the page at /.

Inference runs in a small thread pool behind a bounded admission count, so the event loop never waits on a
model and a burst of uploads is answered 503 + Retry-After instead of piling up. The pipeline is shared by
every worker, so calls into it are serialised by a lock; decoding and PNG encoding run outside the lock.
Uploads stay in memory and are written to disk only when ``save_dir`` is set.

Safe to expose: with an API key set (required off loopback) every /api/ call but health needs
``Authorization: Bearer KEY``, checked before any body is read; a body over the size limit is refused as soon as
it is seen to be (Content-Length, or bytes counted while streaming), and one that does not arrive within the
upload timeout gets 408. /docs loads Swagger UI from an installed package (fastapi-offline), not a CDN.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import hashlib
import hmac
import io
import ipaddress
import json
import math
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from fastapi import FastAPI, Request, UploadFile
from fastapi.exceptions import HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxrseg import __version__
from cxrseg.data.io import IMAGE_SUFFIXES, MAX_PIXELS, XRay, decode_xray, is_dicom_bytes
from cxrseg.errors import CxrsegError, InputFileError
from cxrseg.inference.overlay import render_overlay
from cxrseg.inference.result import Segmentation
from cxrseg.inference.writers import NoDicomSeg, dicom_seg_algorithms, dicom_seg_bytes

STATIC_DIR = Path(str(resources.files("cxrseg.server") / "static"))
SEGMENT_PATH = "/api/v1/segment"
HEALTH_PATH = "/api/v1/health"  # the one /api/ call open without the API key
DOCS_ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))  # Swagger UI's assets, no CDN
DOCS_ASSETS_URL = "/docs-assets"
MULTIPART_OVERHEAD = 64 * 1024  # bytes allowed on top of the file for the multipart envelope
PAGE_HEADERS = {
    # The page loads nothing from elsewhere: scripts, styles and images come from this server or are data/blob URLs.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}

CLOSE = {"Connection": "close"}  # on answers given before a body is read whole: the rest of it is not waited for

T = TypeVar("T")


# -- settings --------------------------------------------------------------------------------------------
@dataclass
class ServerSettings:
    """Everything ``cxrseg serve`` can set; the defaults are safe for a laptop (loopback only, nothing saved)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 20.0  # largest accepted file, in MB (10^6 bytes)
    max_pixels: int = MAX_PIXELS  # largest accepted image, width x height
    queue_size: int = 8  # requests that may wait for a worker; more get 503
    workers: int = 1  # threads that decode, segment (one at a time, under a lock) and encode
    save_dir: Path | None = None  # keep each upload and its results here; None keeps nothing
    lung: Path | None = None  # stage-1 weights; None: the shipped model
    infection: Path | None = None  # stage-2 weights; None: the shipped model
    backend: str = "auto"  # 'auto', 'torch' or 'onnx'
    device: str = "auto"  # torch device for the torch backend
    preview_max_side: int = 2048  # longest side of the original and overlay PNGs sent for display
    api_key: str | None = None  # /api/ calls but health then need 'Authorization: Bearer KEY'; required off loopback
    upload_timeout_s: float = 60.0  # a request body must arrive within this many seconds, else 408

    @property
    def max_upload_bytes(self) -> int:
        """The file-size limit in bytes (MB = 10^6 bytes, as browsers and HTTP tools count)."""
        return int(self.max_upload_mb * 1_000_000)

    def check(self) -> None:
        """Raise :class:`CxrsegError` for a value the server cannot run with."""
        if not 0 < self.port < 65536:
            raise CxrsegError(f"port must be 1-65535, not {self.port}")
        if self.max_upload_mb <= 0:
            raise CxrsegError(f"max upload must be positive, not {self.max_upload_mb} MB")
        if self.max_pixels < 16 * 16:
            raise CxrsegError(f"max pixels must be at least 256, not {self.max_pixels}")
        if self.workers < 1 or self.queue_size < 0:
            raise CxrsegError("workers must be at least 1 and queue size at least 0")
        if self.preview_max_side < 64:
            raise CxrsegError(f"preview size must be at least 64 pixels, not {self.preview_max_side}")
        if not self.upload_timeout_s > 0:
            raise CxrsegError(f"upload timeout must be positive, not {self.upload_timeout_s} s")
        key = self.api_key
        if key is not None and not (key and key.isascii() and key.isprintable() and " " not in key):
            raise CxrsegError("the API key must be printable ASCII without spaces (it travels in an HTTP header)")
        if not self.api_key and not is_loopback(self.host):
            raise CxrsegError(
                f"refusing to serve on {self.host} without an API key: anyone who can reach it could use it. "
                "Set --api-key or the CXRSEG_API_KEY environment variable, or bind 127.0.0.1")


def is_loopback(host: str) -> bool:
    """Is ``host`` reachable from this machine only ('localhost', 127.0.0.0/8, ::1)?"""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


# -- response models (figures keep the field names of Segmentation.to_dict()) -------------------------------
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
    note: str = Field(description="a sentence when opacity was found but not counted as COVID-19 infection")
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


# -- bounded inference queue -----------------------------------------------------------------------------
class QueueFull(Exception):
    """Every worker is busy and the waiting line is full; ``retry_after`` is a suggested wait in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("the server is busy")
        self.retry_after = retry_after


class InferenceQueue:
    """A thread pool that admits at most ``workers + queue_size`` jobs at once and refuses the rest."""

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxrseg-infer")
        self._count_lock = threading.Lock()
        self._in_flight = 0
        self._mean_s = 1.0  # running mean of a job's duration, for Retry-After

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def is_full(self) -> bool:
        return self._in_flight >= self.capacity

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue's length of jobs spread over the workers."""
        return max(1, math.ceil(self._mean_s * self.capacity / self.workers))

    def _admit(self) -> None:
        with self._count_lock:
            if self.is_full():
                raise QueueFull(self.retry_after())
            self._in_flight += 1

    def _release(self, _: Future) -> None:
        with self._count_lock:
            self._in_flight -= 1

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - start)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker and await it; raises :class:`QueueFull` when no slot is free.

        The slot is released when the job really ends, so a client that hangs up mid-job still counts.
        """
        self._admit()
        try:
            job = self._pool.submit(self._timed, fn, *args)
        except BaseException:
            self._release(None)  # type: ignore[arg-type]
            raise
        job.add_done_callback(self._release)
        return await asyncio.wrap_future(job)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# -- pictures --------------------------------------------------------------------------------------------
def png_base64(array: np.ndarray) -> str:
    """Encode a uint8 (H, W) or (H, W, 3) array as base64 PNG text."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=3)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def mask_u8(mask: np.ndarray) -> np.ndarray:
    """A bool mask as 0/255 uint8, the convention of COVID-QU-Ex masks."""
    return mask.astype(np.uint8) * 255


def shrink(array: np.ndarray, max_side: int, resample: Image.Resampling) -> np.ndarray:
    """``array`` (uint8) scaled so its longest side is at most ``max_side``; unchanged if already small."""
    h, w = array.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return array
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(array).resize(size, resample))


def encode_images(xray: XRay, seg: Segmentation, max_side: int) -> Images:
    """Masks at full size; the original and overlay at display size, drawn on the scaled-down image."""
    grey = shrink(np.clip(np.round(xray.pixels * 255), 0, 255).astype(np.uint8), max_side, Image.Resampling.BOX)
    lung = shrink(mask_u8(seg.lung), max_side, Image.Resampling.NEAREST) > 0
    infection = shrink(mask_u8(seg.infection), max_side, Image.Resampling.NEAREST) > 0
    opacity = shrink(mask_u8(seg.opacity), max_side, Image.Resampling.NEAREST) > 0
    return Images(
        original=png_base64(grey),
        overlay=png_base64(render_overlay(grey / 255.0, lung, infection, opacity=opacity)),
        lung_mask=png_base64(mask_u8(seg.lung)),
        infection_mask=png_base64(mask_u8(seg.infection)),
    )


# -- saving (only with save_dir) -------------------------------------------------------------------------
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


# -- the service -----------------------------------------------------------------------------------------
def record_id() -> str:
    """A sortable, unique name for one request: UTC time plus a random suffix."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def client_filename(upload: UploadFile) -> str:
    """The upload's base name (no folders from the client), or '<upload>' when it has none."""
    name = Path((upload.filename or "").replace("\\", "/")).name
    return name[:255] or "<upload>"


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

    def __call__(self, data: bytes, filename: str, dicom_seg: bool = False, covid_status: str = "unknown") -> SegmentResponse:
        start = time.perf_counter()
        xray = decode_xray(data, filename, self.settings.max_pixels)
        if dicom_seg and xray.dicom is None:
            raise InputFileError(filename, "dicom_seg=true needs a DICOM upload; this file is not DICOM")
        with self._lock:
            seg = self.pipeline.predict([xray], covid_status=covid_status)[0]
        seg_b64 = None
        if dicom_seg:
            try:
                seg_b64 = base64.b64encode(dicom_seg_bytes(xray, seg, dicom_seg_algorithms(self.pipeline))).decode()
            except NoDicomSeg as e:
                raise InputFileError(filename, f"no DICOM SEG: {e.reason}") from e
        response = SegmentResponse(
            id=record_id(),
            figures=Figures(**seg.to_dict()),
            images=encode_images(xray, seg, self.settings.preview_max_side),
            models=self.model_names,
            elapsed_ms=0.0,
            dicom_seg_base64=seg_b64,
        )
        if self.settings.save_dir is not None:
            save_record(Path(self.settings.save_dir), response, data)
        response.elapsed_ms = round(1000 * (time.perf_counter() - start), 1)
        return response


def too_large(settings: ServerSettings) -> str:
    return f"upload is over the size limit of {settings.max_upload_mb:g} MB"


def status_for(error: InputFileError) -> int:
    """HTTP status for an unusable upload: 400 empty, 413 too many pixels, 415 not an image, 422 otherwise."""
    return {"empty": 400, "too_large": 413, "not_image": 415}.get(error.kind, 422)  # 422: corrupt, too small...


def load_pipeline(settings: ServerSettings) -> Any:
    """Build the two-stage pipeline the settings name (shipped models where a path is None)."""
    from cxrseg.inference.pipeline import TwoStagePipeline

    return TwoStagePipeline.from_pretrained(
        settings.lung, settings.infection, backend=settings.backend, device=settings.device
    )


def keep_uploads_in_memory(max_body: int) -> None:
    """Make Starlette keep multipart files up to ``max_body`` bytes in memory rather than spill them to disk.

    ``MultiPartParser.spool_max_size`` is Starlette's class-level setting for this (default 1 MB); it is only
    ever raised here, and :class:`BodyLimit` bounds what it can hold.
    """
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_body)


def busy_response(retry_after: int) -> JSONResponse:
    """503 with Retry-After: the answer to an upload when every worker and queue slot is taken."""
    detail = f"the server is busy; retry in {retry_after} s"
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(retry_after)})


class RefuseWhenBusy:
    """ASGI middleware: refuse an upload with 503 before reading its body when the queue is already full.

    The route's own admission check stays authoritative; this only spares reading bodies that would be refused.
    """

    def __init__(self, app: ASGIApp, queue: InferenceQueue, path: str) -> None:
        self.app, self.queue, self.path = app, queue, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_upload = scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self.path
        if is_upload and self.queue.is_full():
            return await busy_response(self.queue.retry_after())(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets a JSON 413; one slower than ``timeout_s`` a 408.

    Refused before reading when Content-Length says so, else as soon as the streamed bytes pass the limit (raised
    inside the app, so the JSON handler answers), so no more than the limit is ever held. The whole body must
    arrive within ``timeout_s`` of the request's start: a stalled or trickling client is answered 408 and its
    connection closed. FastAPI's own ``max_body_size`` answers plain text instead.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, detail: str, timeout_s: float = 60.0) -> None:
        self.app, self.max_bytes, self.detail, self.timeout_s = app, max_bytes, detail, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            return await JSONResponse({"detail": self.detail}, status_code=413, headers=CLOSE)(scope, receive, send)
        seen, complete = 0, False
        deadline = asyncio.get_running_loop().time() + self.timeout_s

        async def limited_receive() -> Message:
            nonlocal seen, complete
            if complete:  # the body is in; later calls wait for a disconnect, with no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except asyncio.TimeoutError:
                raise HTTPException(408, f"the upload did not arrive within {self.timeout_s:g} s", CLOSE) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self.detail, CLOSE)
            return message

        await self.app(scope, limited_receive, send)


def bearer_digest(value: str | None) -> bytes:
    """SHA-256 of the token in an ``Authorization: Bearer TOKEN`` header value (of b'' when there is none)."""
    scheme, _, token = (value or "").strip().partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    return hashlib.sha256(token.encode("latin-1")).digest()  # header text is latin-1, as Starlette decoded it


def unauthorized(detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="cxrseg"', **CLOSE}
    return JSONResponse({"detail": detail}, status_code=401, headers=headers)


class RequireApiKey:
    """ASGI middleware: every call under /api/ except health needs ``Authorization: Bearer KEY``, else 401 JSON.

    Checked first, before a body is read or a queue slot counted. The digests of the sent and the real key are
    compared in constant time (``hmac.compare_digest``), so neither the key nor its length leaks through timing.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.digest = hashlib.sha256(api_key.encode("ascii")).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/api/") and path != HEALTH_PATH:
            sent = Headers(scope=scope).get("authorization")
            if not hmac.compare_digest(bearer_digest(sent), self.digest):
                detail = "wrong API key" if sent else "this server needs an API key: send 'Authorization: Bearer KEY'"
                return await unauthorized(detail)(scope, receive, send)
        await self.app(scope, receive, send)


def add_error_handlers(app: FastAPI) -> None:
    """Every error answers JSON ``{"detail": ...}``: input problems 4xx, a full queue 503, bugs 500."""

    @app.exception_handler(InputFileError)
    async def _bad_input(request: Request, exc: InputFileError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status_for(exc))

    @app.exception_handler(QueueFull)
    async def _busy(request: Request, exc: QueueFull) -> JSONResponse:
        return busy_response(exc.retry_after)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this answer, so the server logs the traceback.
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)


def add_api_routes(app: FastAPI, settings: ServerSettings, segmenter: Segmenter, queue: InferenceQueue) -> None:
    """The JSON API under /api/v1."""
    pipeline = segmenter.pipeline
    errors = {code: {"model": ErrorResponse} for code in (400, 413, 415, 422, 503)}

    @app.post(SEGMENT_PATH, response_model=SegmentResponse, responses=errors, tags=["segmentation"])
    async def segment(
        file: UploadFile, dicom_seg: bool = False, covid_status: Literal["unknown", "positive"] = "unknown"
    ) -> SegmentResponse:
        """Segment one chest X-ray (PNG, JPEG, TIFF, BMP or DICOM) sent as multipart field ``file``;
        ``?dicom_seg=true`` adds a DICOM SEG of a DICOM upload (422 for any other format);
        ``?covid_status=positive`` (a confirmed patient) skips the image-level COVID-19 veto."""
        data = await file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, too_large(settings))
        return await queue.run(segmenter, data, client_filename(file), dicom_seg, covid_status)

    @app.get(HEALTH_PATH, response_model=Health, tags=["service"])
    async def health() -> Health:
        """Is the service up, which backend runs the models, and how busy is it."""
        return Health(status="ok", version=__version__, backend=segmenter.model_names["backend"],
                      workers=queue.workers, in_flight=queue.in_flight, capacity=queue.capacity,
                      max_upload_mb=settings.max_upload_mb, max_pixels=settings.max_pixels,
                      auth_required=bool(settings.api_key))

    @app.get("/api/v1/models", tags=["service"])
    async def models() -> dict[str, dict]:
        """The model cards of both stages: architecture, thresholds, training data and metrics."""
        return {"lung": pipeline.lung_card, "infection": pipeline.infection_card}


def add_docs_routes(app: FastAPI) -> None:
    """/docs: Swagger UI, its script, style and icon served from the installed fastapi-offline package.

    Nothing is fetched from elsewhere: no CDN, no favicon from the web, and Swagger UI's online validator is off.
    """
    title = f"{app.title} {app.version}"
    favicon = f"{DOCS_ASSETS_URL}/favicon.png"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # the prefix a reverse proxy serves the app under, if any
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{title} - API docs", swagger_favicon_url=root + favicon,
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_ui_parameters={"validatorUrl": None},  # no spec sent to swagger.io's online validator
        )

    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")


def document_api_key(app: FastAPI) -> None:
    """Declare the bearer key in the OpenAPI schema (Swagger UI's Authorize button) for every call that needs it."""

    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain_openapi()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["apiKey"] = {"type": "http", "scheme": "bearer", "description": "the server's API key"}
            for path, operations in schema.get("paths", {}).items():
                if path.startswith("/api/") and path != HEALTH_PATH:
                    for operation in operations.values():
                        operation["security"] = [{"apiKey": []}]
                        operation.setdefault("responses", {})["401"] = {
                            "description": "no API key, or a wrong one",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
                        }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_page_routes(app: FastAPI) -> None:
    """The single page at / and its script and style under /static."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def create_app(settings: ServerSettings, pipeline: Any = None) -> FastAPI:
    """The FastAPI app for ``settings``; ``pipeline`` defaults to the models the settings name."""
    settings.check()
    pipeline = pipeline if pipeline is not None else load_pipeline(settings)
    segmenter = Segmenter(pipeline, settings)
    queue = InferenceQueue(settings.workers, settings.queue_size)
    keep_uploads_in_memory(settings.max_upload_bytes + MULTIPART_OVERHEAD)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        queue.shutdown()

    app = FastAPI(
        title="cxrseg",
        version=__version__,
        summary="Lung and COVID-19 infection segmentation of chest X-rays, with per-lung severity.",
        lifespan=lifespan,
        docs_url=None,  # served by add_docs_routes from local assets
        redoc_url=None,  # ReDoc shows a logo from its CDN: /docs is the one documentation page
    )
    app.state.settings, app.state.queue, app.state.segmenter = settings, queue, segmenter
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD, detail=too_large(settings),
                       timeout_s=settings.upload_timeout_s)
    app.add_middleware(RefuseWhenBusy, queue=queue, path=SEGMENT_PATH)
    if settings.api_key:
        app.add_middleware(RequireApiKey, api_key=settings.api_key)  # added last: runs first
    add_error_handlers(app)
    add_api_routes(app, settings, segmenter, queue)
    add_docs_routes(app)
    add_page_routes(app)
    if settings.api_key:
        document_api_key(app)
    return app


KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this many seconds


def run_server(settings: ServerSettings) -> None:
    """Load the models, then serve on ``settings.host:settings.port`` until interrupted."""
    import uvicorn

    settings.check()  # before loading any model: e.g. no API key off loopback
    app = create_app(settings)
    if not is_loopback(settings.host):
        print(f"note: serving on {settings.host}, reachable from other machines, with an API key. Plain HTTP "
              "carries the key in clear: across an untrusted network put a TLS proxy in front.", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", timeout_keep_alive=KEEP_ALIVE_S)
