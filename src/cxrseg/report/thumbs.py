"""Link each row to its overlay, masks and thumbnail; make the thumbnails (small JPEGs in ``OUT/report_thumbs/``).

Thumbnails keep the page light with thousands of images; one newer than its overlay is reused, not remade.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

from cxrseg.report.folder import FolderData

THUMBS = "report_thumbs"
THUMB_SIDE = 160


def _existing(folder: Path, names: list[str]) -> str | None:
    """The first of ``names`` that is a file in ``folder``, or None."""
    for name in names:
        if (folder / name).is_file():
            return name
    return None


def _link(name: str | None) -> str | None:
    """A file name as a relative URL (quoted), None kept."""
    return None if name is None else quote(name)


def _make_thumb(overlay: Path, thumb: Path, side: int) -> bool:
    """A JPEG of at most ``side`` px a side; kept when already newer than the overlay. True when it exists."""
    from PIL import Image

    try:
        if thumb.is_file() and thumb.stat().st_mtime >= overlay.stat().st_mtime:
            return True
        with Image.open(overlay) as im:
            im.draft("RGB", (side, side))  # JPEG overlays decode at a reduced scale; PNG ignores it
            im = im.convert("RGB")
            factor = max(1, min(im.width, im.height) // (2 * side))
            if factor > 1:
                im = im.reduce(factor)
            im.thumbnail((side, side), Image.Resampling.LANCZOS)
            from cxrseg._atomic import atomic_path

            with atomic_path(thumb) as tmp:
                im.save(tmp, format="JPEG", quality=82)
        return True
    except Exception:  # noqa: BLE001 - an unreadable overlay gets no thumbnail; the full-size link remains
        return False


def attach_files(data: FolderData, thumbnails: bool = True, side: int = THUMB_SIDE,
                 workers: int | None = None) -> int:
    """Give each row relative links to its overlay, masks and thumbnail; returns the thumbnails made or kept."""
    folder = data.folder
    todo = []
    for row in data.rows:
        stem, plain = row["_stem"], Path(row["file"]).stem
        candidates = [stem] + ([plain] if plain != stem else [])
        overlay = _existing(folder, [f"{s}_overlay.png" for s in candidates])
        base = overlay[: -len("_overlay.png")] if overlay else stem
        row["_overlay"] = _link(overlay)
        row["_lung"] = _link(_existing(folder, [f"{base}_lung.png"]))
        row["_infection"] = _link(_existing(folder, [f"{base}_infection.png"]))
        row["_thumb"] = None
        if overlay and thumbnails:
            todo.append((row, folder / overlay, folder / THUMBS / f"{base}.jpg"))
    if not todo:
        return 0
    (folder / THUMBS).mkdir(exist_ok=True)
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxrseg-thumb") as pool:
        made = list(pool.map(lambda item: _make_thumb(item[1], item[2], side), todo))
    for (row, _, thumb), ok in zip(todo, made):
        if ok:
            row["_thumb"] = _link(f"{THUMBS}/{thumb.name}")
    return sum(made)
