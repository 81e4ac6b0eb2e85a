"""Agreement of the severity score with radiologists: MAE, bias, Pearson r with patient-level bootstrap intervals,
the calibration fit of :class:`~cxrseg.inference.severity.ScoreCalibration`, and cross-validation by patient.

The calibration is fitted for the least mean absolute error (the figure the score is judged by): for each power on
a grid, the other three constants come from an exact least-absolute-deviations fit (a small linear programme);
the power with the least error after the score's clipping wins. ``benchmarks/severity.py`` runs it on scored films.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cxrseg.inference.severity import ScoreCalibration, grade, severity_score

POWERS = np.round(np.arange(0.30, 1.5001, 0.01), 2)  # the power's grid
GRADE_POWERS = np.round(np.arange(0.30, 2.0001, 0.01), 2)  # grade thresholds moved to (k/4) ** (1/p)
BOOTSTRAP = 2000


# -- agreement figures ----------------------------------------------------------------------------------------------
def mae(ours, experts) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(ours, float) - np.asarray(experts, float))))


def bias(ours, experts) -> float:
    """Mean difference, ours - experts (positive: we score higher)."""
    return float(np.mean(np.asarray(ours, float) - np.asarray(experts, float)))


def pearson(ours, experts) -> float:
    """Pearson correlation; NaN when either side is constant."""
    a, b = np.asarray(ours, float), np.asarray(experts, float)
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else float("nan")


def agreement(ours, experts) -> dict:
    return {"mae": mae(ours, experts), "bias": bias(ours, experts), "r": pearson(ours, experts)}


def bootstrap(ours, experts, groups, n: int = BOOTSTRAP, seed: int = 0) -> dict:
    """95% percentile intervals of MAE, bias and r, resampling patients (all of a patient's films together)."""
    ours, experts, groups = np.asarray(ours, float), np.asarray(experts, float), np.asarray(groups)
    ids = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in ids]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"mae": [], "bias": [], "r": []}
    for _ in range(n):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))])
        for k, v in agreement(ours[idx], experts[idx]).items():
            draws[k].append(v)
    out = {}
    for k, v in draws.items():
        arr = np.asarray(v)[~np.isnan(v)]  # r is undefined on a draw where either side is constant
        out[k] = tuple(np.percentile(arr, [2.5, 97.5])) if len(arr) else (float("nan"), float("nan"))
    return out


def cross_validate(features, experts, groups, fit: Callable, predict: Callable) -> np.ndarray:
    """Leave-one-group-out predictions: for each group, ``fit(features_rest, experts_rest)`` then ``predict``."""
    features, experts, groups = np.asarray(features, float), np.asarray(experts, float), np.asarray(groups)
    out = np.zeros(len(experts))
    for g in np.unique(groups):
        test = groups == g
        out[test] = predict(features[test], fit(features[~test], experts[~test]))
    return out


# -- the calibration ------------------------------------------------------------------------------------------------
def scores_of(shares, densities, calibration: ScoreCalibration) -> np.ndarray:
    """Severity scores (one decimal, as the library computes them) of (N, 2) shares and (N, 2) densities
    (``None``: zeros, for an extent-only calibration)."""
    shares = np.asarray(shares, float).reshape(-1, 2)
    densities = np.zeros_like(shares) if densities is None else np.asarray(densities, float).reshape(-1, 2)
    return np.array([severity_score(r, l, dr, dl, calibration) for (r, l), (dr, dl) in zip(shares, densities)])


def _lad(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-absolute-deviations coefficients of ``y ~ x`` (no intercept column added) by linear programming."""
    from scipy.optimize import linprog

    n, k = x.shape
    # variables: w (free, k), u+ (n), u- (n); minimise sum(u+ + u-) subject to x w + u+ - u- = y
    cost = np.r_[np.zeros(k), np.ones(2 * n)]
    res = linprog(cost, A_eq=np.c_[x, np.eye(n), -np.eye(n)], b_eq=y,
                  bounds=[(None, None)] * k + [(0, None)] * (2 * n), method="highs")
    if not res.success:  # degenerate data (e.g. no marked lung at all): fall back to least squares
        return np.linalg.lstsq(x, y, rcond=None)[0]
    return res.x[:k]


def fit_calibration(shares, densities, experts, powers=POWERS) -> ScoreCalibration:
    """The :class:`ScoreCalibration` with the least mean absolute error on these films (``densities`` None: the
    extent-only form, density constant 0). Each lung the mask marks contributes ``extent * s**p + density * d +
    offset``; an unmarked lung contributes 0, as in the library."""
    shares = np.clip(np.asarray(shares, float).reshape(-1, 2), 0, 1)
    y = np.asarray(experts, float)
    marked = shares > 0
    d = None if densities is None else np.asarray(densities, float).reshape(-1, 2)
    best: tuple[float, ScoreCalibration] | None = None
    for p in powers:
        cols = [np.where(marked, shares**p, 0).sum(1)]
        if d is not None:
            cols.append(np.where(marked, d, 0).sum(1))
        cols.append(marked.sum(1).astype(float))
        w = _lad(np.stack(cols, 1), y)
        cal = ScoreCalibration(extent=float(w[0]), power=float(p), density=float(w[1]) if d is not None else 0.0,
                               offset=float(w[-1]))
        err = mae(scores_of(shares, d, cal), y)
        if best is None or err < best[0] - 1e-12:
            best = (err, cal)
    assert best is not None
    return best[1]


def features(shares, densities=None) -> np.ndarray:
    """(N, 4) rows of right share, left share, right density, left density: what :func:`cross_validate` splits."""
    shares = np.asarray(shares, float).reshape(-1, 2)
    return np.c_[shares, np.zeros_like(shares) if densities is None else np.asarray(densities, float).reshape(-1, 2)]


def fit_rows(rows, experts, use_density: bool = True) -> ScoreCalibration:
    """:func:`fit_calibration` on :func:`features` rows (for :func:`cross_validate`)."""
    return fit_calibration(rows[:, :2], rows[:, 2:] if use_density else None, experts)


def score_rows(rows, calibration: ScoreCalibration) -> np.ndarray:
    """:func:`scores_of` on :func:`features` rows (for :func:`cross_validate`)."""
    return scores_of(rows[:, :2], rows[:, 2:], calibration)


# -- other calibrations, for comparison (benchmarks/severity.py) -------------------------------------------------------------------------
def fit_isotonic(shares, experts) -> tuple[np.ndarray, np.ndarray]:
    """A monotone (isotonic, least squares) map from the summed share to the score: its knots (x, y)."""
    from scipy.optimize import isotonic_regression

    x = np.asarray(shares, float).sum(1)
    order = np.argsort(x, kind="mergesort")
    return x[order], isotonic_regression(np.asarray(experts, float)[order]).x


def isotonic_of(shares, knots) -> np.ndarray:
    return np.interp(np.asarray(shares, float).sum(1), *knots)


def _grades(shares, power: float) -> np.ndarray:
    """Total grade with the thresholds moved: the usual bins applied to share ** power per lung."""
    return np.array([grade(r**power) + grade(l**power) for r, l in np.asarray(shares, float)])


def fit_threshold_power(shares, experts) -> float:
    """The power p (grade thresholds at (k/4) ** (1/p)) with the least mean absolute error of the total grade."""
    losses = [mae(_grades(shares, p), experts) for p in GRADE_POWERS]
    return float(GRADE_POWERS[int(np.argmin(losses))])
