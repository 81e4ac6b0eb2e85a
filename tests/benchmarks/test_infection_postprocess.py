"""benchmarks/infection_postprocess.py: the scoring and the clean-ups stay inside the lung."""

from __future__ import annotations

import numpy as np
import pytest


def test_score_uses_the_all_images_convention(benchmark_module):
    module = benchmark_module("infection_postprocess")
    truth = np.zeros((3, 4, 4), bool)
    truth[0, :2] = True
    masks = [truth[0].copy(), np.zeros((4, 4), bool), np.ones((4, 4), bool)]  # hit, empty-on-empty, false alarm
    r = module.score(masks, truth)
    assert r == pytest.approx({"all": (1 + 1 + 0) / 3, "covid": 1.0, "flagged": 0.5})


def test_variants_never_leave_the_lung(benchmark_module):
    lung = np.zeros((16, 16), bool)
    lung[2:14, 2:8] = True
    mask = np.zeros_like(lung)
    mask[4:10, 3:7] = True
    mask[6, 5] = False  # a hole
    prob = np.where(mask, 0.6, 0.0)
    for name, f in benchmark_module("infection_postprocess").VARIANTS.items():
        out = f(mask, lung, prob)
        assert out.dtype == bool and not (out & ~lung).any(), name
    assert benchmark_module("infection_postprocess").VARIANTS["holes filled"](mask, lung, prob)[6, 5]


def test_hysteresis_keeps_the_components_that_peak_high(benchmark_module):
    module = benchmark_module("infection_postprocess")
    mask = np.zeros((12, 12), bool)
    mask[1:4, 1:4] = mask[7:10, 7:10] = True
    prob = np.where(mask, 0.3, 0.0)
    prob[8, 8] = 0.9  # only the second component reaches 0.8 anywhere
    out = module.hysteresis(mask, prob, 0.8)
    np.testing.assert_array_equal(out, mask & (np.arange(12)[:, None] > 5))
    assert not module.hysteresis(mask, prob, 0.95).any()
    assert module.hysteresis(np.zeros_like(mask), prob, 0.5).sum() == 0
