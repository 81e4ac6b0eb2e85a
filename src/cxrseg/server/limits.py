"""Upload limits: a body over the size limit gets 413 as soon as that is seen, a slow one 408, a busy server 503;
a connection whose request line and headers stall is closed.

The ASGI middlewares act before a body is read whole, so no more than the limit is ever held in memory. The
header deadline lives below the app, in uvicorn's h11 protocol, since the app sees nothing before the headers.
"""

from __future__ import annotations

import asyncio

import h11
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from cxrseg.server.errors import CLOSE, busy_response
from cxrseg.server.inference_queue import InferenceQueue
from cxrseg.server.settings import ServerSettings

MULTIPART_OVERHEAD = 64 * 1024  # bytes allowed on top of the file for the multipart envelope


def too_large(settings: ServerSettings) -> str:
    return f"upload is over the size limit of {settings.max_upload_mb:g} MB"


def keep_uploads_in_memory(max_body: int) -> None:
    """Make Starlette keep multipart files up to ``max_body`` bytes in memory rather than spill them to disk.

    ``MultiPartParser.spool_max_size`` is Starlette's class-level setting for this (default 1 MB); it is only
    ever raised here, and :class:`BodyLimit` bounds what it can hold.
    """
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_body)


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


class HeaderDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request line and headers are not all in by a deadline.

    uvicorn waits for a request head forever (slowloris). The timer runs while h11 awaits a head: from the
    connection's start, and on a keep-alive connection from the next request's first byte (before that byte,
    uvicorn's own keep-alive timeout applies). Use :func:`header_deadline_protocol` to set ``header_timeout_s``.
    """

    header_timeout_s: float = 15.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """Arm the timer while a request head is awaited (h11's IDLE), stop it once one has arrived."""
        awaiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if awaiting and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)
        elif not awaiting:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        """Close the connection: no complete request head came in time, and there is no request to answer."""
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def header_deadline_protocol(timeout_s: float) -> type[HeaderDeadlineH11]:
    """:class:`HeaderDeadlineH11` with a ``timeout_s`` deadline, for uvicorn's ``http=`` (which takes a class)."""
    return type("HeaderDeadlineH11", (HeaderDeadlineH11,), {"header_timeout_s": timeout_s})
