"""Predict output folders for the report tests: a real one (tiny models on phantoms) and fake ones (CSV + PNGs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from report_data import fake_rows, write_csv, write_pngs

from cxrseg.data.covidqu import find_dataset
from cxrseg.inference.result import CSV_FIELDS


@pytest.fixture
def fake_folder(tmp_path):
    """make(n, overlays=k): a predict-like folder with ``n`` CSV rows, PNGs for the first ``k``, one failure."""

    def make(n: int = 30, overlays: int = 30, failed: bool = True, name: str = "out") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        rows = fake_rows(n)
        write_csv(folder / "results.csv", rows, CSV_FIELDS)
        write_pngs(folder, rows[:overlays])
        if failed:
            write_csv(folder / "failed.csv", [{"file": "/scans/broken.png", "problem": "not an image (truncated)"}])
        return folder

    return make


@pytest.fixture(scope="session")
def predicted(pipeline, tiny_models, synthetic_root, tmp_path_factory) -> Path:
    """A real predict output folder: the tiny models on the 9 Val phantoms (3 classes) and one unreadable file."""
    from cxrseg.inference.batch import predict_files
    from cxrseg.report import write_run_info

    inputs = tmp_path_factory.mktemp("xrays")
    for s in find_dataset(synthetic_root).select(("Val",)):
        shutil.copy(s.image, inputs / f"{s.label}_{s.image.name}")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path_factory.mktemp("predicted")
    write_run_info(out, pipeline, {"lung": tiny_models[0], "infection": tiny_models[1]}, command="cxrseg predict test")
    report = predict_files(pipeline, [inputs], out, workers=0)
    assert report.done == 9 and len(report.failed) == 1
    return out
