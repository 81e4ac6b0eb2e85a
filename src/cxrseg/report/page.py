"""Render the report page: fill ``static/report.html`` with the summary, models, plots, table data and failures.

The CSS and script are inlined from ``static/`` and every text is escaped, so the page is one safe, offline file.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from importlib import resources
from string import Template

from cxrseg.report.cards import model_blocks
from cxrseg.report.folder import FolderData
from cxrseg.report.plots import plots
from cxrseg.report.summary import summary_items
from cxrseg.report.table import PAGE_SIZE, table_data


def _asset(name: str) -> str:
    return (resources.files("cxrseg.report") / "static" / name).read_text(encoding="utf-8")


def _script() -> str:
    js = _asset("report.js")
    if "</" in js:  # it would end the inline <script> element early
        raise RuntimeError("report.js must not contain '</'")
    return js


def _json_for_script(obj: object) -> str:
    """JSON that is safe inside a <script> element (no '</script>', no '<!--')."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _version() -> str:
    from cxrseg import __version__

    return __version__


def render(data: FolderData, page_size: int = PAGE_SIZE) -> str:
    """The whole page as HTML text, for a folder whose rows already have their file links."""
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
