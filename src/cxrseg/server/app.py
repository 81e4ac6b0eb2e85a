"""The HTTP service: upload a chest X-ray, get the figures, masks and overlay back as JSON, or use the page at /.

This module builds the app and its routes; the parts live beside it, one job each: ``settings`` (what
``cxrseg serve`` can set), ``schemas`` (the JSON models), ``inference_queue`` and ``segmenter`` (inference off
the event loop, bounded), ``images`` and ``records`` (PNG answers, saving), ``errors``, ``limits`` and ``security``
(JSON errors, upload size and time limits, the API key). /docs loads Swagger UI from an installed package
(fastapi-offline), not a CDN.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request, UploadFile
from fastapi.exceptions import HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from cxrseg import __version__
from cxrseg.server.errors import add_error_handlers
from cxrseg.server.inference_queue import InferenceQueue
from cxrseg.server.inference_queue import QueueFull as QueueFull  # re-exported: tests import it from here
from cxrseg.server.limits import (
    MULTIPART_OVERHEAD,
    BodyLimit,
    RefuseWhenBusy,
    header_deadline_protocol,
    keep_uploads_in_memory,
    too_large,
)
from cxrseg.server.schemas import ErrorResponse, Health, SegmentResponse
from cxrseg.server.schemas import Figures as Figures  # re-exported: tests import it from here
from cxrseg.server.security import HEALTH_PATH, RequireApiKey, document_api_key, is_loopback
from cxrseg.server.segmenter import Segmenter
from cxrseg.server.settings import ServerSettings

STATIC_DIR = Path(str(resources.files("cxrseg.server") / "static"))
SEGMENT_PATH = "/api/v1/segment"
DOCS_ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))  # Swagger UI's assets, no CDN
DOCS_ASSETS_URL = "/docs-assets"
PAGE_HEADERS = {
    # The page loads nothing from elsewhere: scripts, styles and images come from this server or are data/blob URLs.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}


def client_filename(upload: UploadFile) -> str:
    """The upload's base name (no folders from the client), or '<upload>' when it has none."""
    name = Path((upload.filename or "").replace("\\", "/")).name
    return name[:255] or "<upload>"


def load_pipeline(settings: ServerSettings) -> Any:
    """Build the two-stage pipeline the settings name (shipped models where a path is None)."""
    from cxrseg.inference.pipeline import TwoStagePipeline

    return TwoStagePipeline.from_pretrained(
        settings.lung, settings.infection, backend=settings.backend, device=settings.device, accurate=settings.accurate
    )


def add_api_routes(app: FastAPI, settings: ServerSettings, segmenter: Segmenter, queue: InferenceQueue) -> None:
    """The JSON API under /api/v1."""
    pipeline = segmenter.pipeline
    errors = {code: {"model": ErrorResponse} for code in (400, 413, 415, 422, 503)}

    @app.post(SEGMENT_PATH, response_model=SegmentResponse, responses=errors, tags=["segmentation"])
    async def segment(
        file: UploadFile, dicom_seg: bool = False, covid_status: Literal["unknown", "positive"] = "unknown"
    ) -> SegmentResponse:
        """Segment one chest X-ray (PNG, JPEG, TIFF, BMP or DICOM) sent as multipart field ``file``;
        ``?dicom_seg=true`` adds a DICOM SEG of a DICOM upload (any other upload is segmented as usual, with
        ``dicom_seg_note`` saying why it has no SEG);
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
        """The model cards of both stages (and of the accurate mode's second stage-1 model, and of the whole-film
        classifier beside stage 2's head, when used): architecture, thresholds, training data and metrics."""
        return pipeline.cards


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


def uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """uvicorn's settings for ``cxrseg serve`` (shared with the tests that start a real server).

    The h11 protocol is pinned, with the request-head deadline: a client must send its request line and
    headers within ``settings.header_timeout_s``, else its connection is closed.
    """
    return {"host": settings.host, "port": settings.port, "log_level": "info", "timeout_keep_alive": KEEP_ALIVE_S,
            "http": header_deadline_protocol(settings.header_timeout_s)}


def run_server(settings: ServerSettings) -> None:
    """Load the models, then serve on ``settings.host:settings.port`` until interrupted."""
    import uvicorn

    settings.check()  # before loading any model: e.g. no API key off loopback
    app = create_app(settings)
    if not is_loopback(settings.host):
        print(f"note: serving on {settings.host}, reachable from other machines, with an API key. Plain HTTP "
              "carries the key in clear: across an untrusted network put a TLS proxy in front.", file=sys.stderr)
    uvicorn.run(app, **uvicorn_options(settings))
