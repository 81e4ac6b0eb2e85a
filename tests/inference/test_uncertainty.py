"""Flip TTA: an uncertainty map (STEM_uncertainty.png) and a per-image score in results.csv; none without TTA."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrseg.data.synthetic import phantom
from cxrseg.inference.batch import predict_files
from cxrseg.inference.pipeline import TwoStagePipeline


@pytest.fixture(scope="module")
def xrays(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("xrays")
    rng = np.random.default_rng(11)
    for i, label in enumerate(["COVID-19", "Non-COVID", "Normal"]):
        img, _, _ = phantom(label, 128, rng)
        Image.fromarray(img).resize((160, 144)).save(root / f"x{i}.png")
    return root


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_tta_writes_uncertainty_map_and_score(tiny_models, xrays, tmp_path) -> None:
    pipe = TwoStagePipeline.from_pretrained(*tiny_models, backend="torch", tta=True)
    predict_files(pipe, [xrays], tmp_path, workers=0)
    rows = _rows(tmp_path)
    assert len(rows) == 3
    for row in rows:
        stem = Path(row["file"]).stem
        score = float(row["uncertainty"])  # filled: a number
        assert 0.0 <= score <= 0.5  # a std of probabilities
        with Image.open(tmp_path / f"{stem}_uncertainty.png") as im:
            assert im.mode == "L" and im.size == (160, 144)  # at the input's size
            unc = np.asarray(im, np.float32) / 255 * 0.5  # the PNG stores std / 0.5 as 0..255
        lung = np.asarray(Image.open(tmp_path / f"{stem}_lung.png")) > 0
        if lung.any():  # the score is the map's mean inside the lung (up to 8-bit rounding)
            assert unc[lung].mean() == pytest.approx(score, abs=2 / 255)

    seg = pipe.predict_one(xrays / "x0.png")
    assert seg.uncertainty is not None and seg.uncertainty.shape == (144, 160)
    assert seg.uncertainty.min() >= 0 and seg.uncertainty_score == pytest.approx(
        float(seg.uncertainty[seg.lung].mean()) if seg.lung.any() else 0.0
    )


def test_without_tta_no_uncertainty(pipeline, xrays, tmp_path) -> None:
    assert not pipeline.tta
    predict_files(pipeline, [xrays], tmp_path, workers=0)
    rows = _rows(tmp_path)
    assert len(rows) == 3 and all(row["uncertainty"] == "" for row in rows)
    assert list(tmp_path.glob("*_uncertainty.png")) == []
    assert pipeline.predict_one(xrays / "x0.png").uncertainty_score is None
