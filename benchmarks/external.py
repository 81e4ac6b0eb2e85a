"""The COVID-19 claim on films from outside COVID-QU-Ex: ROC AUC of P(COVID-19) and the share of films flagged.

    python benchmarks/external.py [--external ../shared/external] [--lung-model L --infection-model I]
        [--backend auto|torch|onnx] [--per-film] [--out docs/external-NAME.md]

REPORT ONLY, NEVER TUNE: this folder measures whether the image-level claim transfers to other hospitals. Do not
choose models, thresholds, augmentation, epochs or anything else by these figures (nor train on these films, whose
licences allow evaluation here only: see the folder's README.md). Choose on COVID-QU-Ex Val, then run this once and
report what it shows, whatever it shows.

Reads ``manifest.csv`` (name, group, finding, view, width, height, license, patientid) of the external folder; each
film is ``DIR/GROUP/NAME.png`` at its own size, read with ``cxrseg.data.io.read_xray`` and segmented by the
two-stage pipeline. Groups: COVID-19 (finding COVID-19), SARS (also a coronavirus pneumonia, so reported apart as
well as with the other negatives), normal (finding "No Finding") and other pneumonia (every other negative).

Prints: ROC AUC of ``infection_probability`` (the film's P(COVID-19)) for COVID-19 vs not, and with SARS left out;
per group, the share of films flagged (any COVID-19 infection in the final, gated mask), the mean P(COVID-19), and
the mean extent of opacity in the lungs (% of lung) from the segmentation before the image-level veto. That last one
comes from the Segmentation's own field when the library has one (``opacity_pct``, or an ``opacity`` mask);
otherwise this script recomputes it at the model size (stage 2 thresholded, cleaned, no veto) and says so.
--per-film adds one row per film.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from cxrseg.data.io import IMAGE_SUFFIXES, read_xray
from cxrseg.evaluation.benchmark_io import add_model_options, emit, listed_rows, pipeline_from_options
from cxrseg.evaluation.metrics import roc_auc
from cxrseg.inference.pipeline import TwoStagePipeline, resize_batch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXTERNAL = REPO.parent / "shared" / "external"
GROUPS = ("COVID-19", "other pneumonia", "SARS", "normal")


class Film:
    """One manifest row and, once run, what the pipeline said about it.

    (A plain class, not a dataclass: the tests load this script by file name, outside ``sys.modules``.)
    """

    def __init__(self, name: str, path: Path, group: str, finding: str, view: str) -> None:
        self.name, self.path, self.group, self.finding, self.view = name, path, group, finding, view
        self.covid = group == "COVID-19"  # group: one of GROUPS
        self.probability: float | None = None  # P(COVID-19), the stage-2 head's infection_probability
        self.flagged = False  # any pixel in the final, gated COVID-19 infection mask
        self.infected_pct = 0.0  # gated infection, % of lung
        self.opacity_pct: float | None = None  # before the veto, % of lung
        self.size: tuple[int, int] = (0, 0)  # (height, width)


def group_of(group: str, finding: str) -> str:
    """The report group of a manifest row (folder group 'covid'/'negative' and its finding)."""
    f = finding.strip().lower()
    if group.strip().lower() == "covid" or f in ("covid-19", "covid19"):
        return "COVID-19"
    if f == "sars":
        return "SARS"
    if f in ("no finding", "normal"):
        return "normal"
    return "other pneumonia"


def read_manifest(folder: Path) -> list[Film]:
    """The films the manifest lists, each found as GROUP/NAME.<image suffix>; a missing film is an error."""
    manifest = folder / "manifest.csv"
    films = []
    for row in listed_rows(manifest, "--external at the external films' folder"):
        base = folder / row["group"] / row["name"]
        candidates = [base.with_name(base.name + s) for s in (".png", *sorted(IMAGE_SUFFIXES))] + [base]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise SystemExit(f"{base}.png: listed in {manifest} but not found")
        g = group_of(row["group"], row["finding"])
        films.append(Film(row["name"], path, g, row["finding"], row.get("view", "")))
    return films


def library_opacity_pct(seg) -> float | None:
    """Opacity extent (% of lung, before the veto) from the Segmentation, if the library provides it.

    Looked for, in order: ``opacity_figures.infected_pct``, an ``opacity_pct`` on the Segmentation or its
    figures, an ``opacity`` bool mask (as % of ``lung``); None when there is none of these.
    """
    candidates = (
        getattr(getattr(seg, "opacity_figures", None), "infected_pct", None),
        getattr(seg, "opacity_pct", None),
        getattr(getattr(seg, "figures", None), "opacity_pct", None),
    )
    for v in candidates:
        if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool):
            return float(v)
    mask = getattr(seg, "opacity", None)
    if isinstance(mask, np.ndarray) and mask.shape == seg.lung.shape:
        area = int(seg.lung.sum())
        return 100.0 * float((mask.astype(bool) & seg.lung).sum()) / area if area else 0.0
    return None


def recomputed_opacity_pct(pipe: TwoStagePipeline, pixels: np.ndarray) -> float | None:
    """Fallback for a library without an opacity field: stage 2's mask before the veto, at the model size.

    Uses the pipeline's own stage calls (stage 1, stage 2's input, threshold, clean-up); None if they are not there.
    """
    try:
        from cxrseg.inference.postprocess import clean_infection

        small = resize_batch(pixels[None].astype(np.float32), (pipe.size, pipe.size))
        _, lung = pipe.lungs(small)
        prob, _, _ = pipe._stage2(small, lung)
        kept = clean_infection(prob[0] > pipe.infection_threshold, lung[0], pipe.min_area)
        area = int(lung[0].sum())
        return 100.0 * float((kept & lung[0]).sum()) / area if area else 0.0
    except Exception:  # noqa: BLE001 - a changed private API: report n/a rather than fail the benchmark
        return None


def run(pipe: TwoStagePipeline, films: list[Film], progress: bool = True) -> str:
    """Segment each film in place; returns where the opacity figures came from."""
    sources = set()
    for k, film in enumerate(films):
        x = read_xray(film.path)
        seg = pipe.predict([x])[0]
        film.size = x.size
        film.probability = seg.infection_probability
        film.flagged = bool(seg.infection.any())
        film.infected_pct = float(seg.figures.infected_pct)
        film.opacity_pct = library_opacity_pct(seg)
        if film.opacity_pct is not None:
            sources.add("library")
        else:
            film.opacity_pct = recomputed_opacity_pct(pipe, x.pixels)
            if film.opacity_pct is not None:
                sources.add("recomputed")
        if progress:
            p = "n/a" if film.probability is None else f"{film.probability:.3f}"
            print(f"[{k + 1}/{len(films)}] {film.path.parent.name}/{film.path.name} ({film.group}): P {p}, "
                  f"flagged {film.flagged}", file=sys.stderr, flush=True)
    if sources == {"library"}:
        return "from the Segmentation's opacity field (the segmentation before the image-level veto)"
    if "recomputed" in sources:
        return ("recomputed by this script (the library's Segmentation has no opacity field yet): stage 2's mask "
                "before the veto, thresholded and cleaned at the model size, as % of the model-size lung mask")
    return "not available"


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def _mean(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def summary(films: list[Film]) -> dict:
    """AUCs and per-group figures (probabilities that are None count as 0 for the AUC: no head, no claim)."""
    p = [0.0 if f.probability is None else f.probability for f in films]
    y = [f.covid for f in films]
    no_sars = [i for i, f in enumerate(films) if f.group != "SARS"]
    groups = {}
    for g in (*GROUPS, "all without COVID-19"):
        members = [f for f in films if (f.group == g if g in GROUPS else not f.covid)]
        groups[g] = {
            "films": len(members),
            "flagged": sum(f.flagged for f in members),
            "flagged_pct": 100.0 * sum(f.flagged for f in members) / len(members) if members else None,
            "probability": _mean([f.probability for f in members]),
            "infected_pct": _mean([f.infected_pct for f in members]),
            "opacity_pct": _mean([f.opacity_pct for f in members]),
        }
    return {
        "auc": roc_auc(p, y),
        "auc_without_sars": roc_auc([p[i] for i in no_sars], [y[i] for i in no_sars]),
        "groups": groups,
    }


def report(films: list[Film], s: dict, per_film: bool) -> str:
    lines = [
        "| figure | value |",
        "|---|---:|",
        f"| ROC AUC of P(COVID-19), COVID-19 vs not ({sum(f.covid for f in films)} vs "
        f"{sum(not f.covid for f in films)} films) "
        f"| {_fmt(s['auc'], '.3f')} |",
        f"| ROC AUC of P(COVID-19), SARS left out ({sum(f.covid for f in films)} vs "
        f"{sum(not f.covid and f.group != 'SARS' for f in films)} films) | {_fmt(s['auc_without_sars'], '.3f')} |",
        "",
        "| group | films | flagged (any COVID-19 infection) | flagged % | mean P(COVID-19) "
        "| mean infected % of lung (gated) | mean opacity % of lung (before the veto) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g, r in s["groups"].items():
        name = f"**{g}**" if g == "all without COVID-19" else g
        lines.append(
            f"| {name} | {r['films']} | {r['flagged']} | {_fmt(r['flagged_pct'], '.1f')} "
            f"| {_fmt(r['probability'], '.3f')} "
            f"| {_fmt(r['infected_pct'], '.1f')} | {_fmt(r['opacity_pct'], '.1f')} |"
        )
    if per_film:
        lines += [
            "",
            "| film | group | finding | view | size (WxH) | P(COVID-19) | flagged | infected % | opacity % |",
            "|---|---|---|---|---|---:|:---:|---:|---:|",
        ]
        for f in sorted(films, key=lambda f: (GROUPS.index(f.group), f.finding, f.name)):
            lines.append(
                f"| {f.path.parent.name}/{f.path.name} | {f.group} | {f.finding} | {f.view} | {f.size[1]}x{f.size[0]} "
                f"| {_fmt(f.probability, '.3f')} | {'yes' if f.flagged else 'no'} | {f.infected_pct:.1f} "
                f"| {_fmt(f.opacity_pct, '.1f')} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--external", type=Path, default=DEFAULT_EXTERNAL,
                    help="folder with manifest.csv (default ../shared/external)")
    add_model_options(ap)
    ap.add_argument("--per-film", action="store_true", help="also a table with one row per film")
    ap.add_argument("--out", type=Path, default=None, help="also write the output here (Markdown)")
    a = ap.parse_args(argv)

    films = read_manifest(a.external)
    pipe, models = pipeline_from_options(a)
    t = time.perf_counter()
    opacity_source = run(pipe, films)
    s = summary(films)
    args = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/external.py " + " ".join(shlex.quote(x) for x in args)
    head = [
        f"External films ({a.external}): {len(films)} films from outside COVID-QU-Ex, "
        + ", ".join(f"{g} {s['groups'][g]['films']}" for g in GROUPS) + ".",
        "",
        "**Reported, never tuned on**: nothing was chosen by these figures. A film is flagged when the final (gated) "
        "COVID-19 infection mask has any pixel; the AUC ranks the films by P(COVID-19) (`infection_probability`).",
        "",
        f"Models: {models}; backend {pipe.backend_name}; image threshold {pipe.image_threshold}; "
        f"{time.perf_counter() - t:.0f} s.",
        "",
        f"Opacity extent: {opacity_source}.",
        "",
        f"Command: `{command}`",
        "",
        "",
    ]
    return emit("\n".join(head) + report(films, s, a.per_film), a.out)


if __name__ == "__main__":
    main()
