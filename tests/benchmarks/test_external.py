"""benchmarks/external.py: manifest groups, and an end-to-end run on a fake external folder."""

from __future__ import annotations

import numpy as np

from cxrseg.data.synthetic import phantom


def test_groups(benchmark_module):
    group_of = benchmark_module("external").group_of
    assert group_of("covid", "COVID-19") == "COVID-19"
    assert group_of("negative", "SARS") == "SARS"
    assert group_of("negative", "No Finding") == "normal"
    assert group_of("negative", "Klebsiella") == "other pneumonia"


def test_end_to_end(benchmark_module, tiny_models, tmp_path, capsys, fake_external):
    external = benchmark_module("external")
    folder = fake_external(tmp_path / "external")
    out = tmp_path / "docs" / "external.md"
    text = external.main(["--external", str(folder), "--lung-model", str(tiny_models[0]), "--infection-model",
                          str(tiny_models[1]), "--backend", "torch", "--per-film", "--out", str(out)])
    captured = capsys.readouterr()
    assert out.read_text() == text == captured.out
    assert "never tuned on" in text
    lines = text.splitlines()
    auc = [ln for ln in lines if ln.startswith("| ROC AUC")]
    assert len(auc) == 2 and "(2 vs 4 films)" in auc[0] and "SARS left out (2 vs 3 films)" in auc[1]
    for ln in auc:
        v = ln.rstrip(" |").rsplit("|", 1)[1].strip()
        assert 0 <= float(v) <= 1
    groups = {ln.split("|")[1].strip(): ln for ln in lines if ln.split("|")[1:2] and ln.split("|")[1].strip() in
              ("COVID-19", "other pneumonia", "SARS", "normal", "**all without COVID-19**")}
    assert set(groups) == {"COVID-19", "other pneumonia", "SARS", "normal", "**all without COVID-19**"}
    films = {name: n for name, n in [("COVID-19", 2), ("other pneumonia", 2), ("SARS", 1), ("normal", 1),
                                       ("**all without COVID-19**", 4)]}
    for g, ln in groups.items():
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert len(cells) == 7 and int(cells[1]) == films[g] and 0 <= int(cells[2]) <= films[g]
        assert cells[6] != "n/a"  # opacity extent: from the library's field or recomputed
    per_film = [ln for ln in lines if ln.startswith(("| covid/", "| negative/"))]
    assert len(per_film) == len(fake_external.films)
    assert any("| negative/n-sars.png | SARS | SARS | PA | 140x140 |" in ln for ln in per_film)
    assert captured.err.count("\n") >= len(fake_external.films)


def test_opacity_fallbacks(benchmark_module):
    external = benchmark_module("external")

    class Seg:  # a Segmentation with no opacity field at all
        lung = np.ones((4, 4), bool)
        figures = object()

    assert external.library_opacity_pct(Seg()) is None
    seg = Seg()
    seg.opacity = np.zeros((4, 4), bool)
    seg.opacity[0] = True
    assert external.library_opacity_pct(seg) == 25.0
    seg.opacity_pct = 12.5
    assert external.library_opacity_pct(seg) == 12.5


def test_recomputed_opacity_is_a_share(benchmark_module, pipeline):
    """The fallback for a library without an opacity field: a % of lung, or None if the private API moved."""
    external = benchmark_module("external")
    img = phantom("COVID-19", 128, np.random.default_rng(5))[0].astype(np.float32) / 255
    v = external.recomputed_opacity_pct(pipeline, img)
    assert v is None or 0.0 <= v <= 100.0


def test_classifier_choice_is_named(benchmark_module, tiny_models, tmp_path, capsys, fake_external):
    external = benchmark_module("external")
    folder = fake_external(tmp_path / "external")
    text = external.main(["--external", str(folder), "--lung-model", str(tiny_models[0]), "--infection-model",
                          str(tiny_models[1]), "--backend", "torch", "--classifier", "none"])
    assert "; classifier none;" in text
