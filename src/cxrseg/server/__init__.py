"""``cxrseg serve``: the web page and JSON API over the two-stage pipeline (FastAPI + uvicorn)."""

from cxrseg.server.app import ServerSettings, create_app, run_server

__all__ = ["ServerSettings", "create_app", "run_server"]
