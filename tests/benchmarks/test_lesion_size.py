"""The lesion-size table bins COVID-19 rows by ground-truth pixels and ignores the other classes."""

from __future__ import annotations

import math


def test_dice_by_size(tmp_path, benchmark_module):
    csv = tmp_path / "per_image.csv"
    csv.write_text(
        "file,class,infection_dice,infection_gt_px\n"
        "a.png,COVID-19,0.2,100\n"
        "b.png,COVID-19,0.4,1999\n"
        "c.png,COVID-19,0.9,2000\n"
        "d.png,COVID-19,0.8,50000\n"
        "e.png,Normal,1.0,0\n"
    )
    (n0, d0), (n1, d1), (n2, d2), (n3, d3) = benchmark_module("lesion_size").dice_by_size(csv)
    assert (n0, n1, n2, n3) == (2, 1, 0, 1)
    assert math.isclose(d0, 0.3) and d1 == 0.9 and math.isnan(d2) and d3 == 0.8
