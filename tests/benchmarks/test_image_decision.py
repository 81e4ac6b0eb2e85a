"""benchmarks/image_decision.py end to end on synthetic films, a tiny classifier and a fake external folder."""

from __future__ import annotations

from cxrseg.training.classifier import ClassifierTrainConfig, fit_classifier


def test_end_to_end(benchmark_module, synthetic_root, fake_external, tmp_path):
    weights = fit_classifier(ClassifierTrainConfig(data=synthetic_root, out=tmp_path / "clf", epochs=1, batch_size=4,
                                                   size=32, progress=False))
    out = tmp_path / "decision.md"
    text = benchmark_module("image_decision").main([
        "--data", str(synthetic_root), "--classifier", str(weights),
        "--external", str(fake_external(tmp_path / "external")), "--head-weights", "0.5,0.7", "--out", str(out)])
    assert out.read_text() == text
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in text.splitlines()
            if ln.startswith(("| stage-2 head", "| whole-film", "| mean of"))]
    names = ["stage-2 head (shipped)", "whole-film classifier", "mean of the two"]
    assert [r[0] for r in rows] == names * 2  # tuned on the split, then the external films
    tuned, external = rows[:3], rows[3:]
    assert all(len(r) == 7 and 0 <= float(r[1]) <= 1 and 0 <= float(r[3]) <= 1 for r in tuned)
    assert all(len(r) == 3 and 0 <= float(r[1]) <= 1 for r in external)
    assert "NEVER TUNED ON" in text and text.count("| mean of the two |") == 2
    weighted = {ln.split("|")[1].strip(): ln.split("|")[2:] for ln in text.splitlines() if " x head + " in ln}
    assert list(weighted) == ["0.5 x head + 0.5 x classifier", "0.7 x head + 0.3 x classifier"]
    assert weighted["0.5 x head + 0.5 x classifier"] == [f" {c} " for c in tuned[2][1:]] + [""]  # = the mean
