"""The folder report's builder: what the page holds, read from a predict output folder and nothing else."""

from __future__ import annotations

import csv
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from report_data import fake_rows, write_csv
from PIL import Image

from cxrseg.errors import CxrsegError
from cxrseg.report import RUN_JSON, THUMBS, build_report, read_folder
from cxrseg.report.build import KNOWN_COLUMNS


class _Page(HTMLParser):
    """Every src/href in the page and the text of the JSON data blob."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.data: str | None = None
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href", "action", "poster") and v]
        self._in_data = tag == "script" and a.get("id") == "report-data"

    def handle_data(self, data):
        if self._in_data:
            self.data = (self.data or "") + data

    def handle_endtag(self, tag):
        self._in_data = False


def parse(path: Path) -> tuple[_Page, dict]:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page, json.loads(page.data)


def rows_as_dicts(data: dict) -> list[dict]:
    keys = [c["key"] for c in data["columns"]] + data["extra"]
    return [dict(zip(keys, r)) for r in data["rows"]]


def assert_offline(html_text: str) -> None:
    """No address outside the folder: no scheme://, no protocol-relative //, no @import, no url(http...)."""
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//)""", html_text, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:|//)", html_text, re.I)
    assert "@import" not in html_text
    assert "default-src 'none'" in html_text  # the page's CSP refuses anything not inline or local


# -- a real predict folder ----------------------------------------------------------------------------


def test_report_of_a_real_predict_folder(predicted):
    result = build_report(predicted)
    assert result.path == predicted / "report.html"
    assert (result.images, result.failed, result.thumbnails) == (9, 1, 9)
    text = result.path.read_text(encoding="utf-8")
    page, data = parse(result.path)
    assert_offline(text)

    with open(predicted / "results.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    rows = rows_as_dicts(data)
    assert [r["file"] for r in rows] == [r["file"] for r in csv_rows]
    for r, c in zip(rows, csv_rows):
        assert r["infected_pct"] == pytest.approx(float(c["infected_pct"]))
        assert r["total_grade"] == int(c["total_grade"])
        assert r["infection_probability"] == pytest.approx(float(c["infection_probability"]))
        stem = Path(c["file"]).stem
        assert (r["overlay"], r["lung"], r["infection"]) == (f"{stem}_overlay.png", f"{stem}_lung.png",
                                                               f"{stem}_infection.png")
        assert r["thumb"] == f"{THUMBS}/{stem}.jpg"
        with Image.open(predicted / r["thumb"]) as thumb, Image.open(predicted / r["overlay"]) as full:
            assert max(thumb.size) <= 160 and thumb.size[0] / thumb.size[1] == pytest.approx(
                full.size[0] / full.size[1], rel=0.05)
    assert data["pageSize"] == 100
    assert "uncertainty" not in [c["key"] for c in data["columns"]]  # empty without --tta: not shown
    for url in page.urls:  # every link is a file in the folder
        assert (predicted / unquote(url)).is_file(), url

    # summary, models (from run.json: the tiny models), plots, failures
    assert "images segmented" in text and ">9<" in text
    doubtful = sum("low confidence" in c["note"] for c in csv_rows)
    assert re.search(rf"doubtful lungs \(low lung confidence; see the note\)</dt>\s*<dd>{doubtful}<", text)
    assert "recorded by the predict run (run.json)" in text
    assert "image-level head" in text  # the infection card's summary
    # infected %, grades, P(COVID-19), and the continuous severity score where results.csv has it
    assert text.count('<svg class="chart"') == 3 + ("severity_score" in csv_rows[0])
    assert "broken.png" in text and 'id="failed"' in text
    assert "Files that failed (1)" in text


def test_thumbnails_are_reused_and_no_thumbnails_links_the_overlays(predicted):
    build_report(predicted)
    thumbs = sorted((predicted / THUMBS).iterdir())
    stamps = [t.stat().st_mtime_ns for t in thumbs]
    build_report(predicted)
    assert [t.stat().st_mtime_ns for t in thumbs] == stamps  # newer than their overlays: kept

    result = build_report(predicted, thumbnails=False)
    rows = rows_as_dicts(parse(result.path)[1])
    assert result.thumbnails == 0 and all(r["thumb"] is None and r["overlay"] for r in rows)


def test_without_run_json_the_shipped_cards_are_shown_and_said_so(predicted, tmp_path):
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(predicted, folder)
    (folder / RUN_JSON).unlink()
    text = build_report(folder, thumbnails=False).path.read_text(encoding="utf-8")
    assert "not recorded by this run" in text
    assert "lung.safetensors" in text and "infection.safetensors" in text  # the shipped models
    assert "classifier.safetensors" in text  # and the whole-film classifier shipped beside stage 2's head


def test_a_recorded_classifier_gets_its_model_block(predicted):
    """A run that used a whole-film classifier (run.json's models.classifier) shows its card beside the stages'."""
    from cxrseg.report.cards import model_blocks
    from cxrseg.report.folder import read_folder

    data = read_folder(predicted)
    card = {"stage": "classifier", "task": "P(COVID-19) for the whole film", "architecture": {"arch": "densenet-small"}}
    data.run["models"]["classifier"] = {"weights": "w/classifier.safetensors", "sha256": "abc", "card": card}
    source, blocks = model_blocks(data)
    assert [b["stage"] for b in blocks] == ["lung", "infection", "classifier"]
    assert any("densenet-small" in line for line in blocks[-1]["lines"])


# -- columns read by name ---------------------------------------------------------------------------------


def test_new_and_missing_columns(fake_folder):
    folder = fake_folder(12, overlays=2)
    rows = fake_rows(12)
    for i, r in enumerate(rows):
        r.update(covid_probability=0.1 * (i % 10), severity_score=round(0.5 * (i % 17), 1),
                 covid_status="positive" if i % 2 else "unknown", right_opacity_pct=3.5 * i,
                 lesion_count_grade=i % 3, mystery_blob="{'x': 1}", free_text="hello")
        del r["total_grade"], r["uncertainty"]
    fields = ["mystery_blob", *rows[0].keys()]  # an unknown column first, known ones after
    write_csv(folder / "results.csv", rows, list(dict.fromkeys(fields)))

    result = build_report(folder)
    text = result.path.read_text(encoding="utf-8")
    data = parse(result.path)[1]
    keys = [c["key"] for c in data["columns"]]
    assert {"covid_probability", "severity_score", "covid_status", "right_opacity_pct"} <= set(keys)
    assert "lesion_count_grade" in keys  # unknown, but named like a grade: shown as one
    assert "total_grade" not in keys and "uncertainty" not in keys
    assert "mystery_blob" not in keys and "free_text" not in keys
    assert "Columns not shown: mystery_blob, free_text" in text
    known_order = [n for n, *_ in KNOWN_COLUMNS]
    shown_known = [k for k in keys if k in known_order]
    assert shown_known == sorted(shown_known, key=known_order.index)
    first = rows_as_dicts(data)[1]
    assert first["covid_status"] == "positive" and first["severity_score"] == 0.5
    assert "Distribution of P(COVID-19)" in text and "Severity score" in text
    assert "Images per severity grade" not in text  # no total_grade column: no grade plot


def test_an_old_minimal_csv_and_bad_values(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "results.csv").write_text(
        "file,infected_pct,total_grade\n"
        "a.png,12.5,2\n"
        "b.png,,\n"  # empty figures
        "c.png,nan,x\n"  # unreadable figures
        "d.png,3.0,1\n"
        "e.png,99.0", encoding="utf-8")  # a torn last line (a run killed mid-write) is left out
    data = read_folder(folder)
    assert [r["file"] for r in data.rows] == ["a.png", "b.png", "c.png", "d.png"]
    assert [r["infected_pct"] for r in data.rows] == [12.5, None, None, 3.0]
    result = build_report(folder)
    assert result.images == 4 and result.failed == 0 and result.thumbnails == 0
    text = result.path.read_text(encoding="utf-8")
    assert "None: every file was read." in text
    assert [r["overlay"] for r in rows_as_dicts(parse(result.path)[1])] == [None] * 4


def test_shards_are_merged_and_stems_follow_predicts_naming(tmp_path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    rows = fake_rows(4)
    rows[0]["file"], rows[1]["file"] = "/scans/a/x.png", "/scans/b/x.png"  # same stem: predict prefixes folders
    write_csv(folder / "results.shard0of2.csv", rows[::2])
    write_csv(folder / "results.shard1of2.csv", rows[1::2])
    write_csv(folder / "failed.shard1of2.csv", [{"file": "/scans/bad.dcm", "problem": "DICOM without pixels"}])
    for stem in ("a_x", "b_x"):
        Image.new("RGB", (40, 30), (200, 0, 0)).save(folder / f"{stem}_overlay.png")
    result = build_report(folder)
    assert (result.images, result.failed, result.thumbnails) == (4, 1, 2)
    by_file = {r["file"]: r for r in rows_as_dicts(parse(result.path)[1])}
    assert by_file["/scans/a/x.png"]["overlay"] == "a_x_overlay.png"
    assert by_file["/scans/b/x.png"]["overlay"] == "b_x_overlay.png"
    text = result.path.read_text(encoding="utf-8")
    assert "DICOM without pixels" in text and "results.shard0of2.csv, results.shard1of2.csv" in text


def test_names_are_escaped_and_links_quoted(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    rows = fake_rows(2)
    rows[0]["file"] = "/scans/</script><b>x.png"
    rows[1]["file"] = "/scans/<b>y #2?.png"
    write_csv(folder / "results.csv", rows)
    Image.new("RGB", (20, 20)).save(folder / "<b>y #2?_overlay.png")
    write_csv(folder / "failed.csv", [{"file": "/scans/<img src=x>.png", "problem": "<b>bad</b>"}])
    result = build_report(folder, thumbnails=False)
    text = result.path.read_text(encoding="utf-8")
    assert text.count("</script>") == 2  # the page's own two script elements only
    assert "<b>" not in text and "<img src=x>" not in text and "&lt;b&gt;bad&lt;/b&gt;" in text
    parsed = rows_as_dicts(parse(result.path)[1])
    assert [r["file"] for r in parsed] == [rows[0]["file"], rows[1]["file"]]
    assert parsed[1]["overlay"] == "%3Cb%3Ey%20%232%3F_overlay.png"
    assert (folder / unquote(parsed[1]["overlay"])).is_file()


def test_not_a_predict_folder(tmp_path):
    with pytest.raises(CxrsegError, match="no such folder"):
        build_report(tmp_path / "missing")
    with pytest.raises(CxrsegError, match="no results.csv or failed.csv"):
        build_report(tmp_path)
    with pytest.raises(CxrsegError, match="page size"):
        build_report(tmp_path, page_size=0)


# -- 10,000 images ------------------------------------------------------------------------------------------


def test_ten_thousand_rows_build_quickly_into_one_paged_page(fake_folder):
    folder = fake_folder(10_000, overlays=20)
    started = time.perf_counter()
    result = build_report(folder)
    seconds = time.perf_counter() - started
    assert result.images == 10_000 and result.thumbnails == 20
    assert seconds < 30, f"{seconds:.1f} s"  # measured about 1 s alone on 2 shared CPU cores
    size = result.path.stat().st_size
    assert size < 4_000_000, size  # the rows are one compact JSON blob
    text = result.path.read_text(encoding="utf-8")
    page, data = parse(result.path)
    assert len(data["rows"]) == 10_000 and data["pageSize"] == 100
    assert "<tr><td>" not in text.split('id="failures"')[0]  # no table rows in the HTML: the script renders a page
    assert text.count("<img") == 0  # nor images: only the current page's, made by the script
    assert ">10,000<" in text
