"""Severity: infected share per lung, grades 0-4 per lung, total 0-8, radiological right/left."""

from __future__ import annotations

import numpy as np
import pytest

from cxrseg.inference.severity import grade, severity


@pytest.mark.parametrize(
    "share, expected",
    [
        (0.0, 0),
        (1e-9, 1),
        (0.01, 1),
        (0.2499, 1),
        (0.25, 2),
        (0.4999, 2),
        (0.50, 3),
        (0.7499, 3),
        (0.75, 4),
        (1.0, 4),
    ],
)
def test_grade_boundaries(share, expected):
    assert grade(share) == expected


def _lungs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two 10x10 lungs (100 px each): image-left (patient's right) and image-right (patient's left)."""
    img_left = np.zeros((40, 60), bool)
    img_left[10:20, 5:15] = True
    img_right = np.zeros((40, 60), bool)
    img_right[10:20, 40:50] = True
    return img_left | img_right, img_left, img_right


def _infect(region: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros_like(region)
    ys, xs = np.nonzero(region)
    out[ys[:n], xs[:n]] = True
    return out


@pytest.mark.parametrize(
    "right_px, left_px, grades",
    [(0, 0, (0, 0)), (1, 0, (1, 0)), (24, 25, (1, 2)), (25, 49, (2, 2)), (50, 74, (3, 3)), (75, 100, (4, 4))],
)
def test_grades_per_lung_from_masks(right_px, left_px, grades):
    lung, img_left, img_right = _lungs()
    inf = _infect(img_left, right_px) | _infect(img_right, left_px)
    f = severity(lung, inf)
    assert (f.right_grade, f.left_grade) == grades
    assert f.total_grade == sum(grades)
    assert f.right_infected_pct == pytest.approx(right_px)
    assert f.left_infected_pct == pytest.approx(left_px)
    assert f.infected_pct == pytest.approx((right_px + left_px) / 2)
    assert f.infection_area_px == right_px + left_px


def test_right_means_patients_right_on_the_image_left():
    lung, img_left, img_right = _lungs()
    f = severity(lung, _infect(img_left, 80))  # infection only in the image-left lung
    assert (f.right_grade, f.left_grade, f.total_grade) == (4, 0, 4)
    assert f.right_lung_area_px == f.left_lung_area_px == 100
    assert f.lung_area_px == 200


def test_infection_outside_the_lung_does_not_count():
    lung, img_left, _ = _lungs()
    inf = _infect(img_left, 10)
    inf[30:40, 20:35] = True  # outside both lungs
    f = severity(lung, inf)
    assert f.infection_area_px == 10
    assert f.right_infected_pct == pytest.approx(10.0) and f.left_infected_pct == 0.0


def test_no_lung_gives_zeros():
    empty = np.zeros((32, 32), bool)
    f = severity(empty, empty)
    assert f.lung_area_px == 0 and f.infected_pct == 0.0 and f.total_grade == 0


def test_figures_are_plain_json_types():
    import json

    lung, img_left, _ = _lungs()
    d = severity(lung, _infect(img_left, 30)).to_dict()
    json.dumps(d)
    assert {type(v) for v in d.values()} <= {int, float}


# -- the continuous severity score (0-8, one decimal): the experts' scale, calibrated -------------------------------
def test_severity_score_is_zero_without_infection():
    from cxrseg.inference.severity import severity_score

    assert severity_score(0.0, 0.0) == 0.0
    lung, _, _ = _lungs()
    assert severity(lung, np.zeros_like(lung)).severity_score == 0.0
    empty = np.zeros((32, 32), bool)
    assert severity(empty, empty).severity_score == 0.0


def test_severity_score_bounds_and_one_decimal():
    from cxrseg.inference.severity import severity_score

    shares = np.linspace(0, 1, 21)
    for r in shares:
        for left in shares:
            s = severity_score(r, left)
            assert 0.0 <= s <= 8.0 and s == round(s, 1)
    assert severity_score(1.0, 1.0) <= 8.0 and severity_score(1.0, 1.0) > severity_score(0.5, 0.5)
    for scale, power in [(1.0, 0.3), (1.0, 2.0), (0.3, 1.0)]:  # the calibration grid's corners stay in bounds
        assert 0.0 <= severity_score(1.0, 1.0, scale, power) <= 8.0
        assert severity_score(1e-6, 0.0, scale, power) >= 0.0


def test_severity_score_is_monotone_in_each_share():
    from cxrseg.inference.severity import lung_score, severity_score

    grid = np.linspace(0, 1, 101)
    per_lung = [lung_score(s) for s in grid]
    assert all(b > a for a, b in zip(per_lung, per_lung[1:]))  # strictly, before rounding
    for other in (0.0, 0.3, 1.0):
        right = [severity_score(s, other) for s in grid]
        left = [severity_score(other, s) for s in grid]
        assert right == left  # symmetric in the two lungs
        assert all(b >= a for a, b in zip(right, right[1:]))


def test_severity_score_in_the_figures_follows_the_masks():
    from cxrseg.inference.severity import severity_score

    lung, img_left, img_right = _lungs()
    scores = []
    for n in (0, 10, 30, 60, 100):
        f = severity(lung, _infect(img_left, n) | _infect(img_right, n // 2))
        assert f.severity_score == severity_score(f.right_infected_pct / 100, f.left_infected_pct / 100)
        scores.append(f.severity_score)
    assert scores[0] == 0.0 and all(b > a for a, b in zip(scores, scores[1:]))
    assert list(f.to_dict()).index("severity_score") == list(f.to_dict()).index("total_grade") + 1
