"""Severity: infected share per lung, grades 0-4 per lung, total 0-8, radiological right/left."""

from __future__ import annotations

import numpy as np
import pytest

from cxrseg.inference.severity import SCORE, ScoreCalibration, grade, lung_densities, severity, severity_score

D = (0.3, 0.3)  # a typical lung density (right, left)


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
    f = severity(lung, inf, D)
    assert (f.right_grade, f.left_grade) == grades
    assert f.total_grade == sum(grades)
    assert f.right_infected_pct == pytest.approx(right_px)
    assert f.left_infected_pct == pytest.approx(left_px)
    assert f.infected_pct == pytest.approx((right_px + left_px) / 2)
    assert f.infection_area_px == right_px + left_px


def test_right_means_patients_right_on_the_image_left():
    lung, img_left, img_right = _lungs()
    f = severity(lung, _infect(img_left, 80), D)  # infection only in the image-left lung
    assert (f.right_grade, f.left_grade, f.total_grade) == (4, 0, 4)
    assert f.right_lung_area_px == f.left_lung_area_px == 100
    assert f.lung_area_px == 200


def test_infection_outside_the_lung_does_not_count():
    lung, img_left, _ = _lungs()
    inf = _infect(img_left, 10)
    inf[30:40, 20:35] = True  # outside both lungs
    f = severity(lung, inf, D)
    assert f.infection_area_px == 10
    assert f.right_infected_pct == pytest.approx(10.0) and f.left_infected_pct == 0.0


def test_no_lung_gives_zeros():
    empty = np.zeros((32, 32), bool)
    f = severity(empty, empty, D)
    assert f.lung_area_px == 0 and f.infected_pct == 0.0 and f.total_grade == 0


def test_figures_are_plain_json_types():
    import json

    lung, img_left, _ = _lungs()
    d = severity(lung, _infect(img_left, 30), D).to_dict()
    json.dumps(d)
    assert {type(v) for v in d.values()} <= {int, float}


# -- the continuous severity score (0-8, one decimal): the experts' scale, calibrated -------------------------------
def test_severity_score_is_zero_without_infection_whatever_the_density():
    for d in (0.0, 0.3, 1.0):
        assert severity_score(0.0, 0.0, d, d) == 0.0
    lung, _, _ = _lungs()
    assert severity(lung, np.zeros_like(lung), (0.9, 0.9)).severity_score == 0.0
    empty = np.zeros((32, 32), bool)
    assert severity(empty, empty, (0.0, 0.0)).severity_score == 0.0


def test_severity_score_bounds_and_one_decimal():
    shares = np.linspace(0, 1, 11)
    for r in shares:
        for left in shares:
            for d in (0.0, 0.2, 0.5, 1.0):
                s = severity_score(r, left, d, d)
                assert 0.0 <= s <= 8.0 and s == round(s, 1)
    extreme = ScoreCalibration(extent=10.0, power=0.3, density=20.0, offset=5.0)
    assert severity_score(1.0, 1.0, 1.0, 1.0, extreme) == 8.0  # each lung clipped at 4
    assert severity_score(1e-6, 0.0, 0.0, 0.0, ScoreCalibration(1.0, 1.0, 0.0, -3.0)) == 0.0  # clipped at 0


def test_severity_score_is_monotone_in_share_and_density():
    grid = np.linspace(0, 1, 101)
    for d in (0.2, 0.3, 0.5):
        per_lung = [SCORE.lung_score(s, d) for s in grid]
        assert all(b >= a for a, b in zip(per_lung, per_lung[1:]))
    by_density = [SCORE.lung_score(0.5, d) for d in grid]
    assert all(b >= a for a, b in zip(by_density, by_density[1:]))
    assert by_density[-1] > by_density[0]  # density matters (the fitted constant is positive)
    for other in (0.0, 0.3, 1.0):
        right = [severity_score(s, other, 0.4, 0.3) for s in grid]
        left = [severity_score(other, s, 0.3, 0.4) for s in grid]
        assert right == left  # symmetric in the two lungs


def test_severity_score_in_the_figures_follows_the_masks_and_density():
    lung, img_left, img_right = _lungs()
    for n in (0, 10, 30, 60, 100):
        f = severity(lung, _infect(img_left, n) | _infect(img_right, n // 2), (0.25, 0.45))
        assert (f.right_lung_density, f.left_lung_density) == (0.25, 0.45)
        assert f.severity_score == severity_score(f.right_infected_pct / 100, f.left_infected_pct / 100, 0.25, 0.45)


def test_lung_density_is_the_lungs_percentile_rank_and_ignores_tone_curves():
    lung, img_left, img_right = _lungs()
    rng = np.random.default_rng(0)
    image = rng.uniform(0.3, 1.0, lung.shape).astype(np.float32)  # body: brighter than aerated lung
    image[img_left] = rng.uniform(0.0, 0.1, img_left.sum())  # right lung (image left): darkest of the film
    image[img_right] = rng.uniform(0.5, 0.9, img_right.sum())  # left lung: opacified, as bright as the body
    right, left = lung_densities(image, lung)
    assert right < 0.06 and 0.3 < left < 0.8  # 100 of 2400 pixels: the darkest 4%
    for curve in (lambda x: x**0.6, lambda x: x**1.6, lambda x: 0.1 + 0.8 * x):
        r2, l2 = lung_densities(curve(image).astype(np.float32), lung)
        assert abs(r2 - right) < 0.02 and abs(l2 - left) < 0.02  # ranks survive a monotone curve (up to ties)
    assert lung_densities(image, np.zeros_like(lung)) == (0.0, 0.0)
    with pytest.raises(ValueError, match="differ in size"):
        lung_densities(image[:10], lung)


def test_lung_density_inside_the_content_box_ignores_padding():
    from cxrseg.data.borders import content_box

    lung, img_left, img_right = _lungs()
    rng = np.random.default_rng(2)
    image = rng.uniform(0.3, 1.0, lung.shape).astype(np.float32)
    image[lung] = rng.uniform(0.05, 0.5, lung.sum())
    plain = lung_densities(image, lung)
    padded, padded_lung = np.zeros((65, 60), np.float32), np.zeros((65, 60), bool)  # bands under 30%
    padded[15:55], padded_lung[15:55] = image, lung
    assert lung_densities(padded, padded_lung, content_box(padded)) == pytest.approx(plain, abs=1e-6)
    shifted = lung_densities(padded, padded_lung)
    assert min(abs(a - b) for a, b in zip(shifted, plain)) > 0.05  # the bands' black pixels lift every rank
