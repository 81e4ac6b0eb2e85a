"""The severity grade and score against radiologists: agreement, where it differs, and the score's calibration.

    python benchmarks/severity.py [--scores ../shared/severity] [--covid-status positive|unknown]
        [--lung-model L --infection-model I] [--backend auto|torch|onnx] [--out docs]
        [--covidqu ../shared/data/COVID-QU-Ex] [--no-plots]

Reads ``scores.csv`` (file, geographic_mean, opacity_mean, patientid, view, license) of a folder of scored films
(``images/FILE``, each at its own size), segments each film with the two-stage pipeline (``--covid-status positive``
by default: the films are of confirmed COVID-19 patients, so the image-level veto is skipped) and compares against
the experts' mean geographic extent (0-8, each lung 0-4 by the share involved, summed):

* **agreement**: mean absolute error, mean bias (ours - experts) and Pearson r of the total grade (0-8) and of the
  severity score (``SeverityFigures.severity_score``), as the library computes them; and of the severity score
  *cross-validated by patient*: leave one patient out, refit the score's four constants on the other patients' films
  (the same fit as below), score the left-out patient's films. Those are the figures to quote: the shipped
  constants were fitted on these very films. 95% intervals: percentile bootstrap over patients (2,000 resamples).
* **where the disagreement comes from** (docs/severity.md): the veto (gated 'unknown' figures against 'positive',
  from the same run), the binning (the grade against the unbinned 4 x share), the grade thresholds (refitted,
  cross-validated), the lung masks (shares over each lung's convex hull, i.e. with the medial notch of the heart
  and the basal concavity counted as lung), the masks' extent (stage 2's pixel threshold swept at the model size),
  and with ``--covidqu`` the ground-truth masks of the films that are also in COVID-QU-Ex (found by image content).
* **what the lungs' density adds**: the score without its density term (extent only, refitted), the density alone,
  and another brightness measure (the lung's raw mean grey level) in its place, all cross-validated.
* **calibration**: the severity score's four constants fitted on all films (``cxrseg.evaluation.severity_agreement``),
  to paste into ``src/cxrseg/inference/severity.py`` when a model changes, beside the ones it has.
* the **per-film table**; and, unless ``--no-plots``, a scatter of ours against the experts and a Bland-Altman plot
  (PNG) written to ``--out`` as ``severity-scatter.png`` and ``severity-bland-altman.png``.

Never train or tune the networks on these films: they are for evaluation and for these few constants only.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from cxrseg._atomic import atomic_write_text
from cxrseg.data.io import XRay, read_xray
from cxrseg.data.shifts import BENCHMARK_SHIFTS
from cxrseg.evaluation.agreement_plots import agreement_plots
from cxrseg.evaluation.severity_agreement import (  # noqa: F401 - mae, bias, pearson, _grades: the tests reach them here
    _grades, agreement, bias, bootstrap, cross_validate, features, fit_calibration, fit_isotonic, fit_rows,
    fit_threshold_power, isotonic_of, mae, pearson, score_rows)
from cxrseg.inference.pipeline import COVID_STATUSES, TwoStagePipeline, resize_batch
from cxrseg.inference.postprocess import clean_infection, split_lungs
from cxrseg.inference.severity import CALIBRATED_FOR, SCORE, ScoreCalibration, grade
from cxrseg.models.store import card_path, describe_weights, read_card, shipped_weights, weights_digest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCORES = REPO.parent / "shared" / "severity"
SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # stage 2 pixel thresholds for the extent sweep


class Film:
    """One scores.csv row and, once run, what the pipeline said about it (a plain class: the tests load this
    script by file name, outside ``sys.modules``, where dataclasses cannot resolve their module)."""

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
    if not table.is_file():
        raise SystemExit(f"{table}: not found (point --scores at the scored films' folder)")
    films = []
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            path = folder / "images" / row["file"]
            if not path.is_file():
                raise SystemExit(f"{path}: listed in {table} but not found")
            films.append(Film(row["file"], path, float(row["geographic_mean"]), str(row["patientid"]),
                              row.get("view", "")))
    if not films:
        raise SystemExit(f"{table}: no films listed")
    return films


# -- running the pipeline -----------------------------------------------------------------------------------------
def _hull_area(mask: np.ndarray) -> int:
    """Pixels in the convex hull of a bool mask (the mask itself when it has under 3 points)."""
    from matplotlib.path import Path as Polygon
    from scipy.spatial import ConvexHull

    ys, xs = np.nonzero(mask)
    if len(ys) < 3:
        return int(mask.sum())
    pts = np.c_[xs, ys].astype(float)
    try:
        vertices = pts[ConvexHull(pts).vertices]
    except Exception:  # noqa: BLE001 - collinear points: no area to add
        return int(mask.sum())
    gy, gx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    inside = Polygon(vertices).contains_points(np.c_[gx.ravel(), gy.ravel()], radius=0.5).reshape(mask.shape)
    return int((inside | mask).sum())


def model_size_figures(pipe: TwoStagePipeline, pixels: np.ndarray, film: Film) -> None:
    """At the model size: each lung's area against its convex hull, and the shares for each pixel threshold."""
    small = resize_batch(pixels[None].astype(np.float32), (pipe.size, pipe.size))
    out = pipe.run_model_size(small, "positive")
    lung, prob = out.lung[0], out.infection_prob[0]
    right, left = split_lungs(lung)
    ratios = [m.sum() / max(_hull_area(m), 1) for m in (right, left)]
    film.hull = (film.opacity[0] * ratios[0], film.opacity[1] * ratios[1])
    for t in SWEEP:
        kept = clean_infection(prob > t, lung, pipe.min_area)
        film.sweep[t] = tuple(float((kept & m).sum()) / m.sum() if m.any() else 0.0 for m in (right, left))
    film.soft = tuple(float(prob[m].mean()) if m.any() else 0.0 for m in (right, left))
    film.brightness = tuple(float(small[0][m].mean()) if m.any() else 0.0 for m in (right, left))


def run(pipe: TwoStagePipeline, films: list[Film], status: str, analyse: bool = True, progress: bool = True,
        shift: str | None = None) -> None:
    """Segment each film in place (figures for ``status``; the opacity before any veto as well), with one of
    :data:`BENCHMARK_SHIFTS` applied to every film first when ``shift`` names it."""
    for k, film in enumerate(films):
        x = read_xray(film.path)
        if shift:
            x = XRay(BENCHMARK_SHIFTS[shift](x.pixels, np.random.default_rng(k)).astype(np.float32), x.source)
        seg = pipe.predict([x], covid_status=status)[0]
        f, o = seg.figures, seg.opacity_figures
        film.right, film.left = f.right_infected_pct / 100, f.left_infected_pct / 100
        film.right_grade, film.left_grade, film.total_grade = f.right_grade, f.left_grade, f.total_grade
        film.score = float(f.severity_score)
        film.opacity = (o.right_infected_pct / 100, o.left_infected_pct / 100)
        film.density = (f.right_lung_density, f.left_lung_density)
        film.probability = seg.infection_probability
        film.vetoed_if_unknown = (film.probability is not None and pipe.image_threshold is not None
                                  and film.probability < pipe.image_threshold)
        if analyse:
            model_size_figures(pipe, x.pixels, film)
        if progress:
            print(f"[{k + 1}/{len(films)}] {film.name}: experts {film.expert:.1f}, grade {film.total_grade}, "
                  f"score {film.score:.1f}", file=sys.stderr, flush=True)


def match_covidqu(films: list[Film], root: Path, min_corr: float = 0.97, min_gap: float = 0.02) -> int:
    """Find each film among COVID-QU-Ex's COVID-19 images by content (correlation of 64x64 thumbnails; a match
    needs ``min_corr`` and a lead of ``min_gap`` over the next best image) and read its ground-truth shares."""
    from cxrseg.data.io import read_mask

    base = root / "Infection Segmentation Data"
    images = sorted(base.glob("*/COVID-19/images/*.png"))
    if not images:
        raise SystemExit(f"{base}: no */COVID-19/images/*.png (point --covidqu at the COVID-QU-Ex folder)")

    def thumb(path: Path) -> np.ndarray:
        t = resize_batch(read_xray(path).pixels[None].astype(np.float32), (64, 64))[0].ravel()
        t = t - t.mean()
        return t / (np.linalg.norm(t) + 1e-9)

    ours = np.stack([thumb(f.path) for f in films])
    theirs = np.stack([thumb(p) for p in images])
    corr = ours @ theirs.T
    found = 0
    for film, c in zip(films, corr):
        order = np.argsort(c)[::-1]
        if c[order[0]] < min_corr or c[order[0]] - c[order[1]] < min_gap:
            continue
        img = images[order[0]]
        lung = read_mask(img.parent.parent / "lung masks" / img.name)
        inf = read_mask(img.parent.parent / "infection masks" / img.name)
        right, left = split_lungs(lung)
        film.truth = tuple(float((inf & m).sum()) / m.sum() if m.any() else 0.0 for m in (right, left))
        film.truth_name = f"{img.parent.parent.parent.name}/{img.name}"
        found += 1
    return found


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
    add("density", f"lung density alone (mean of the two lungs; r with the share {pearson(dens.mean(1), shares.sum(1)):.2f}"
        "), mapped by least squares (cv)", cross_validate(dens.mean(1)[:, None], y, groups, _line, _on_line))
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
              "| opacity % R / L | P(COVID-19) | vetoed if unknown | COVID-QU-Ex ground truth % R / L | density R / L |",
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
    return sum(0 if s <= 0 else max(1, int(round(cal.lung_score(s, d)))) for s, d in ((row[0], row[2]), (row[1], row[3])))


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


def _sha(path: Path | None, stage: str) -> str:
    return weights_digest(path or shipped_weights(stage))


def models_key(pipe: TwoStagePipeline, lung: Path | None, infection: Path | None) -> str:
    """What the score's constants depend on: both weights and stage 2's decision (as ``CALIBRATED_FOR``)."""
    return (f"lung sha256 {_sha(lung, 'lung')}, infection sha256 {_sha(infection, 'infection')}, pixel threshold "
            f"{pipe.infection_threshold:g}, min area {pipe.min_area}")


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scores", type=Path, default=DEFAULT_SCORES, help="folder with scores.csv and images/")
    ap.add_argument("--covid-status", default="positive", choices=COVID_STATUSES,
                    help="'positive' (default: confirmed patients, no veto) or 'unknown'")
    ap.add_argument("--lung-model", type=Path, default=None, help="stage-1 weights (default: shipped)")
    ap.add_argument("--infection-model", type=Path, default=None, help="stage-2 weights (default: shipped)")
    ap.add_argument("--backend", default="auto", help="auto, torch or onnx")
    ap.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the two PNGs (default docs/)")
    ap.add_argument("--covidqu", type=Path, default=None,
                    help="COVID-QU-Ex folder: compare the films also in it with their ground-truth masks")
    ap.add_argument("--no-plots", action="store_true", help="write no PNG")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--shift", default=None, choices=sorted(BENCHMARK_SHIFTS),
                    help="apply this acquisition shift (benchmarks/shift.py's) to every film first")
    ap.add_argument("--update-card", action="store_true",
                    help="store the agreement figures in the infection model's card (cxrseg info shows them)")
    args = ap.parse_args(argv)

    films = read_scores(args.scores)
    pipe = TwoStagePipeline.from_pretrained(args.lung_model, args.infection_model, backend=args.backend,
                                            batch_size=1, covid_status=args.covid_status)
    start = time.time()
    if args.shift and args.update_card:
        raise SystemExit("--update-card records the unshifted figures; run it without --shift")
    run(pipe, films, args.covid_status, progress=not args.quiet, shift=args.shift)
    found = match_covidqu(films, args.covidqu) if args.covidqu else 0
    key = models_key(pipe, args.lung_model, args.infection_model)
    text, figs = analyse(films, args.covid_status, pipe.image_threshold, calibrated=key == CALIBRATED_FOR)
    header = [
        f"command: python benchmarks/severity.py {shlex.join(argv if argv is not None else sys.argv[1:])}",
        f"lung model: {describe_weights(args.lung_model, 'lung')}",
        f"infection model: {describe_weights(args.infection_model, 'infection')} (pixel threshold "
        f"{pipe.infection_threshold}, image threshold {pipe.image_threshold}, min area {pipe.min_area})",
        f"severity score calibrated for: {CALIBRATED_FOR}" + (" (these models)" if key == CALIBRATED_FOR else
                                                               f" (not these: {key})"),
        f"backend: {pipe.backend_name}; {len(films)} films in {time.time() - start:.0f} s"
        + (f"; every film shifted: {args.shift}" if args.shift else "")
        + (f"; {found} found in COVID-QU-Ex" if args.covidqu else ""),
        "",
    ]
    report = "\n".join(header) + text
    print(report)
    if args.update_card:
        weights = args.infection_model or shipped_weights("infection")
        card = read_card(weights)
        card["severity_agreement"] = card_block(figs["figures"], args.covid_status, header[0].removeprefix("command: "),
                                                key == CALIBRATED_FOR)
        atomic_write_text(card_path(weights), json.dumps(card, indent=2, default=str) + "\n")
        print(f"updated {card_path(weights)}")
    if not args.no_plots:
        name = "shipped models" if not (args.lung_model or args.infection_model) else "candidate models"
        for p in plots(figs, args.out, f"{len(films)} films, {name}"):
            print(f"wrote {p}")
    return report


if __name__ == "__main__":
    main()
