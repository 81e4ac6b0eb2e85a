"""benchmarks/quality.py end to end on the synthetic Val split: tables printed, report written, cards updated."""

from __future__ import annotations

import json

from cxrseg.evaluation.references import CONVENTION_LABEL
from cxrseg.models.store import read_card


def test_quality_prints_the_comparison_and_updates_the_cards(benchmark_module, synthetic_root, own_models, tmp_path,
                                                            capsys):
    quality = benchmark_module("quality")
    lung, infection = own_models
    out = tmp_path / "eval"
    quality.main(["--data", str(synthetic_root), "--split", "Val", "--out", str(out), "--lung-model", str(lung),
                  "--infection-model", str(infection), "--backend", "torch", "--update-cards"])
    printed = capsys.readouterr().out
    assert f"### Comparison with published results: {CONVENTION_LABEL}" in printed
    for row in ("| ours (Val) |", "| Tahir et al. 2021 (Test) |", "| best student report (Test) |",
                "| ours (Val), COVID-19 images only (stricter) |"):
        assert row in printed
    # the README table: the labelled figure with its target and both references
    assert f"| infection Dice, {CONVENTION_LABEL} | " in printed and "| >= 0.85 |" in printed
    assert "| 0.8821 | 0.7957 |" in printed and "| 0.8305 | 0.7449 |" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reference_convention"]["infection"]["dice"] == metrics["infection"]["all"]["dice_mean"]
    inf_card, lung_card = read_card(infection)["metrics"], read_card(lung)["metrics"]
    assert inf_card[f"infection Dice, {CONVENTION_LABEL}"] == round(metrics["infection"]["all"]["dice_mean"], 4)
    assert inf_card[f"infection IoU, {CONVENTION_LABEL}"] == round(metrics["infection"]["all"]["iou_mean"], 4)
    covid = round(metrics["infection"]["COVID-19"]["dice_mean"], 4)
    assert inf_card["infection Dice, per-image mean, COVID-19 images"] == covid
    assert lung_card[f"lung Dice, {CONVENTION_LABEL}"] == round(metrics["lung"]["all"]["dice_mean"], 4)
    assert not any(k.startswith("infection") for k in lung_card)
    ref = inf_card["published_reference"]
    assert ref["Tahir et al. 2021 (Test)"][f"infection Dice, {CONVENTION_LABEL}"] == 0.8821
    assert ref["best student report (Test)"] == {f"infection Dice, {CONVENTION_LABEL}": 0.7957,
                                                 f"infection IoU, {CONVENTION_LABEL}": 0.7449}
    assert inf_card["command"].startswith("python benchmarks/quality.py --data ")


def test_headline_of_a_lung_only_evaluation(benchmark_module):
    quality = benchmark_module("quality")
    m = {"n_images": 1, "split": "Val", "lung": {"all": {"dice_mean": 0.98, "iou_mean": 0.96, "dice_pooled": 0.97}}}
    figures = quality.headline(m)
    assert figures == {f"lung Dice, {CONVENTION_LABEL}": 0.98, f"lung IoU, {CONVENTION_LABEL}": 0.96,
                       "lung Dice, pooled, all images": 0.97}
    table = quality.readme_table(m)
    assert f"| lung Dice, {CONVENTION_LABEL} | 0.9800 | >= 0.972 | yes | 0.9799 |  |" in table
