"""Read a ``cxrseg predict`` output folder (results*.csv, failed*.csv, run.json) into one :class:`FolderData`.

Tolerant of what runs leave behind: shards are merged, a torn last line is dropped, unreadable figures become None.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from cxrseg.errors import CxrsegError
from cxrseg.report.columns import Column, table_columns
from cxrseg.report.runinfo import read_run_info


@dataclass
class FolderData:
    """What a predict output folder holds, read by name."""

    folder: Path
    columns: list[Column]
    rows: list[dict]  # column name -> value (float/int/str/None); plus "_stem" and "_size"
    failed: list[tuple[str, str]]
    csv_files: list[Path]
    run: dict | None
    unknown_columns: list[str] = field(default_factory=list)


def column_values(rows: list[dict], name: str) -> list[float]:
    """The rows' numeric values of one column, rows without one left out."""
    return [r[name] for r in rows if isinstance(r.get(name), (int, float))]


def _csv_files(folder: Path, prefix: str) -> list[Path]:
    """``prefix.csv`` first, then its shards (``prefix.shard0of4.csv``, ...) in name order."""
    plain = folder / f"{prefix}.csv"
    shards = sorted(p for p in folder.glob(f"{prefix}.shard*.csv") if p.is_file())
    return ([plain] if plain.is_file() else []) + shards


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    """Header and rows; a torn last line (a run killed mid-write) is dropped, undecodable bytes replaced."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise CxrsegError(f"{path}: cannot read ({e.strerror or e})") from e
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(text.splitlines())
    rows = [r for r in reader if r.get("file")]
    return list(reader.fieldnames or []), rows


def _number(text: object, kind: str) -> int | float | None:
    """A CSV cell as a finite number (an int for ``int`` columns when whole), else None."""
    if text is None:
        return None
    text = str(text).strip()
    if text == "" or text.lower() in ("none", "nan", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    if kind == "int" and value.is_integer():
        return int(value)
    return value


def _stems(files: list[str]) -> dict[str, str]:
    """The output stem predict gave each input (file stems, prefixed by folders where stems repeat)."""
    try:
        from cxrseg.inference.batch import output_stems
    except ImportError:  # pragma: no cover - an install without the inference package
        return {f: Path(f).stem for f in files}
    paths = [Path(f) for f in files]
    named = output_stems(paths)
    return {f: named.get(p, p.stem) for f, p in zip(files, paths)}


def read_folder(folder: str | Path) -> FolderData:
    """Read a predict output folder; a folder without any results or failures CSV is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CxrsegError(f"{folder}: no such folder (give a `cxrseg predict` output folder)")
    result_files, failed_files = _csv_files(folder, "results"), _csv_files(folder, "failed")
    if not result_files and not failed_files:
        raise CxrsegError(f"{folder}: no results.csv or failed.csv here; is it a `cxrseg predict` output folder?")
    fieldnames: list[str] = []
    by_file: dict[str, dict] = {}
    for path in result_files:
        names, rows = _read_csv(path)
        fieldnames += [n for n in names if n not in fieldnames]
        for r in rows:
            by_file[r["file"]] = r  # a file in two CSVs (a re-run shard): the later one wins
    failed: dict[str, str] = {}
    for path in failed_files:
        for r in _read_csv(path)[1]:
            if r["file"] not in by_file:
                failed[r["file"]] = (r.get("problem") or "").strip() or "no reason recorded"
    columns, unknown = table_columns(fieldnames)
    kinds = {c.name: c.kind for c in columns}
    for name in ("height", "width"):
        kinds.setdefault(name, "int")
    stems = _stems(list(by_file) + list(failed))
    rows = []
    for file, raw in by_file.items():
        row = {name: ((raw.get(name) or "").strip() or None) if kind == "text" else _number(raw.get(name), kind)
               for name, kind in kinds.items()}
        row["file"] = file
        h, w = row.get("height"), row.get("width")
        row["_size"] = f"{w} x {h}" if h and w else None
        row["_stem"] = stems.get(file, Path(file).stem)
        rows.append(row)
    return FolderData(folder, columns, rows, sorted(failed.items()), result_files + failed_files,
                      read_run_info(folder), unknown)
