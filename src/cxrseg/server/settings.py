"""``ServerSettings``: everything ``cxrseg serve`` can set, and the check that refuses values it cannot run with.

Kept apart so the CLI, the app factory and the middlewares share one validated description of the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxrseg.data.io import MAX_PIXELS
from cxrseg.errors import CxrsegError
from cxrseg.server.security import is_loopback


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
    accurate: bool = False  # the slower accurate mode (flip TTA, two stage-1 models, its own thresholds)
    device: str = "auto"  # torch device for the torch backend
    preview_max_side: int = 2048  # longest side of the original and overlay PNGs sent for display
    api_key: str | None = None  # /api/ calls but health then need 'Authorization: Bearer KEY'; required off loopback
    upload_timeout_s: float = 60.0  # a request body must arrive within this many seconds, else 408
    header_timeout_s: float = 15.0  # a request line and headers must arrive within this many seconds, else closed

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
        if not self.header_timeout_s > 0:
            raise CxrsegError(f"header timeout must be positive, not {self.header_timeout_s} s")
        key = self.api_key
        if key is not None and not (key and key.isascii() and key.isprintable() and " " not in key):
            raise CxrsegError("the API key must be printable ASCII without spaces (it travels in an HTTP header)")
        if not self.api_key and not is_loopback(self.host):
            raise CxrsegError(
                f"refusing to serve on {self.host} without an API key: anyone who can reach it could use it. "
                "Set --api-key or the CXRSEG_API_KEY environment variable, or bind 127.0.0.1")
