"""``cxrseg report FOLDER`` and ``cxrseg predict --report``: the page, run.json, and one-line errors."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from typer.testing import CliRunner

from cxrseg.cli import app, main
from cxrseg.data.covidqu import find_dataset
from cxrseg.report import RUN_JSON

runner = CliRunner()


def test_report_command(fake_folder):
    folder = fake_folder(40, overlays=5)
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"report: {folder / 'report.html'} (40 images, 1 failed, 5 thumbnails)" in result.output
    assert (folder / "report.html").is_file() and len(list((folder / "report_thumbs").iterdir())) == 5

    result = runner.invoke(app, ["report", str(folder), "--no-thumbnails", "--page-size", "25"])
    assert result.exit_code == 0, result.output
    assert '"pageSize":25' in (folder / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("where, message", [("missing", "no such folder"), ("empty", "no results.csv or failed.csv")])
def test_report_errors_are_one_line(tmp_path, monkeypatch, capsys, where, message):
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(sys, "argv", ["cxrseg", "report", str(tmp_path / where)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_predict_report_writes_run_json_and_the_page_even_with_a_failure(synthetic_root, tiny_models, tmp_path):
    images = tmp_path / "xrays"
    images.mkdir()
    for s in find_dataset(synthetic_root).select(("Val",))[::4]:  # 3 images
        shutil.copy(s.image, images / s.image.name)
    (images / "notes.png").write_text("not an X-ray\n")
    out = tmp_path / "out"
    lung, infection = tiny_models
    result = runner.invoke(app, ["predict", str(images), "--out", str(out), "--lung-model", str(lung),
                                 "--infection-model", str(infection), "--backend", "torch", "--workers", "0",
                                 "--report"])
    assert result.exit_code == 1, result.output  # one file failed: the usual exit code, report written anyway
    assert f"report: {out / 'report.html'} (3 images, 1 failed, 3 thumbnails)" in result.output
    run = json.loads((out / RUN_JSON).read_text(encoding="utf-8"))
    assert run["models"]["lung"]["weights"] == str(lung)
    assert run["models"]["infection"]["card"]["stage"] == "infection"
    assert len(run["models"]["lung"]["sha256"]) == 12 and run["backend"] == "torch" and run["tta"] is False
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "recorded by the predict run (run.json)" in text and str(lung) in text and "notes.png" in text
