"""lung_confidence: stage 1's mean probability inside its mask, the warning below the mode's threshold, and that
the shipped models do warn on inputs that are not upright frontal chest X-rays (and not on the shipped films)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrseg.data.io import XRay, read_xray
from cxrseg.inference.lung_check import (
    LOW_LUNG_CONFIDENCE,
    confidence_threshold,
    doubtful,
    lung_confidence,
    lung_warning,
)
from cxrseg.inference.result import Segmentation
from cxrseg.inference.severity import severity


def test_confidence_is_the_mean_probability_inside_the_mask():
    prob = np.zeros((3, 4, 4), np.float32)
    lung = np.zeros((3, 4, 4), bool)
    prob[0, :2] = 0.9
    prob[0, 2:] = 0.7
    lung[0] = True  # half at 0.9, half at 0.7
    prob[1] = 0.99
    lung[1, 1:3, 1:3] = True
    prob[1, 1, 1] = 0.51  # one doubtful pixel of four
    prob[2] = 0.8  # no lung found: 0, whatever the probabilities outside
    np.testing.assert_allclose(lung_confidence(prob, lung), [0.8, (3 * 0.99 + 0.51) / 4, 0.0], rtol=1e-6)


def test_thresholds_by_mode_and_the_warning():
    assert confidence_threshold() == LOW_LUNG_CONFIDENCE["plain"]
    assert confidence_threshold(tta=True) == LOW_LUNG_CONFIDENCE["tta"]
    assert confidence_threshold(models=2, tta=True) == LOW_LUNG_CONFIDENCE["accurate"]
    assert not doubtful(None) and lung_warning(None) == ""
    assert not doubtful(0.97, 0.96) and lung_warning(0.97, 0.96) == ""
    assert doubtful(0.95, 0.96)
    text = lung_warning(0.9512, 0.96)
    assert "0.951 < 0.96" in text and "frontal chest X-ray" in text


def _segmentation(confidence: float | None, vetoed: bool) -> Segmentation:
    lung = np.zeros((20, 20), bool)
    lung[2:18, 2:9] = lung[2:18, 11:18] = True
    opacity = lung & (np.arange(20)[:, None] > 12)
    infection = np.zeros_like(opacity) if vetoed else opacity
    return Segmentation("f.png", lung, infection, severity(lung, infection, (0.5, 0.5)), infection_probability=0.2,
                        opacity=opacity, opacity_figures=severity(lung, opacity, (0.5, 0.5)), image_threshold=0.45,
                        lung_confidence=confidence, lung_confidence_threshold=0.96)


@pytest.mark.parametrize("confidence, vetoed, parts", [
    (0.99, False, []),
    (None, False, []),
    (0.93, False, ["low confidence"]),
    (0.99, True, ["judged not COVID-19-like"]),
    (0.93, True, ["low confidence", "judged not COVID-19-like"]),
])
def test_note_and_row(confidence, vetoed, parts):
    seg = _segmentation(confidence, vetoed)
    assert seg.lungs_doubtful == (confidence is not None and confidence < 0.96)
    row = seg.row()
    assert row["lung_confidence"] == (None if confidence is None else round(confidence, 4))
    assert row["note"] == seg.note
    assert [p for p in ("low confidence", "judged not COVID-19-like") if p in seg.note] == parts
    if len(parts) == 2:
        assert seg.note.index("low confidence") < seg.note.index("judged not")  # the lungs first: they bound the rest


def test_pipeline_passes_its_confidence_and_threshold(pipeline, synthetic_root):
    from cxrseg.data.covidqu import find_dataset

    x = read_xray(find_dataset(synthetic_root).select(("Val",))[0].image)
    seg = pipeline.predict([x])[0]
    assert 0.0 <= seg.lung_confidence <= 1.0
    assert seg.lung_confidence_threshold == pipeline.lung_confidence_threshold == LOW_LUNG_CONFIDENCE["plain"]
    assert seg.row()["lung_confidence"] == round(seg.lung_confidence, 4)


@pytest.fixture(scope="module")
def shipped():
    try:
        from cxrseg.inference.pipeline import TwoStagePipeline

        return TwoStagePipeline.from_pretrained()
    except Exception:  # the repository before the first trained models landed
        pytest.skip("no shipped models in this checkout")


def test_shipped_models_warn_on_wrong_inputs_only(shipped):
    """Measured margins (benchmarks/input_check.py): the shipped films score about 0.985, inverted films and noise
    about 0.90, against the threshold 0.96."""
    from cxrseg.examples import films

    real = [read_xray(f.path) for f in films()]
    wrong = [XRay(1 - x.pixels, f"{x.source} inverted") for x in real]
    wrong.append(XRay(np.random.default_rng(0).random((300, 300), dtype=np.float32), "noise"))
    segs = shipped.predict(real + wrong)
    assert [s.lungs_doubtful for s in segs] == [False] * len(real) + [True] * len(wrong)
    assert all(s.note == "" or "low confidence" not in s.note for s in segs[: len(real)])
    assert all("low confidence" in s.note for s in segs[len(real):])


def test_cli_names_the_doubtful_films(shipped, tmp_path, monkeypatch, capsys):
    """`cxrseg predict` with the shipped models: the inverted film is counted at the end and noted in its row."""
    import csv
    import sys

    from PIL import Image

    from cxrseg.cli import main
    from cxrseg.examples import films

    film = read_xray(films()[1].path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, pixels in (("upright.png", film.pixels), ("inverted.png", 1 - film.pixels)):
        Image.fromarray((pixels * 255).round().astype(np.uint8)).save(inputs / name)
    monkeypatch.setattr(sys, "argv", ["cxrseg", "predict", str(inputs), "--out", str(tmp_path / "out"), "--quiet"])
    with pytest.raises(SystemExit) as done:
        main()
    assert not done.value.code
    err = capsys.readouterr().err
    assert "1 film(s) with doubtful lungs" in err
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader(f)}
    assert float(rows["upright.png"]["lung_confidence"]) >= 0.96 and "low confidence" not in rows["upright.png"]["note"]
    assert float(rows["inverted.png"]["lung_confidence"]) < 0.96 and "low confidence" in rows["inverted.png"]["note"]
