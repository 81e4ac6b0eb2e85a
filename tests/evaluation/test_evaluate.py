"""evaluate() on the synthetic Val split with the tiny models, and the report files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cxrseg.data.covidqu import CLASSES
from cxrseg.errors import CxrsegError, InputFileError
from cxrseg.evaluation.evaluate import evaluate
from cxrseg.evaluation.report import write_report


@pytest.fixture(scope="module")
def run(pipeline, synthetic_root):
    return evaluate(pipeline, synthetic_root, split="Val")


def test_metrics_per_class(run):
    m = run.metrics
    assert m["n_images"] == 9 and m["split"] == "Val" and m["backend"] == "torch" and m["tta"] is False
    for stage in ("lung", "infection"):
        assert set(m[stage]) == {"all", *CLASSES}
        assert m[stage]["all"]["n_images"] == 9
        for c in CLASSES:
            assert m[stage][c]["n_images"] == 3
    assert m["lung"]["all"]["dice_mean"] > 0.8  # the tiny lung model works
    # only the COVID-19 phantoms have infection in their ground truth
    assert m["infection"]["COVID-19"]["n_nonempty_gt"] == 3
    assert m["infection"]["Normal"]["n_nonempty_gt"] == m["infection"]["Non-COVID"]["n_nonempty_gt"] == 0
    d = m["infection_detection"]
    assert d["tp"] + d["fn"] == 3 and d["tn"] + d["fp"] == 6
    assert "empty" in m["empty_mask_rule"]


def test_per_image_figures_agree_with_the_files(run, pipeline):
    rows = run.per_image_rows()
    assert len(rows) == 9
    mean = np.mean([r["lung_dice"] for r in rows])
    assert mean == pytest.approx(run.metrics["lung"]["all"]["dice_mean"], abs=1e-4)
    # recompute one image's lung Dice by hand
    s = run.samples[0]
    pred = pipeline.predict_one(s.image).lung
    gt = np.asarray(Image.open(s.lung)) > 0
    assert rows[0]["file"] == s.image.name
    assert rows[0]["lung_dice"] == pytest.approx(2 * (pred & gt).sum() / (pred.sum() + gt.sum()), abs=1e-4)
    for r, sample in zip(rows, run.samples):
        assert r["class"] == sample.label
        assert r["infection_gt_px"] == int((np.asarray(Image.open(sample.infection)) > 0).sum())


def test_write_report(run, tmp_path):
    paths = write_report(run, tmp_path / "report")
    assert {p.name for p in paths.values()} == {"metrics.json", "metrics.md", "per_image.csv"}
    metrics = json.loads(paths["json"].read_text())
    assert metrics["lung"]["all"]["dice_mean"] == pytest.approx(run.metrics["lung"]["all"]["dice_mean"])
    md = paths["markdown"].read_text()
    assert "### Lung" in md and "### Infection" in md and "| COVID-19 | 3 |" in md and "sensitivity" in md
    label = "per-image mean over all images (convention of Tahir et al. 2021)"
    assert f"| Dice, {label} |" in md and f"| IoU, {label} |" in md and "| Tahir et al. 2021 (Test) |" in md
    conv = metrics["reference_convention"]
    assert conv["label"] == label
    assert conv["infection"]["dice"] == pytest.approx(run.metrics["infection"]["all"]["dice_mean"])
    assert conv["infection"]["iou"] == pytest.approx(run.metrics["infection"]["all"]["iou_mean"])
    with open(paths["per_image"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    assert {"file", "class", "lung_dice", "lung_iou", "infection_dice", "infection_probability"} <= set(rows[0])


def test_max_images_takes_a_stratified_subset(pipeline, synthetic_root):
    small = evaluate(pipeline, synthetic_root, split="Val", max_images=3)
    assert small.metrics["n_images"] == 3
    assert sorted(s.label for s in small.samples) == sorted(CLASSES)


def test_missing_split_and_bad_mask(pipeline, synthetic_root, tmp_path):
    with pytest.raises(CxrsegError, match="Test"):
        evaluate(pipeline, synthetic_root, split="Test")
    from cxrseg.data.synthetic import make_synthetic_covidqu

    root = make_synthetic_covidqu(tmp_path / "c", {"Val": 1}, size=128, seed=2)
    bad = root / "Infection Segmentation Data" / "Val" / "Normal" / "lung masks" / "Normal_val_0.png"
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(bad)
    with pytest.raises(InputFileError, match="Normal_val_0.png"):
        evaluate(pipeline, root, split="Val")
