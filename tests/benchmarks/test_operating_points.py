"""operating_points.py prints one row per false-alarm limit, each within its limit, and the no-veto ceiling."""

from __future__ import annotations

import re
import sys


def test_rows_respect_their_limits(benchmark_module, tiny_models, synthetic_root, monkeypatch, capsys):
    lung, infection = tiny_models
    monkeypatch.setattr(sys, "argv", ["operating_points.py", "--data", str(synthetic_root), "--lung-model", str(lung),
                                      "--infection-model", str(infection), "--limits", "0.0,0.5,1.0"])
    benchmark_module("operating_points").main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\| \d+% \|", line)]
    assert len(rows) == 3
    for row in rows:
        limit = float(row.split("|")[1].strip().rstrip("%")) / 100
        flagged = [float(x) / 100 for x in re.findall(r", (\d+\.\d)%, t=", row)]
        assert len(flagged) == 2 and all(f <= limit + 1e-9 for f in flagged)
    assert "no veto (a perfect image classifier): COVID-19 Dice" in out
