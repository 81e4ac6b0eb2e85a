"""API-key auth: with a key set (required off loopback) every /api/ call but health needs ``Bearer KEY``.

The key is checked before any body is read, compared in constant time, and declared in the OpenAPI schema.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from cxrseg.server.errors import CLOSE

HEALTH_PATH = "/api/v1/health"  # the one /api/ call open without the API key


def is_loopback(host: str) -> bool:
    """Is ``host`` reachable from this machine only ('localhost', 127.0.0.0/8, ::1)?"""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


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
