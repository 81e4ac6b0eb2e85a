"""Mask clean-up: two largest lung components with holes filled; infection clipped to lung, specks dropped."""

from __future__ import annotations

import numpy as np

from cxrseg.inference.postprocess import clean_infection, clean_lung, split_lungs


def _two_lungs(h: int = 64, w: int = 64) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[10:50, 8:26] = True  # image-left lung (patient's right)
    m[12:54, 38:58] = True  # image-right lung (patient's left), a bit larger
    return m


def test_keeps_the_two_largest_components():
    lungs = _two_lungs()
    noisy = lungs.copy()
    noisy[0:3, 0:3] = True  # specks
    noisy[60:63, 30:34] = True
    noisy[30, 32] = True
    out = clean_lung(noisy)
    np.testing.assert_array_equal(out, lungs)
    assert out.dtype == bool


def test_keeps_a_big_third_component_only_if_among_two_largest():
    m = np.zeros((64, 64), bool)
    m[0:10, 0:10] = True  # 100 px
    m[20:40, 20:40] = True  # 400 px
    m[50:62, 40:62] = True  # 264 px
    out = clean_lung(m)
    assert not out[0:10, 0:10].any()
    assert out[20:40, 20:40].all() and out[50:62, 40:62].all()
    assert clean_lung(m, keep=1).sum() == 400


def test_fills_holes():
    lungs = _two_lungs()
    holed = lungs.copy()
    holed[20:30, 12:20] = False  # a hole inside the left-image lung
    holed[40, 45] = False
    np.testing.assert_array_equal(clean_lung(holed), lungs)


def test_a_notch_open_to_the_outside_is_not_a_hole():
    lungs = _two_lungs()
    notched = lungs.copy()
    notched[20:30, 8:14] = False  # touches the lung's outer edge
    np.testing.assert_array_equal(clean_lung(notched), notched)


def test_empty_and_single_component():
    empty = np.zeros((32, 32), bool)
    assert not clean_lung(empty).any()
    one = np.zeros((32, 32), bool)
    one[5:20, 5:20] = True
    np.testing.assert_array_equal(clean_lung(one), one)


def test_infection_is_clipped_to_the_lung():
    lung = _two_lungs()
    inf = np.zeros_like(lung)
    inf[20:40, 0:30] = True  # spills outside the image-left lung
    out = clean_infection(inf, lung)
    np.testing.assert_array_equal(out, inf & lung)
    assert not (out & ~lung).any()


def test_min_area_drops_specks_and_keeps_large_regions():
    lung = _two_lungs()
    inf = np.zeros_like(lung)
    inf[15:25, 10:20] = True  # 100 px
    inf[30:32, 40:42] = True  # 4 px speck
    inf[45, 50] = True  # 1 px speck
    out = clean_infection(inf, lung, min_area=5)
    expected = np.zeros_like(lung)
    expected[15:25, 10:20] = True
    np.testing.assert_array_equal(out, expected)
    # a region of exactly min_area pixels stays
    assert clean_infection(inf, lung, min_area=4)[30:32, 40:42].all()
    # min_area 0 keeps everything inside the lung
    np.testing.assert_array_equal(clean_infection(inf, lung, min_area=0), inf & lung)
    # min_area applies after clipping: a region mostly outside the lung counts only its inside part
    spill = np.zeros_like(lung)
    spill[20:23, 24:30] = True  # only columns 24-25 (6 px) are inside the lung
    assert not clean_infection(spill, lung, min_area=7).any()
    assert clean_infection(spill, lung, min_area=6).sum() == 6


def test_split_lungs_radiological_convention():
    """The component on the image's left is the patient's right lung."""
    lungs = _two_lungs()
    right, left = split_lungs(lungs)
    expected_right = np.zeros_like(lungs)
    expected_right[10:50, 8:26] = True
    np.testing.assert_array_equal(right, expected_right)
    np.testing.assert_array_equal(left, lungs & ~expected_right)
    # mirrored image: the roles swap, whichever component is larger
    r2, l2 = split_lungs(lungs[:, ::-1])
    np.testing.assert_array_equal(r2, left[:, ::-1])
    np.testing.assert_array_equal(l2, right[:, ::-1])


def test_split_lungs_merged_and_empty():
    merged = np.zeros((40, 40), bool)
    merged[10:30, 5:35] = True  # one blob: cut at its own centroid (column 20)
    right, left = split_lungs(merged)
    assert right.sum() + left.sum() == merged.sum()
    assert not (right & left).any()
    assert right[:, :20].sum() == right.sum() and left[:, 20:].sum() == left.sum()
    assert abs(int(right.sum()) - int(left.sum())) <= 20
    r, l = split_lungs(np.zeros((16, 16), bool))
    assert not r.any() and not l.any()
