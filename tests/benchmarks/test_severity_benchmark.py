"""benchmarks/severity.py: the agreement figures by hand and the cross-validation by patient it reports with
(cxrseg.evaluation.severity_agreement), and an end-to-end run on a fake folder of scored films (the real scores.csv's
columns) with the tiny models."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from cxrseg.data.io import read_mask
from cxrseg.evaluation import severity_agreement as sev

COLUMNS = ("file", "geographic_mean", "opacity_mean", "patientid", "view", "license")  # as ../shared/severity


def test_agreement_by_hand():
    ours, experts = [2, 4, 6, 8], [1, 4, 7, 6]
    assert sev.mae(ours, experts) == pytest.approx((1 + 0 + 1 + 2) / 4)
    assert sev.bias(ours, experts) == pytest.approx((1 + 0 - 1 + 2) / 4)  # ours - experts
    # r by the textbook formula: deviations (-3,-1,1,3) and (-3.5,-0.5,2.5,1.5)
    num = 3 * 3.5 + 0.5 + 2.5 + 4.5
    den = math.sqrt(20 * (3.5**2 + 0.5**2 + 2.5**2 + 1.5**2))
    assert sev.pearson(ours, experts) == pytest.approx(num / den)
    assert sev.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert sev.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(sev.pearson([1, 1, 1], [1, 2, 3]))
    assert sev.agreement(ours, experts) == {"mae": 1.0, "bias": 0.5, "r": pytest.approx(num / den)}


def test_bootstrap_intervals_hold_the_estimate():
    rng = np.random.default_rng(0)
    experts = rng.uniform(0, 8, 30)
    ours = experts + rng.normal(0.5, 1.0, 30)
    groups = np.repeat(np.arange(15), 2)
    ci = sev.bootstrap(ours, experts, groups, n=300)
    for k, v in sev.agreement(ours, experts).items():
        assert ci[k][0] <= v <= ci[k][1]


def test_cross_validation_leaves_each_patient_out():
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    features = np.arange(6, dtype=float)[:, None]
    experts = np.arange(6, dtype=float)
    seen = []

    def fit(x, y):
        seen.append(set(x[:, 0].astype(int)))
        return float(y.mean())

    out = sev.cross_validate(features, experts, groups, fit, lambda x, mean: np.full(len(x), mean))
    assert len(seen) == 3
    assert {0, 1} not in seen and set().union(*seen) == set(range(6))
    assert out[0] == out[1] == pytest.approx(np.mean([2, 3, 4, 5]))  # patient a predicted from b and c only
    assert out[2] == pytest.approx(np.mean([0, 1, 3, 4, 5]))


def test_moved_thresholds_are_the_usual_bins_at_power_one():
    shares = np.array([[0.0, 0.1], [0.3, 0.6], [0.8, 1.0]])
    assert sev._grades(shares, 1.0).tolist() == [1, 5, 8]
    assert sev._grades(shares, 2.0).tolist() == [1, 1 + 2, 3 + 4]  # squared: 0.01; 0.09, 0.36; 0.64, 1.0


def _fake_scores(root, covidqu):
    """Scored films copied from the synthetic COVID-QU-Ex COVID-19 images, at other sizes, with the experts' score
    taken from their ground-truth masks (4 x share per lung) and two films per patient."""
    sources = sorted((covidqu / "Infection Segmentation Data").glob("*/COVID-19/images/*.png"))[:6]
    (root / "images").mkdir(parents=True)
    with open(root / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i, src in enumerate(sources):
            lung = read_mask(src.parent.parent / "lung masks" / src.name)
            inf = read_mask(src.parent.parent / "infection masks" / src.name)
            extent = round(min(8.0, 8 * (inf & lung).sum() / max(lung.sum(), 1)), 1)
            name = f"film-{i}.png"
            Image.open(src).resize((150 + 10 * i, 140)).save(root / "images" / name)
            w.writerow([name, extent, round(extent * 0.75, 1), 100 + i // 2, "PA", ""])
    return root, len(sources)


def test_end_to_end(benchmark_module, tiny_models, synthetic_root, tmp_path, capsys):
    sev = benchmark_module("severity")
    folder, n = _fake_scores(tmp_path / "severity", synthetic_root)
    out = tmp_path / "docs"
    text = sev.main(["--scores", str(folder), "--lung-model", str(tiny_models[0]), "--infection-model",
                     str(tiny_models[1]), "--backend", "torch", "--out", str(out), "--covidqu", str(synthetic_root),
                     "--quiet", "--update-card"])
    printed = capsys.readouterr().out
    assert text in printed
    assert f"{n} films of {n // 2} patients" in text and "covid_status 'positive'" in text
    rows = {ln.split("|")[1].strip(): ln for ln in text.splitlines() if ln.startswith("| ")}
    for label in ("total grade (as computed)", "**severity score, cross-validated** (leave one patient out)"):
        cells = [c.strip() for c in rows[label].split("|")[2:5]]
        mae_, bias_ = float(cells[0]), float(cells[1])
        assert 0 <= mae_ <= 8 and -8 <= bias_ <= 8 and (cells[2] == "nan" or -1 <= float(cells[2]) <= 1)
    assert "SCORE = ScoreCalibration(extent=" in text and "without the density term" in text
    assert f"{n} found in COVID-QU-Ex" in text and "ground-truth masks' total grade" in text
    films = [ln for ln in text.splitlines() if ln.startswith("| film-")]
    assert len(films) == n
    for ln in films:
        cells = [c.strip() for c in ln.split("|")[1:-1]]
        assert 0 <= int(cells[4]) <= 8 and 0 <= float(cells[5]) <= 8 and 0 <= float(cells[6]) <= 8
        assert cells[11].endswith(".png)")  # matched to its source image
    for png in ("severity-scatter.png", "severity-bland-altman.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 300
    assert f"wrote {out / 'severity-scatter.png'}" in printed
    from cxrseg.models.store import card_summary, read_card

    block = read_card(tiny_models[1])["severity_agreement"]
    assert f"{n} expert-scored films of {n // 2}" in block["split"] and block["command"].startswith("python benchmarks/")
    assert 0 <= block["severity score MAE (cv)"] <= 8 and -8 <= block["total grade bias"] <= 8
    assert any("severity score MAE (cv)" in line for line in card_summary(read_card(tiny_models[1])))


def test_missing_folder_is_one_line(benchmark_module, tmp_path):
    sev = benchmark_module("severity")
    with pytest.raises(SystemExit, match="scores.csv: not found"):
        sev.main(["--scores", str(tmp_path / "nowhere"), "--no-plots"])


def test_a_shift_is_applied_to_every_film_and_never_recorded_in_the_card(benchmark_module, tiny_models,
                                                                         synthetic_root, tmp_path):
    sev = benchmark_module("severity")
    folder, n = _fake_scores(tmp_path / "severity", synthetic_root)
    common = ["--scores", str(folder), "--lung-model", str(tiny_models[0]), "--infection-model", str(tiny_models[1]),
              "--backend", "torch", "--no-plots", "--quiet"]
    plain = sev.main(common)
    shifted = sev.main([*common, "--shift", "collimation border 8%"])
    assert "every film shifted: collimation border 8%" in shifted and "every film shifted" not in plain
    films = lambda text: [ln.split("|")[13] for ln in text.splitlines() if ln.startswith("| film-")]  # noqa: E731
    assert films(shifted) != films(plain)  # the border changed what the films look like (density column)
    with pytest.raises(SystemExit, match="unshifted"):
        sev.main([*common, "--shift", "gamma 0.6", "--update-card"])


@pytest.mark.parametrize("option", ["--accurate", "--crop-borders"])
def test_the_card_records_the_default_path_only(benchmark_module, tmp_path, option):
    sev = benchmark_module("severity")
    with pytest.raises(SystemExit, match="default path"):
        sev.main(["--scores", str(tmp_path / "nowhere"), "--no-plots", option, "--update-card"])
