"""The severity score's calibration fit: it recovers known constants, keeps the library's form (an unmarked lung
scores 0, each lung clipped to 0-4), resists an outlier (least absolute deviations), and the extent-only form."""

from __future__ import annotations

import numpy as np
import pytest

from cxrseg.evaluation.severity_agreement import (
    features, fit_calibration, fit_rows, mae, score_rows, scores_of)
from cxrseg.inference.severity import ScoreCalibration, severity_score

TRUE = ScoreCalibration(extent=2.5, power=0.6, density=6.0, offset=-1.5)


def _films(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    shares = rng.uniform(0, 1, (n, 2))
    shares[::7, 0] = 0.0  # some lungs without infection
    dens = rng.uniform(0.15, 0.6, (n, 2))
    experts = np.array([TRUE.lung_score(s, d) + TRUE.lung_score(s2, d2)
                        for (s, s2), (d, d2) in zip(shares, dens)])  # unrounded: exact constants to find
    return shares, dens, experts


def test_fit_recovers_known_constants():
    shares, dens, experts = _films()
    cal = fit_calibration(shares, dens, experts)
    assert cal.power == pytest.approx(TRUE.power, abs=0.011)
    assert (cal.extent, cal.density, cal.offset) == pytest.approx((TRUE.extent, TRUE.density, TRUE.offset), abs=0.15)
    assert mae(scores_of(shares, dens, cal), experts) < 0.06  # one-decimal rounding is the rest


def test_fit_ignores_one_wild_film():
    shares, dens, experts = _films(seed=1)
    experts[3] = experts[3] + 6.0  # one rater's slip
    cal = fit_calibration(shares, dens, experts)
    assert (cal.extent, cal.density) == pytest.approx((TRUE.extent, TRUE.density), abs=0.3)


def test_extent_only_form_has_no_density_term():
    shares, dens, experts = _films(seed=2)
    cal = fit_calibration(shares, None, experts)
    assert cal.density == 0.0
    with_density = fit_calibration(shares, dens, experts)
    assert mae(scores_of(shares, dens, with_density), experts) < mae(scores_of(shares, None, cal), experts)


def test_scores_are_the_librarys_and_rows_round_trip():
    shares, dens, _ = _films(n=10, seed=3)
    got = scores_of(shares, dens, TRUE)
    assert got.tolist() == [severity_score(a, b, c, d, TRUE) for (a, b), (c, d) in zip(shares, dens)]
    rows = features(shares, dens)
    assert rows.shape == (10, 4) and score_rows(rows, TRUE).tolist() == got.tolist()
    assert fit_rows(rows, got, use_density=False).density == 0.0
    unmarked = scores_of(np.zeros((3, 2)), np.full((3, 2), 0.9), TRUE)
    assert unmarked.tolist() == [0.0, 0.0, 0.0]
