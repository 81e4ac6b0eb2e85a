"""The references' convention (per-image mean over all images, empty rule) on a hand-made set, and its labels."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cxrseg.evaluation.evaluate import summarize_run
from cxrseg.evaluation.metrics import Counts, pooled_dice, pooled_iou
from cxrseg.evaluation.references import CONVENTION_LABEL, REFERENCES, STUDENT_REPORT, TAHIR_2021
from cxrseg.evaluation.report import comparison_rows, markdown


def _hand_made():
    """Four images: two COVID-19 (Dice 0.5 and 1), a silent Normal (1 by the rule), a flagged Non-COVID (0)."""
    labels = ["COVID-19", "COVID-19", "Normal", "Non-COVID"]
    infection = Counts(tp=np.array([10, 30, 0, 0]), fp=np.array([10, 0, 0, 5]), fn=np.array([10, 0, 0, 0]))
    lung = Counts(tp=np.array([90, 80, 100, 60]), fp=np.array([10, 0, 0, 20]), fn=np.array([0, 20, 0, 20]))
    samples = [SimpleNamespace(label=lbl) for lbl in labels]
    return summarize_run(samples, lung, infection)


def test_all_images_mean_counts_every_image_under_the_empty_rule():
    m = _hand_made()
    conv = m["reference_convention"]
    # infection Dice per image: 20/40, 60/60, empty/empty -> 1, false alarm on empty -> 0
    assert conv["infection"]["dice"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    # IoU: 10/30, 1, 1, 0
    assert conv["infection"]["iou"] == pytest.approx((1 / 3 + 1 + 1 + 0) / 4)
    assert conv["infection"]["n_images"] == 4
    # it is the 'all' subset's per-image mean, named, not a second computation
    assert conv["infection"]["dice"] == m["infection"]["all"]["dice_mean"]
    assert conv["lung"]["dice"] == m["lung"]["all"]["dice_mean"]
    assert conv["lung"]["dice"] == pytest.approx((180 / 190 + 160 / 180 + 1 + 120 / 160) / 4)
    # the stricter COVID-19-only figure, and the pooled one, differ from it
    assert m["infection"]["COVID-19"]["dice_mean"] == pytest.approx(0.75)
    assert m["infection"]["all"]["dice_pooled"] == pytest.approx(2 * 40 / (2 * 40 + 15 + 10))
    assert conv["label"] == CONVENTION_LABEL == "per-image mean over all images (convention of Tahir et al. 2021)"
    assert [r["name"] for r in conv["references"]] == [r.name for r in REFERENCES]


def test_pooled_iou_is_fixed_by_pooled_dice_which_rules_out_pooling_for_the_references():
    rng = np.random.default_rng(0)
    c = Counts(*(rng.integers(0, 50, 20) for _ in range(3)))
    d = pooled_dice(c)
    assert pooled_iou(c) == pytest.approx(d / (2 - d))
    # the references' IoU/Dice ratios (0.94) are well above what pooling allows at their Dice
    for r in (TAHIR_2021, STUDENT_REPORT):
        assert r.infection_iou / r.infection_dice > 0.93
        assert r.infection_iou > r.infection_dice / (2 - r.infection_dice) + 0.03


def test_markdown_has_the_labelled_rows_and_the_comparison():
    m = _hand_made()
    m["split"] = "Val"
    md = markdown(m)
    assert f"| Dice, {CONVENTION_LABEL} | " in md and f"| IoU, {CONVENTION_LABEL} | " in md
    assert "| Dice, per-image mean, COVID-19 images only |" in md
    assert "| Non-COVID + Normal images given any infection |  | 50.0% |" in md
    assert f"### Comparison with published results: {CONVENTION_LABEL}" in md
    assert "| ours (Val) | Val (4 images) |" in md
    assert "| Tahir et al. 2021 (Test) | Test | 0.9799 | 0.9611 | 0.8821 | 0.8305 |" in md
    assert "| best student report (Test) | Test | - | - | 0.7957 | 0.7449 |" in md
    assert "| ours (Val), COVID-19 images only (stricter) | Val (2 COVID-19 images) |" in md
    assert "D/(2-D)" in md  # the reasoning sentence
    rows = comparison_rows(m)
    assert [r[0] for r in rows] == ["ours (Val)", "Tahir et al. 2021 (Test)", "best student report (Test)",
                                    "ours (Val), COVID-19 images only (stricter)"]
    assert rows[0][4] == f"{0.625:.4f}" and rows[-1][4] == f"{0.75:.4f}"


def test_markdown_without_infection_masks():
    samples = [SimpleNamespace(label="Normal")]
    m = summarize_run(samples, Counts(np.array([5]), np.array([0]), np.array([0])), None)
    md = markdown(m)
    assert "infection" not in m["reference_convention"]
    assert f"| Dice, {CONVENTION_LABEL} | 1.0000 | - |" in md
    assert "COVID-19 images only (stricter)" not in md  # no COVID-19 image in the set
