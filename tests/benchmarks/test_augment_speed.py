"""The augmentation benchmark runs both paths on synthetic films and prints its table."""

from __future__ import annotations

import sys


def test_prints_both_paths(benchmark_module, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["augment_speed.py", "--batch", "3", "--repeats", "1"])
    benchmark_module("augment_speed").main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| per sample") or line.startswith("| batch of 3")]
    assert len(rows) == 2
    assert all(float(r.rstrip(" |").rsplit("|", 1)[1]) > 0 for r in rows)
