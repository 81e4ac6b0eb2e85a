"""benchmarks/lung_size.py: stage 1 at a smaller input, scored against the 256 masks."""

from __future__ import annotations

import re

import numpy as np


def test_dice_per_image_scores_empty_on_empty_as_one(benchmark_module):
    pred = np.zeros((3, 4, 4), bool)
    truth = np.zeros((3, 4, 4), bool)
    pred[0, :2] = truth[0, :2] = True  # identical
    pred[1, :2] = True  # all wrong
    np.testing.assert_allclose(benchmark_module("lung_size").dice_per_image(pred, truth), [1.0, 0.0, 1.0])


def test_smaller_inputs_are_scored_at_256(benchmark_module, synthetic_root, tiny_models, capsys):
    benchmark_module("lung_size").main(["--data", str(synthetic_root), "--lung-model", str(tiny_models[0]),
                                        "--sizes", "128,32"])
    rows = dict(re.findall(r"^\| (\d+) \| [\d.]+x \| ([\d.]+) \|$", capsys.readouterr().out, re.M))
    assert set(rows) == {"128", "32"}
    assert float(rows["128"]) > 0.8  # its own size: the lungs are found
    assert float(rows["32"]) < float(rows["128"])  # a quarter of the resolution it was trained at loses some
