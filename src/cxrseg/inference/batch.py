"""Predict many files: stream through decoding, write masks/overlays/results.csv as it goes, resume, shard.

For each input ``STEM.ext`` the output folder gets ``STEM_lung.png``, ``STEM_infection.png`` (8-bit 0/255
at the input's own size), ``STEM_overlay.png``, and one row in ``results.csv``. Every image file is written
atomically; ``results.csv`` grows one flushed row at a time, so a crash keeps every finished row and
``resume=True`` skips them. A file that cannot be read is listed in ``failed.csv`` and never stops the rest.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cxrseg._atomic import atomic_path
from cxrseg.data.io import IMAGE_SUFFIXES, XRay, read_xray
from cxrseg.errors import CxrsegError, InputFileError
from cxrseg.inference.overlay import render_overlay
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.inference.result import CSV_FIELDS, Segmentation

RESULTS, FAILED = "results.csv", "failed.csv"


@dataclass
class BatchReport:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def collect_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand folders (recursively, image suffixes only, sorted) and keep files as given."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise CxrsegError(f"{p}: no such file or folder")
    if not files:
        raise CxrsegError("no input images found (PNG, JPEG, TIFF, BMP or DICOM)")
    return files


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if not text:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as e:
        raise CxrsegError(f"--shard must look like i/n (e.g. 0/4), not {text!r}") from e
    if not 0 <= i < n:
        raise CxrsegError(f"--shard {text}: need 0 <= i < n")
    return i, n


def output_stems(files: list[Path]) -> dict[Path, str]:
    """A unique output stem per input: the file's stem, prefixed by its folder when stems repeat."""
    seen: dict[str, int] = {}
    for f in files:
        seen[f.stem] = seen.get(f.stem, 0) + 1
    return {f: (f.stem if seen[f.stem] == 1 else f"{f.parent.name}_{f.stem}") for f in files}


def _save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def write_outputs(out: Path, stem: str, xray: XRay, seg: Segmentation) -> None:
    _save_png(out / f"{stem}_lung.png", seg.lung.astype(np.uint8) * 255)
    _save_png(out / f"{stem}_infection.png", seg.infection.astype(np.uint8) * 255)
    _save_png(out / f"{stem}_overlay.png", render_overlay(xray.pixels, seg.lung, seg.infection))
    if seg.uncertainty is not None:
        scaled = np.clip(seg.uncertainty / 0.5, 0, 1)  # the std of values in [0, 1] is at most 0.5
        _save_png(out / f"{stem}_uncertainty.png", np.round(scaled * 255).astype(np.uint8))


def _done_files(csv_path: Path) -> set[str]:
    """Files already in results.csv; a torn last line (a kill mid-write) is cut off first."""
    if not csv_path.exists():
        return set()
    data = csv_path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(csv_path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    with open(csv_path, newline="", encoding="utf-8") as f:
        return {row["file"] for row in csv.DictReader(f)}


class _AppendCsv:
    """A CSV that gains flushed, fsynced rows; the header is written once."""

    def __init__(self, path: Path, fields: tuple[str, ...]) -> None:
        new = not path.exists() or path.stat().st_size == 0
        self.f = open(path, "a", newline="", encoding="utf-8")
        self.w = csv.DictWriter(self.f, fieldnames=fields)
        if new:
            self.w.writeheader()

    def write(self, rows: list[dict]) -> None:
        self.w.writerows(rows)
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def _decoded(files: list[Path], max_pixels: int) -> Iterator[tuple[Path, XRay | None, str | None]]:
    for f in files:
        try:
            yield f, read_xray(f, max_pixels=max_pixels), None
        except InputFileError as e:
            yield f, None, e.problem


def predict_files(
    pipeline: TwoStagePipeline,
    inputs: Iterable[str | Path],
    out: str | Path,
    resume: bool = False,
    shard: str | None = None,
    progress: Callable | None = None,
    on_failure: Callable[[str, str], None] | None = None,
    max_pixels: int = 8192 * 8192,
) -> BatchReport:
    """Segment every input file into ``out``; returns counts and the failures with their reasons."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = collect_inputs(inputs)
    i, n = parse_shard(shard)
    files = files[i::n]
    stems = output_stems(files)
    results = out / (RESULTS if n == 1 else f"results.shard{i}of{n}.csv")
    failed_path = out / (FAILED if n == 1 else f"failed.shard{i}of{n}.csv")
    if not resume:
        results.unlink(missing_ok=True)
        failed_path.unlink(missing_ok=True)
    done = _done_files(results) if resume else set()
    report = BatchReport(skipped=sum(str(f) in done for f in files))
    todo = [f for f in files if str(f) not in done]
    writer = _AppendCsv(results, CSV_FIELDS)
    failures: _AppendCsv | None = None
    bar = progress(total=len(todo)) if progress else None
    try:
        batch: list[tuple[Path, XRay]] = []

        def flush() -> None:
            if not batch:
                return
            segs = pipeline.predict([x for _, x in batch])
            for (f, x), seg in zip(batch, segs):
                write_outputs(out, stems[f], x, seg)
            writer.write([{**seg.row(), "file": str(f)} for (f, _), seg in zip(batch, segs)])
            report.done += len(batch)
            if bar is not None:
                bar.update(len(batch))
            batch.clear()

        for f, xray, problem in _decoded(todo, max_pixels):
            if xray is None:
                if failures is None:
                    failures = _AppendCsv(failed_path, ("file", "problem"))
                failures.write([{"file": str(f), "problem": problem}])
                report.failed.append((str(f), problem))
                if on_failure:
                    on_failure(str(f), problem)
                if bar is not None:
                    bar.update(1)
                continue
            batch.append((f, xray))
            if len(batch) >= pipeline.batch_size:
                flush()
        flush()
    finally:
        writer.close()
        if failures is not None:
            failures.close()
        if bar is not None:
            bar.close()
    return report
