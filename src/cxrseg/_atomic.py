"""Write files so that a crash or kill never leaves a half-written one: temp file in the same folder, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_UMASK = os.umask(0)
os.umask(_UMASK)
_TEMP_MARK = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP_MARK + path.suffix, dir=path.parent)
    tmp_path = Path(tmp)
    try:
        os.close(fd)
        yield tmp_path
        # mkstemp makes the file 0600; give the result the permissions a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing that becomes ``path`` only when the block ends without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def remove_stale_temps(folder: str | Path, names: tuple[str, ...]) -> list[Path]:
    """Delete temporaries that :func:`atomic_path` left for ``names`` in ``folder`` when a process was killed
    (SIGKILL, power loss) mid-write; call it only when no other process writes those files. Returns them."""
    folder = Path(folder)
    removed = []
    for name in names:
        for tmp in folder.glob(f".{name}.*{_TEMP_MARK}*"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
