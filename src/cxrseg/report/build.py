"""Build ``OUT/report.html`` from a ``cxrseg predict`` output folder, and from nothing else.

The folder holds ``results.csv`` (or ``results.shard*.csv``), ``failed*.csv``, ``STEM_{lung,infection,overlay}.png``
per image and, from runs that recorded it, ``run.json`` (the models and their cards). The page is one file with
its CSS and script inline and no address outside the folder: the plots are inline SVG, the table's rows one
JSON blob that a small script pages through (100 rows a page) and sorts, the thumbnails small JPEGs in
``OUT/report_thumbs/`` (made once, reused while newer than their overlay) loaded lazily, each linking to its
full-size overlay. results.csv columns are read by name: the known ones are shown when present, columns that
follow the naming rules (``*_pct``, ``*_probability``, ``*_grade``, ``*_score``) are shown as such, the rest
ignored, so an older or newer CSV still builds.

This module is the entry point: :func:`build_report` reads the folder (``folder``), links the images and makes
the thumbnails (``thumbs``) and renders the page (``page``). Names once defined here are re-exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxrseg._atomic import atomic_write_text
from cxrseg.errors import CxrsegError
from cxrseg.report.cards import model_blocks
from cxrseg.report.columns import HIDDEN_COLUMNS, KNOWN_COLUMNS, PATTERN_KINDS, SORTABLE_KINDS, Column
from cxrseg.report.folder import FolderData, read_folder
from cxrseg.report.page import render
from cxrseg.report.plots import bar_chart, plots
from cxrseg.report.summary import summary_items
from cxrseg.report.table import PAGE_SIZE, table_data
from cxrseg.report.thumbs import THUMB_SIDE, THUMBS, attach_files

__all__ = [
    "HIDDEN_COLUMNS", "KNOWN_COLUMNS", "PAGE_SIZE", "PATTERN_KINDS", "REPORT", "SORTABLE_KINDS", "THUMBS",
    "THUMB_SIDE", "Column", "FolderData", "ReportResult", "attach_files", "bar_chart", "build_report",
    "model_blocks", "plots", "read_folder", "render", "summary_items", "table_data",
]

REPORT = "report.html"


@dataclass
class ReportResult:
    path: Path
    images: int
    failed: int
    thumbnails: int


def build_report(folder: str | Path, out: str | Path | None = None, thumbnails: bool = True,
                 page_size: int = PAGE_SIZE) -> ReportResult:
    """Write the folder's report (default ``FOLDER/report.html``, atomically); returns where and what it holds.

    The page links to files by paths relative to the folder, so ``out`` should stay inside it.
    """
    if page_size < 1:
        raise CxrsegError(f"page size must be at least 1, not {page_size}")
    data = read_folder(folder)
    made = attach_files(data, thumbnails=thumbnails)
    path = Path(out) if out is not None else data.folder / REPORT
    atomic_write_text(path, render(data, page_size))
    return ReportResult(path, len(data.rows), len(data.failed), made)
