"""Build ``OUT/report.html`` from a ``cxrseg predict`` output folder, and from nothing else.

The folder holds ``results.csv`` (or ``results.shard*.csv``), ``failed*.csv``, ``STEM_{lung,infection,overlay}.png``
per image and, from runs that recorded it, ``run.json`` (the models and their cards). The page is one file with
its CSS and script inline and no address outside the folder: the plots are inline SVG, the table's rows one
JSON blob that a small script pages through (100 rows a page) and sorts, the thumbnails small JPEGs in
``OUT/report_thumbs/`` (made once, reused while newer than their overlay) loaded lazily, each linking to its
full-size overlay. results.csv columns are read by name: the known ones are shown when present, columns that
follow the naming rules (``*_pct``, ``*_probability``, ``*_grade``, ``*_score``) are shown as such, the rest
ignored, so an older or newer CSV still builds.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import json
import math
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from urllib.parse import quote

from cxrseg._atomic import atomic_write_text
from cxrseg.errors import CxrsegError
from cxrseg.report.runinfo import read_run_info

REPORT = "report.html"
THUMBS = "report_thumbs"
THUMB_SIDE = 160
PAGE_SIZE = 100

# Columns shown in the table, in this order, when results.csv has them: (name, heading, kind, tooltip).
# Kinds: text, int, pct (a percentage, 0-100), prob (0-1), num. Right/left are the patient's.
KNOWN_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("file", "file", "text", "input file"),
    ("infected_pct", "infected %", "pct", "share of the lung area with COVID-19 infection"),
    ("right_infected_pct", "right %", "pct", "infected share of the patient's right lung (image left)"),
    ("left_infected_pct", "left %", "pct", "infected share of the patient's left lung (image right)"),
    ("right_opacity_pct", "right opacity %", "pct", "opacity extent in the patient's right lung, before the veto"),
    ("left_opacity_pct", "left opacity %", "pct", "opacity extent in the patient's left lung, before the veto"),
    ("opacity_pct", "opacity %", "pct", "opacity extent of both lungs, before the veto"),
    ("right_grade", "R grade", "int", "patient's right lung: 0 none, 1 <25%, 2 25-50%, 3 50-75%, 4 >=75%"),
    ("left_grade", "L grade", "int", "patient's left lung: 0 none, 1 <25%, 2 25-50%, 3 50-75%, 4 >=75%"),
    ("total_grade", "grade", "int", "severity grade 0-8: right + left"),
    ("severity_score", "severity score", "num", "continuous severity score, 0-8"),
    ("infection_probability", "P(COVID-19)", "prob",
     "stage 2's image-level P(COVID-19) for the film (validated on COVID-QU-Ex only)"),
    ("covid_like", "COVID-like", "text", "the head's call at its threshold; 'confirmed' when the status was positive"),
    ("covid_status", "COVID-19 status", "text", "what was known of the patient's COVID-19 status"),
    ("uncertainty", "uncertainty", "num", "mean TTA uncertainty inside the lung (--tta runs)"),
    ("note", "note", "text", "why opacity was found but not counted as COVID-19 infection"),
    ("lung_area_px", "lung px", "int", "lung area in pixels"),
    ("infection_area_px", "infection px", "int", "infection area in pixels"),
)
# Read but not shown as table columns (size is shown as one "W x H" text).
HIDDEN_COLUMNS = {"height", "width", "right_lung_area_px", "left_lung_area_px"}
PATTERN_KINDS = (("_pct", "pct"), ("_probability", "prob"), ("_grade", "int"), ("_score", "num"))
SORTABLE_KINDS = {"int", "pct", "prob", "num", "text"}


@dataclass
class Column:
    name: str
    label: str
    kind: str
    title: str = ""


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


# -- reading -----------------------------------------------------------------------------------------


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


def _number(text, kind: str):
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


def _columns(fieldnames: list[str]) -> tuple[list[Column], list[str]]:
    """The table's columns from a CSV header: known ones in their order, pattern-named ones after them."""
    present = set(fieldnames)
    columns = [Column(n, label, kind, title) for n, label, kind, title in KNOWN_COLUMNS if n in present]
    known = {n for n, *_ in KNOWN_COLUMNS} | HIDDEN_COLUMNS
    unknown = []
    for name in fieldnames:
        if name in known or not name:
            continue
        kind = next((k for suffix, k in PATTERN_KINDS if name.endswith(suffix)), None)
        if kind is None:
            unknown.append(name)
            continue
        columns.append(Column(name, name.replace("_", " "), kind, f"results.csv column {name}"))
    return columns, unknown


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
    columns, unknown = _columns(fieldnames)
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


# -- files beside the rows ------------------------------------------------------------------------------


def _existing(folder: Path, names: list[str]) -> str | None:
    for name in names:
        if (folder / name).is_file():
            return name
    return None


def _link(name: str | None) -> str | None:
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


# -- summary, models, plots -------------------------------------------------------------------------------


def _values(rows: list[dict], name: str) -> list[float]:
    return [r[name] for r in rows if isinstance(r.get(name), (int, float))]


def _fmt_pct(v: float) -> str:
    return f"{v:.1f}%"


def summary_items(data: FolderData) -> list[tuple[str, str]]:
    """(label, value) pairs for the summary block."""
    n, nf = len(data.rows), len(data.failed)
    items = [("images segmented", f"{n:,}"), ("files that failed", f"{nf:,}")]
    infected = _values(data.rows, "infected_pct")
    if infected:
        with_inf = [v for v in infected if v > 0]
        items.append(("with infection", f"{len(with_inf):,} ({len(with_inf) / len(infected):.0%})"))
        if with_inf:
            items.append(("median infected % (those with infection)", _fmt_pct(statistics.median(with_inf))))
        items.append(("largest infected %", _fmt_pct(max(infected))))
    grades = _values(data.rows, "total_grade")
    if grades:
        items.append(("mean grade (0-8)", f"{statistics.fmean(grades):.2f}"))
    probs = _values(data.rows, "infection_probability")
    if probs:
        items.append(("median P(COVID-19)", f"{statistics.median(probs):.3f}"))
    if _values(data.rows, "uncertainty"):
        items.append(("test-time augmentation", "yes (uncertainty recorded)"))
    statuses = [r.get("covid_status") for r in data.rows if r.get("covid_status")]
    if statuses:
        counts: dict[str, int] = {}
        for s in statuses:
            counts[s] = counts.get(s, 0) + 1
        items.append(("COVID-19 status given", ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))))
    return items


def model_blocks(data: FolderData) -> tuple[str, list[dict]]:
    """(where the cards come from, [{stage, weights, sha256, lines}]) from run.json, else the shipped cards."""
    from cxrseg.models.store import card_summary

    run = data.run or {}
    models = run.get("models") if isinstance(run.get("models"), dict) else None
    blocks = []
    if models:
        source = "recorded by the predict run (run.json)"
        for stage in ("lung", "infection"):
            m = models.get(stage)
            if isinstance(m, dict):
                card = m.get("card") if isinstance(m.get("card"), dict) else {}
                blocks.append({"stage": stage, "weights": m.get("weights"), "sha256": m.get("sha256"),
                               "lines": card_summary(card)})
        return source, blocks
    source = ("not recorded by this run (no run.json in the folder); shown: the models shipped with this "
              "install, which the run used only if it was given no --lung-model/--infection-model")
    try:
        from cxrseg.models.store import read_card, shipped_weights, weights_digest

        for stage in ("lung", "infection"):
            weights = shipped_weights(stage)
            blocks.append({"stage": stage, "weights": str(weights), "sha256": weights_digest(weights),
                           "lines": card_summary(read_card(weights))})
    except (CxrsegError, OSError) as e:
        source = f"not recorded by this run, and the shipped cards cannot be read ({e})"
    return source, blocks


def _image_threshold(data: FolderData) -> float | None:
    run = data.run or {}
    t = (run.get("decision") or {}).get("image_threshold") if isinstance(run.get("decision"), dict) else None
    if isinstance(t, (int, float)):
        return float(t)
    card = ((run.get("models") or {}).get("infection") or {}).get("card") if isinstance(run.get("models"), dict) else None
    if isinstance(card, dict):
        block = card.get("tta") if run.get("tta") and isinstance(card.get("tta"), dict) else card
        t = block.get("image_threshold")
        if isinstance(t, (int, float)):
            return float(t)
    return None


def bar_chart(title: str, labels: list[str], counts: list[int], xlabel: str, note: str = "",
              marker: tuple[float, str] | None = None, width: int = 360, height: int = 210) -> str:
    """A small accessible SVG bar chart; ``marker`` = (position in bar units from the left edge, label)."""
    left, right, top, bottom = 40, 10, 34, 44
    pw, ph = width - left - right, height - top - bottom
    peak = max(counts) if counts and max(counts) > 0 else 1
    n = max(1, len(counts))
    step = pw / n
    every = max(1, math.ceil(n / 10))
    esc = html.escape
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(title)}">',
        f'<text class="chart-title" x="{left}" y="14">{esc(title)}</text>',
        f'<line class="axis" x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}"/>',
        f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">{peak:,}</text>',
        f'<text class="tick" x="{left - 4}" y="{top + ph}" text-anchor="end">0</text>',
    ]
    for i, (label, count) in enumerate(zip(labels, counts)):
        h = ph * count / peak
        x = left + i * step
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{top + ph - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{h:.1f}"><title>{esc(label)}: {count:,}</title></rect>'
        )
        if n <= 12 and count:
            parts.append(f'<text class="count" x="{x + step / 2:.1f}" y="{top + ph - h - 3:.1f}" '
                         f'text-anchor="middle">{count:,}</text>')
        if i % every == 0:
            parts.append(f'<text class="tick" x="{x + step / 2:.1f}" y="{top + ph + 13}" '
                         f'text-anchor="middle">{esc(label)}</text>')
    if marker is not None:
        mx = left + marker[0] * step
        parts.append(f'<line class="marker" x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + ph}"/>')
        right_side = marker[0] > 0.7 * n  # label to the left of a line near the right edge
        parts.append(f'<text class="marker-label" x="{mx - 3 if right_side else mx + 3:.1f}" y="{top + 9}" '
                     f'text-anchor="{"end" if right_side else "start"}">{esc(marker[1])}</text>')
    parts.append(f'<text class="xlabel" x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">'
                 f'{esc(xlabel)}</text>')
    parts.append("</svg>")
    chart = "".join(parts)
    caption = f"<figcaption>{esc(note)}</figcaption>" if note else ""
    return f'<figure class="plot">{chart}{caption}</figure>'


def _histogram(values: list[float], lo: float, hi: float, bins: int) -> list[int]:
    counts = [0] * bins
    for v in values:
        i = int((v - lo) / (hi - lo) * bins)
        counts[min(max(i, 0), bins - 1)] += 1
    return counts


def plots(data: FolderData) -> list[str]:
    """Inline SVG plots for the columns the CSV has."""
    out = []
    infected = _values(data.rows, "infected_pct")
    if infected:
        zero = sum(v <= 0 for v in infected)
        positive = [v for v in infected if v > 0]
        counts = [zero] + _histogram(positive, 0, 100, 10)
        labels = ["0"] + [f"{10 * i}-{10 * i + 10}" for i in range(10)]
        out.append(bar_chart("Infected % of the lungs", labels, counts, "infected % (first bar: none)",
                             f"{len(positive):,} of {len(infected):,} images with any infection"))
    grades = _values(data.rows, "total_grade")
    if grades:
        counts = [sum(1 for g in grades if round(g) == k) for k in range(9)]
        out.append(bar_chart("Images per severity grade", [str(k) for k in range(9)], counts,
                             "grade 0-8 (right + left, 0-4 each)"))
    for name, title in (("infection_probability", "P(COVID-19)"),):
        probs = _values(data.rows, name)
        if not probs:
            continue
        counts = _histogram(probs, 0, 1, 20)
        labels = [f"{i / 20:.2f}" for i in range(20)]
        t = _image_threshold(data) if name == "infection_probability" else None
        marker = (t * 20, f"threshold {t:g}") if t is not None and 0 <= t <= 1 else None
        note = "the image-level threshold: below it a film's infection is vetoed" if marker else ""
        out.append(bar_chart(f"Distribution of {title}", labels, counts, f"{title} (bins of 0.05)", note, marker))
    scores = _values(data.rows, "severity_score")
    if scores:
        counts = _histogram(scores, 0, 8, 16)
        out.append(bar_chart("Severity score", [f"{i / 2:g}" for i in range(16)], counts, "score 0-8 (bins of 0.5)"))
    return out


# -- the page ------------------------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return (resources.files("cxrseg.report") / "static" / name).read_text(encoding="utf-8")


def _script() -> str:
    js = _asset("report.js")
    if "</" in js:  # it would end the inline <script> element early
        raise RuntimeError("report.js must not contain '</'")
    return js


def _json_for_script(obj) -> str:
    """JSON that is safe inside a <script> element (no '</script>', no '<!--')."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def table_data(data: FolderData, page_size: int = PAGE_SIZE) -> dict:
    """The JSON the page's script renders: columns and one array per row (values, then links)."""
    # A column no row has a value in (uncertainty without --tta) is left out rather than shown as dashes.
    cols = [c for c in data.columns
            if c.kind in SORTABLE_KINDS and (c.name == "file" or any(r.get(c.name) is not None for r in data.rows))]
    rows = []
    for r in data.rows:
        values = []
        for c in cols:
            v = r.get(c.name)
            if isinstance(v, float):
                v = round(v, 4)
            values.append(v)
        rows.append([*values, r.get("_size"), r.get("_overlay"), r.get("_thumb"), r.get("_lung"), r.get("_infection")])
    return {
        "columns": [{"key": c.name, "label": c.label, "kind": c.kind, "title": c.title} for c in cols],
        "extra": ["size", "overlay", "thumb", "lung", "infection"],
        "rows": rows,
        "pageSize": page_size,
    }


def render(data: FolderData, page_size: int = PAGE_SIZE) -> str:
    esc = html.escape
    source, blocks = model_blocks(data)
    summary = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in summary_items(data))
    model_html = f'<p class="muted">Model cards: {esc(source)}.</p><div class="cards">'
    for b in blocks:
        digest = f", sha256 {esc(str(b['sha256']))}" if b.get("sha256") else ""
        model_html += (
            f'<section class="card"><h3>{esc(b["stage"])} model</h3>'
            f'<p class="muted">{esc(str(b.get("weights") or "?"))}{digest}</p>'
            f'<pre>{esc(chr(10).join(b["lines"]))}</pre></section>'
        )
    model_html += "</div>"
    run = data.run or {}
    run_bits = []
    if run.get("backend"):
        run_bits.append(f"backend {run['backend']}")
    if "tta" in run:
        run_bits.append("test-time augmentation " + ("on" if run["tta"] else "off"))
    if run.get("started"):
        run_bits.append(f"started {run['started']}")
    if run.get("command"):
        run_bits.append(f"command: {run['command']}")
    if run_bits:
        model_html = f'<p class="muted">Run: {esc("; ".join(run_bits))}.</p>' + model_html
    if data.failed:
        failed_rows = "".join(f"<tr><td>{esc(f)}</td><td>{esc(why)}</td></tr>" for f, why in data.failed)
        failed_html = (f'<table id="failed"><thead><tr><th>file</th><th>reason</th></tr></thead>'
                       f"<tbody>{failed_rows}</tbody></table>")
    else:
        failed_html = '<p id="failed-none">None: every file was read.</p>'
    csvs = ", ".join(p.name for p in data.csv_files)
    ignored = (f" Columns not shown: {', '.join(data.unknown_columns)}." if data.unknown_columns else "")
    mapping = {
        "title": esc(f"cxrseg report: {data.folder.resolve().name}"),
        "folder": esc(str(data.folder.resolve())),
        "generated": esc(_dt.datetime.now().astimezone().isoformat(timespec="seconds")),
        "version": esc(_version()),
        "css": _asset("report.css"),
        "js": _script(),
        "summary": summary,
        "models": model_html,
        "plots": "".join(plots(data)) or '<p class="muted">No figures to plot.</p>',
        "data": _json_for_script(table_data(data, page_size)),
        "failed": failed_html,
        "failed_count": f"{len(data.failed):,}",
        "sources": esc(f"Read from {csvs}.{ignored}"),
    }
    return Template(_asset("report.html")).substitute(mapping)


def _version() -> str:
    from cxrseg import __version__

    return __version__


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
