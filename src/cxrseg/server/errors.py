"""Error answers: every failure is JSON ``{"detail": ...}``, with the status code that says whose fault it is.

Input problems get 4xx, a full queue 503 + Retry-After, bugs 500; shared here by the routes and the middlewares.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxrseg.errors import InputFileError
from cxrseg.server.inference_queue import QueueFull

CLOSE = {"Connection": "close"}  # on answers given before a body is read whole: the rest of it is not waited for


def status_for(error: InputFileError) -> int:
    """HTTP status for an unusable upload: 400 empty, 413 too many pixels, 415 not an image, 422 otherwise."""
    return {"empty": 400, "too_large": 413, "not_image": 415}.get(error.kind, 422)  # 422: corrupt, too small...


def busy_response(retry_after: int) -> JSONResponse:
    """503 with Retry-After: the answer to an upload when every worker and queue slot is taken."""
    detail = f"the server is busy; retry in {retry_after} s"
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(retry_after)})


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
