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

This script runs the pipeline on the films; ``cxrseg.evaluation.severity_report`` reads them and writes the report,
the plots and the card's block.

Never train or tune the networks on these films: they are for evaluation and for these few constants only.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from cxrseg.data.io import XRay, read_xray
from cxrseg.data.shifts import BENCHMARK_SHIFTS
from cxrseg.evaluation.benchmark_io import add_model_options, pipeline_from_options
from cxrseg.evaluation.severity_report import SWEEP, Film, analyse, card_block, plots, read_scores, update_card
from cxrseg.inference.pipeline import COVID_STATUSES, TwoStagePipeline, resize_batch
from cxrseg.inference.postprocess import clean_infection, split_lungs
from cxrseg.inference.severity import CALIBRATED_FOR
from cxrseg.models.store import shipped_weights, weights_digest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCORES = REPO.parent / "shared" / "severity"


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
    add_model_options(ap)
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

    if args.update_card and (args.shift or args.accurate or args.crop_borders):
        raise SystemExit("--update-card records the default path's unshifted figures; run it without --shift, "
                         "--accurate and --crop-borders")
    films = read_scores(args.scores)
    pipe, models = pipeline_from_options(args, batch_size=1, covid_status=args.covid_status)
    start = time.time()
    run(pipe, films, args.covid_status, progress=not args.quiet, shift=args.shift)
    found = match_covidqu(films, args.covidqu) if args.covidqu else 0
    key = models_key(pipe, args.lung_model, args.infection_model) + ("; accurate mode" if args.accurate else "")
    text, figs = analyse(films, args.covid_status, pipe.image_threshold, calibrated=key == CALIBRATED_FOR)
    header = [
        f"command: python benchmarks/severity.py {shlex.join(argv if argv is not None else sys.argv[1:])}",
        f"models: {models} (pixel threshold {pipe.infection_threshold}, image threshold {pipe.image_threshold}, "
        f"min area {pipe.min_area})",
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
        block = card_block(figs["figures"], args.covid_status, header[0].removeprefix("command: "),
                           key == CALIBRATED_FOR)
        print(f"updated {update_card(args.infection_model or shipped_weights('infection'), block)}")
    if not args.no_plots:
        name = "shipped models" if not (args.lung_model or args.infection_model) else "candidate models"
        for p in plots(figs, args.out, f"{len(films)} films, {name}"):
            print(f"wrote {p}")
    return report


if __name__ == "__main__":
    main()
