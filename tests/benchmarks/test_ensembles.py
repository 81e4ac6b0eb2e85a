"""benchmarks/ensembles.py end to end on synthetic films and tiny models."""

from __future__ import annotations


def test_end_to_end(benchmark_module, synthetic_root, tiny_models, tmp_path):
    lung, infection = (str(p) for p in tiny_models)
    out = tmp_path / "ens.md"
    text = benchmark_module("ensembles").main([
        "--data", str(synthetic_root), "--lung", lung, "--lung", lung, "--infection", infection,
        "--infection", infection, "--classifier", "none", "--out", str(out)])
    assert out.read_text() == text
    lung_rows = [ln for ln in text.splitlines() if ln.startswith("| ") and ln.count("|") == 3 and "Dice" not in ln]
    dices = [float(r.split("|")[2]) for r in lung_rows]
    assert len(dices) == 3 and dices[0] == dices[1] == dices[2]  # one model twice: the mean is that model
    rows = {ln.split("|")[1].strip(): ln.split("|")[2:6] for ln in text.splitlines()
            if ln.startswith(("| 0 |", "| 1 |", "| 0+1 |"))}
    assert list(rows) == ["0", "1", "0+1"]
    assert rows["0"] == rows["1"] == rows["0+1"]  # the same model averaged with itself changes nothing
    assert all(0 <= float(v.strip().rstrip("%")) <= 100 for v in rows["0"])
