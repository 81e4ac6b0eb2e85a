"""`cxrseg demo` on the two real films shipped with the package: a smoke test with the shipped models.

The films are examples, not evaluation data: the test asks only that lungs are found at a plausible size, never
for a particular infection figure.
"""

from __future__ import annotations

import csv
import hashlib
import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrseg.examples import ATTRIBUTION, films

try:
    from cxrseg.models.store import shipped_weights

    shipped_weights("lung"), shipped_weights("infection")
except Exception:  # the repository before the first trained models landed
    pytest.skip("no shipped models in this checkout", allow_module_level=True)


def test_films_ship_with_their_attribution():
    text = ATTRIBUTION.read_text(encoding="utf-8")
    assert "CC BY 3.0" in text and "creativecommons.org/licenses/by/3.0" in text
    assert "Cohen" in text and "10.6084/m9.figshare.12275009" in text
    assert [f.finding for f in films()] == ["COVID-19", "No Finding"]
    for film in films():
        assert film.path.is_file() and film.name in text
        assert hashlib.sha256(film.path.read_bytes()).hexdigest() in text  # the table names the exact bytes


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`cxrseg demo` run once for the module: (its output folder, the CLI result)."""
    from cxrseg.cli import app

    out = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result


def test_demo_segments_both_real_films(demo):
    out, result = demo
    lines = result.stdout.strip().splitlines()
    # two lines per film (a third, "note: ...", when opacity was judged not COVID-19-like) and one about the outputs
    heads = [i for i, line in enumerate(lines) if not line.startswith(" ")]
    assert len(heads) == len(films()) + 1
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader(fh)}
    assert sorted(rows) == sorted(f.name for f in films())
    for i, film in enumerate(films()):
        stem = film.path.stem
        w, h = Image.open(film.path).size
        lung = np.asarray(Image.open(out / f"{stem}_lung.png")) > 0
        infection = np.asarray(Image.open(out / f"{stem}_infection.png")) > 0
        assert lung.shape == infection.shape == (h, w)  # the input's own size
        assert Image.open(out / f"{stem}_overlay.png").size == (w, h)
        assert 0.15 <= lung.mean() <= 0.60, f"{film.name}: lung area {lung.mean():.1%} of the image"
        half = w // 2  # the patient's right lung is on the image's left
        assert lung[:, :half].mean() > 0.05 and lung[:, half:].mean() > 0.05, f"{film.name}: a lung is missing"
        assert not (infection & ~lung).any()
        row = rows[film.name]
        assert int(row["lung_area_px"]) == int(lung.sum())
        assert int(row["right_lung_area_px"]) > 0 and int(row["left_lung_area_px"]) > 0
        first, second = lines[heads[i]], lines[heads[i] + 1]
        assert first.startswith(film.name) and "both lungs found" in first and f"{int(lung.sum()):,} px" in first
        assert re.search(r"P\(COVID-19\) \d\.\d\d", first)
        assert re.search(r"opacity \d+\.\d% of the lungs", second)
        if row["note"]:
            assert lines[heads[i] + 2].startswith("    note: ") and "not validated outside" in lines[heads[i] + 2]
        assert re.search(r"right lung \d+\.\d% \(grade \d\), left lung \d+\.\d% \(grade \d\)", second)
        assert f"total grade {row['total_grade']} of 8" in second


def test_demo_records_its_models_and_the_report_names_them(demo):
    """run.json as `cxrseg predict` writes it, so `cxrseg report` on the demo folder shows the models used."""
    from cxrseg.models.store import weights_digest
    from cxrseg.report import build_report, read_run_info

    out, _ = demo
    info = read_run_info(out)
    assert info is not None, "the demo wrote no run.json"
    models = info["models"]
    for stage in ("lung", "infection"):
        weights = shipped_weights(stage)
        assert models[stage]["weights"] == str(weights) and models[stage]["sha256"] == weights_digest(weights)
        assert models[stage]["card"], f"{stage}: no card recorded"
    text = build_report(out).path.read_text(encoding="utf-8")
    assert "recorded by the predict run (run.json)" in text and "not recorded" not in text
    for stage in models:
        assert models[stage]["weights"] in text and models[stage]["sha256"][:12] in text
