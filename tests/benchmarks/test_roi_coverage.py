"""ROI coverage counts infection outside the predicted lungs and skips images without infection."""

from __future__ import annotations

import math

import numpy as np


def test_coverage(benchmark_module):
    infection = np.zeros((3, 4, 4), bool)
    lung = np.zeros((3, 4, 4), bool)
    infection[0, :2, :2] = True  # 4 px, all inside
    lung[0, :2, :] = True
    infection[1, :, 0] = True  # 4 px, 1 inside
    lung[1, 0, :] = True
    lung[2] = True  # no infection: skipped
    c = benchmark_module("roi_coverage").coverage(infection, lung)
    assert c["images"] == 2
    assert math.isclose(c["pooled_inside"], 5 / 8)
    assert math.isclose(c["dice_ceiling_mean"], (1.0 + 2 * 1 / 5) / 2)
    assert c["images_losing_over_10pct"] == 1
