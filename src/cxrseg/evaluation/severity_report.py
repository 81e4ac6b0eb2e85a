"""The severity benchmark's report (``benchmarks/severity.py``): the scored films it reads, the Markdown it prints
(agreement with the experts, where the disagreement comes from, the calibration, the per-film table), the two
agreement plots and the ``severity_agreement`` block of the infection model's card.

It works on :class:`Film` objects the benchmark has already run through the pipeline; the figures themselves come
from :mod:`cxrseg.evaluation.severity_agreement`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxrseg._atomic import atomic_write_text
from cxrseg.evaluation.agreement_plots import agreement_plots
from cxrseg.evaluation.benchmark_io import listed_rows
from cxrseg.evaluation.severity_agreement import (
    _grades, agreement, bias, bootstrap, cross_validate, features, fit_calibration, fit_isotonic, fit_rows,
    fit_threshold_power, isotonic_of, mae, pearson, score_rows)
from cxrseg.inference.severity import CALIBRATED_FOR, SCORE, ScoreCalibration, grade
from cxrseg.models.store import card_path, read_card

SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # stage 2 pixel thresholds for the extent sweep


class Film:
    """One scores.csv row and, once run, what the pipeline said about it (``benchmarks/severity.py`` fills it)."""

    def __init__(self, name: str, path: Path, expert: float, patient: str, view: str = "") -> None:
        self.name, self.path, self.expert, self.patient, self.view = name, path, expert, patient, view
        self.right = self.left = 0.0  # infected share per lung (0-1), figures of the status the run used
        self.right_grade = self.left_grade = self.total_grade = 0
        self.score = 0.0  # the library's severity_score
        self.opacity = (0.0, 0.0)  # shares before any veto
        self.density = (0.0, 0.0)  # each lung's density (percentile rank in the film, 0-1), as the library has it
        self.brightness = (0.0, 0.0)  # each lung's mean grey level (model size): a density candidate
        self.probability: float | None = None  # P(COVID-19)
        self.vetoed_if_unknown = False  # P below the image threshold: 'unknown' would count no infection
        self.hull = (0.0, 0.0)  # shares over each lung's convex hull (model size ratio applied)
        self.sweep: dict[float, tuple[float, float]] = {}  # pixel threshold -> shares at the model size
        self.soft = (0.0, 0.0)  # mean stage-2 probability inside each lung (model size; no threshold)
        self.cv_score: float | None = None  # severity score with constants fitted without this patient
        self.truth: tuple[float, float] | None = None  # COVID-QU-Ex ground-truth shares, when matched
        self.truth_name = ""


def read_scores(folder: Path) -> list[Film]:
    """The films scores.csv lists; a missing image is an error."""
    table = folder / "scores.csv"
    films = []
    for row in listed_rows(table, "--scores at the scored films' folder"):
        path = folder / "images" / row["file"]
        if not path.is_file():
            raise SystemExit(f"{path}: listed in {table} but not found")
        films.append(Film(row["file"], path, float(row["geographic_mean"]), str(row["patientid"]),
                          row.get("view", "")))
    if not films:
        raise SystemExit(f"{table}: no films listed")
    return films


# -- the report ---------------------------------------------------------------------------------------------------
def _row(label: str, ours, experts, extra: str = "") -> str:
    a = agreement(ours, experts)
    return f"| {label} | {a['mae']:.2f} | {a['bias']:+.2f} | {a['r']:.2f} |{extra}"


def _ci(ci: dict) -> str:
    return (f" {ci['mae'][0]:.2f}-{ci['mae'][1]:.2f} | {ci['bias'][0]:+.2f} to {ci['bias'][1]:+.2f} "
            f"| {ci['r'][0]:.2f}-{ci['r'][1]:.2f} |")


def analyse(films: list[Film], status: str, image_threshold: float | None,
            calibrated: bool = False) -> tuple[str, dict]:
    """The report's Markdown and the figures the plots need (``calibrated``: the library's constants were fitted
    with these models)."""
    y = np.array([f.expert for f in films])
    groups = [f.patient for f in films]
    shares = np.array([[f.right, f.left] for f in films])
    grades = np.array([f.total_grade for f in films])
    score = np.array([f.score for f in films])
    dens = np.array([list(f.density) for f in films])
    rows = features(shares, dens)
    cv = cross_validate(rows, y, groups, fit_rows, score_rows)
    for f, v in zip(films, cv):
        f.cv_score = float(v)
    cal = fit_calibration(shares, dens, y)
    n_pat = len(set(groups))
    lines = [
        f"{len(films)} films of {n_pat} patients; experts' mean geographic extent: mean {y.mean():.2f}, "
        f"range {y.min():.1f}-{y.max():.1f}; covid_status '{status}'.",
        "",
        "| ours vs the experts' mean extent (0-8) | MAE | bias (ours - experts) | Pearson r "
        "| 95% CI MAE | 95% CI bias | 95% CI r |",
        "|---|---:|---:|---:|---:|---:|---:|",
        _row("total grade (as computed)", grades, y, _ci(bootstrap(grades, y, groups))),
        _row("severity score (as computed: constants "
             + ("fitted on these films with these models)" if calibrated else "fitted for other models)"), score, y,
             _ci(bootstrap(score, y, groups))),
        _row("**severity score, cross-validated** (leave one patient out)", cv, y, _ci(bootstrap(cv, y, groups))),
        _row("4 x share, summed (no calibration, no bins)", 4 * shares.sum(1), y, " | | |"),
        "",
        f"Calibration fitted on all {len(films)} films: SCORE = {_cal(cal)} "
        f"(severity.py has {_cal(SCORE)}, fitted for "
        + ("these models" if calibrated else f"other models: {CALIBRATED_FOR}; paste these in when these ship") + ").",
    ]

    err = np.abs(cv - y)
    worst = np.argsort(err)[::-1][:3]
    rest = np.setdiff1d(np.arange(len(films)), worst)
    lines += ["", "Largest errors of the cross-validated score: " + "; ".join(
        f"{films[i].name} (experts {y[i]:.1f}, score {cv[i]:.1f})" for i in worst)
        + f". These {len(worst)} films carry {100 * err[worst].sum() / max(err.sum(), 1e-9):.0f}% of the absolute "
        "error; "
        f"without them MAE {mae(cv[rest], y[rest]):.2f}, bias {bias(cv[rest], y[rest]):+.2f}, "
        f"r {pearson(cv[rest], y[rest]):.2f} (for scale only: leaving films out after the fact flatters)."]

    # where the disagreement comes from
    opa = np.array([list(f.opacity) for f in films])
    vetoed = np.array([f.vetoed_if_unknown for f in films])
    gated = np.where(vetoed, 0, np.array([grade(r) + grade(l) for r, l in opa]))
    positive = np.array([grade(r) + grade(l) for r, l in opa])
    lines += ["", "Where it differs (each row: MAE | bias | r against the experts; 'cv': leave one patient out):", "",
              "| source | figures | MAE | bias | r |", "|---|---|---:|---:|---:|"]

    def add(source: str, label: str, ours) -> None:
        a = agreement(ours, y)
        lines.append(f"| {source} | {label} | {a['mae']:.2f} | {a['bias']:+.2f} | {a['r']:.2f} |")

    add("veto", "total grade, 'positive' (no veto)", positive)
    if image_threshold is not None:
        add("veto", f"total grade, 'unknown' ({int(vetoed.sum())} films vetoed at P < {image_threshold}; their "
            f"experts' mean {y[vetoed].mean() if vetoed.any() else float('nan'):.1f})", gated)
    add("bins", "4 x share per lung, summed (the grade without its bins)", 4 * shares.sum(1))
    add("bins", f"total grade - 4 x share: mean {np.mean(grades - 4 * shares.sum(1)):+.2f}", grades)
    tp = cross_validate(shares, y, groups, fit_threshold_power, lambda s, p: _grades(s, p))
    add("thresholds", f"grade thresholds refitted (cv; on all films at (k/4)^(1/p), p = "
        f"{fit_threshold_power(shares, y):.2f})", tp)
    cal_grade = cross_validate(rows, y, groups, fit_rows, lambda r, c: np.array([_int_score(x, c) for x in r]))
    add("thresholds", "per-lung grade = calibrated lung score rounded, at least 1 with any infection (cv)", cal_grade)
    hull = np.array([list(f.hull) for f in films])
    if hull.any():
        ratio = np.mean([h / s for f in films for h, s in zip(f.hull, f.opacity) if s > 0])
        add("lung masks", f"4 x share over each lung's convex hull (lung = {100 * ratio:.0f}% of its hull)",
            4 * hull.sum(1))
        add("lung masks", "severity score over the convex hull (cv)",
            cross_validate(features(hull, dens), y, groups, fit_rows, score_rows))
    add("density", "severity score, cross-validated (as above: extent and density)", cv)
    extent_only = cross_validate(rows, y, groups, lambda r, e: fit_rows(r, e, use_density=False), score_rows)
    add("density", "the same form without the density term (extent only, refitted, cv)", extent_only)
    add("density", "lung density alone (mean of the two lungs; r with the share "
        f"{pearson(dens.mean(1), shares.sum(1)):.2f}), mapped by least squares (cv)",
        cross_validate(dens.mean(1)[:, None], y, groups, _line, _on_line))
    bright = np.array([list(f.brightness) for f in films])
    if bright.any():
        add("density", "the lungs' raw mean grey level in place of the density (model size, cv)",
            cross_validate(features(shares, bright), y, groups, fit_rows, score_rows))
    full = (shares >= 0.9).all(1)
    if full.any():
        lines.append(f"| extent | saturation: {int(full.sum())} films with both lungs at least 90% marked; the experts "
                     f"scored them {y[full].min():.1f}-{y[full].max():.1f} (mean {y[full].mean():.1f}, SD "
                     f"{y[full].std():.1f}) | | | |")
    add("extent", "isotonic map of the summed share instead of the calibrated curve, no density "
        "(cv; one knot per film)",
        cross_validate(shares, y, groups, fit_isotonic, isotonic_of))
    if films[0].sweep:
        for t in SWEEP:
            sw = np.array([list(f.sweep[t]) for f in films])
            add("extent", f"4 x share at pixel threshold {t} (model size)", 4 * sw.sum(1))
        for t in SWEEP:
            sw = np.array([list(f.sweep[t]) for f in films])
            add("extent", f"severity score at pixel threshold {t} (model size, cv)",
                cross_validate(features(sw, dens), y, groups, fit_rows, score_rows))
        soft = np.array([list(f.soft) for f in films])
        add("extent", "4 x mean probability in each lung, no threshold (model size)", 4 * soft.sum(1))
        add("extent", "severity score of the mean probability (model size, cv)",
            cross_validate(features(soft, dens), y, groups, fit_rows, score_rows))
    matched = [i for i, f in enumerate(films) if f.truth is not None]
    if matched:
        yt = y[matched]
        truth = np.array([list(films[i].truth) for i in matched])
        mine = np.array([[films[i].right, films[i].left] for i in matched])
        lines.append(f"| ground truth | {len(matched)} films also in COVID-QU-Ex: their ground-truth masks' total "
                     f"grade | {mae(_grades(truth, 1), yt):.2f} | {bias(_grades(truth, 1), yt):+.2f} "
                     f"| {pearson(_grades(truth, 1), yt):.2f} |")
        lines.append(f"| ground truth | the same films: ground truth's 4 x share | {mae(4 * truth.sum(1), yt):.2f} "
                     f"| {bias(4 * truth.sum(1), yt):+.2f} | {pearson(4 * truth.sum(1), yt):.2f} |")
        lines.append(f"| ground truth | the same films: our total grade | {mae(grades[matched], yt):.2f} "
                     f"| {bias(grades[matched], yt):+.2f} | {pearson(grades[matched], yt):.2f} |")
        lines.append(f"| ground truth | the same films: our 4 x share against the ground truth's (not the experts') "
                     f"| {mae(4 * mine.sum(1), 4 * truth.sum(1)):.2f} | {bias(4 * mine.sum(1), 4 * truth.sum(1)):+.2f} "
                     f"| {pearson(4 * mine.sum(1), 4 * truth.sum(1)):.2f} |")
        gm = [groups[i] for i in matched]
        for label, sh in (("ground truth's", truth), ("our", mine)):
            v = cross_validate(features(sh, dens[matched]), yt, gm, fit_rows, score_rows)
            lines.append(f"| ground truth | the same films: severity score of {label} masks (cv within these films) "
                         f"| {mae(v, yt):.2f} | {bias(v, yt):+.2f} | {pearson(v, yt):.2f} |")
        full = (truth >= 0.999).sum()
        lines.append(f"| ground truth | lungs whose ground-truth mask covers the whole lung: {full} of "
                     f"{2 * len(matched)} | | | |")

    # per film
    lines += ["", "| film | patient | experts | grade R+L | total | score | score (cv) | infected % R / L "
              "| opacity % R / L | P(COVID-19) | vetoed if unknown | COVID-QU-Ex ground truth % R / L "
              "| density R / L |",
              "|---|---|---:|---|---:|---:|---:|---|---|---:|:---:|---|---|"]
    for f in sorted(films, key=lambda f: (f.expert, f.name)):
        p = "n/a" if f.probability is None else f"{f.probability:.3f}"
        gt = "" if f.truth is None else f"{100 * f.truth[0]:.0f} / {100 * f.truth[1]:.0f} ({f.truth_name})"
        lines.append(f"| {f.name} | {f.patient} | {f.expert:.1f} | {f.right_grade}+{f.left_grade} | {f.total_grade} "
                     f"| {f.score:.1f} | {f.cv_score:.1f} | {100 * f.right:.1f} / {100 * f.left:.1f} "
                     f"| {100 * f.opacity[0]:.1f} / {100 * f.opacity[1]:.1f} | {p} "
                     f"| {'yes' if f.vetoed_if_unknown else 'no'} | {gt} | {f.density[0]:.3f} / {f.density[1]:.3f} |")
    figures = {"films": len(films), "patients": n_pat, "cv": agreement(cv, y), "grade": agreement(grades, y)}
    return "\n".join(lines) + "\n", {"experts": y, "grade": grades, "cv": cv, "figures": figures}


def _int_score(row, cal: ScoreCalibration) -> int:
    """A total grade from the calibrated lung scores of one features row: each rounded, at least 1 for any infection."""
    return sum(0 if s <= 0 else max(1, int(round(cal.lung_score(s, d))))
               for s, d in ((row[0], row[2]), (row[1], row[3])))


def _cal(c: ScoreCalibration) -> str:
    return (f"ScoreCalibration(extent={c.extent:.2f}, power={c.power:.2f}, density={c.density:.2f}, "
            f"offset={c.offset:.2f})")


def _line(x, y):
    return np.polyfit(np.asarray(x, float)[:, 0], y, 1)


def _on_line(x, coef):
    return np.clip(np.polyval(coef, np.asarray(x, float)[:, 0]), 0, 8)


def plots(figs: dict, out: Path, title: str) -> list[Path]:
    """severity-scatter.png and severity-bland-altman.png in ``out``: the total grade and the cross-validated score."""
    series = [("total grade (integer)", figs["grade"], "#999999", "s"),
              ("severity score, cross-validated", figs["cv"], "#1f5fbf", "o")]
    return agreement_plots(figs["experts"], series, out, title)


def card_block(figures: dict, status: str, command: str, calibrated: bool) -> dict:
    """The card's ``severity_agreement`` block: where, how, and the figures (as ``cxrseg info`` prints them)."""
    cv, g = figures["cv"], figures["grade"]
    return {
        "split": f"{figures['films']} expert-scored films of {figures['patients']} COVID-19 patients "
                 "(geographic extent 0-8, mean of 3 radiologists; Cohen et al. 2020)",
        "pipeline": f"covid_status '{status}', severity score cross-validated by patient"
                    + ("" if calibrated else " (the library's constants were fitted for other models)"),
        "severity score MAE (cv)": round(cv["mae"], 2),
        "severity score bias (cv)": round(cv["bias"], 2),
        "severity score Pearson r (cv)": round(cv["r"], 2),
        "total grade MAE": round(g["mae"], 2),
        "total grade bias": round(g["bias"], 2),
        "total grade Pearson r": round(g["r"], 2),
        "command": command,
    }


def update_card(weights: Path, block: dict) -> Path:
    """Store ``block`` (:func:`card_block`) as the ``severity_agreement`` of the card beside ``weights``; its path."""
    card = read_card(weights)
    card["severity_agreement"] = block
    atomic_write_text(card_path(weights), json.dumps(card, indent=2, default=str) + "\n")
    return card_path(weights)
