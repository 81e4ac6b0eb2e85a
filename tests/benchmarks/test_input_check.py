"""benchmarks/input_check.py: one row per set of inputs, each warned share consistent with its count."""

from __future__ import annotations

import re


def test_end_to_end(benchmark_module, synthetic_root, tiny_models, fake_external, tmp_path, capsys):
    check = benchmark_module("input_check")
    external = fake_external(tmp_path / "external")
    out = tmp_path / "docs" / "input_check.md"
    text = check.main(["--data", str(synthetic_root), "--external", str(external), "--severity",
                       str(tmp_path / "no-such-folder"), "--every", "3", "--lung-model", str(tiny_models[0]),
                       "--infection-model", str(tiny_models[1]), "--backend", "torch", "--out", str(out)])
    assert out.read_text() == text == capsys.readouterr().out
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| (.+?) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)% \((\d+)\) \|$", line)
        if m:
            rows[m.group(1)] = m
    assert rows["COVID-QU-Ex Val"].group(2) == "9"  # 3 films per class in the synthetic Val
    assert rows["external films (../shared/external)"].group(2) == str(len(fake_external.films))
    assert not any(name.startswith("severity") for name in rows)  # a missing folder is left out
    assert rows["example films shipped with cxrseg"].group(2) == "2"
    assert rows["Val films inverted"].group(2) == "3"  # every 3rd of 9
    assert rows["noise (uniform, smoothed)"].group(2) == "20"
    for m in rows.values():
        n, median, low, high, pct, warned = (float(m.group(i)) for i in range(2, 8))
        assert 0 <= low <= median <= high <= 1
        assert warned <= n and abs(pct - 100 * warned / n) < 0.06
    assert re.search(r"Spearman -?[\d.]+", text)
