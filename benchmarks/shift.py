"""What another hospital's look costs: the Val figures with each acquisition shift applied to the input X-ray.

    python benchmarks/shift.py --data ../shared/data/COVID-QU-Ex --split Val [--max-images 300]
        [--lung-model L --infection-model I] [--backend auto|torch|onnx] [--shifts "gamma 0.6,blur sigma 1.5"]
        [--out docs/shift-NAME.md]

Each shift of ``cxrseg.data.shifts.BENCHMARK_SHIFTS`` (one fixed strength: roughly the largest change seen between
hospitals) is applied to every 256x256 image of the split (float in [0, 1]); the two-stage pipeline runs on the
shifted image and is scored against the unchanged ground truth. Shifts that draw random numbers (noise, burnt-in
text) get a fixed seed per image (from its file name), so reruns and other models see the same shifted films.
The framing shifts (``FRAMING_SHIFTS``: a tighter field of view) move the anatomy, so their rows are scored against
the ground-truth masks framed the same way.

Prints one Markdown table, the unshifted row first, then one row per shift: lung Dice (per-image mean, all
images), infection Dice per-image mean over the COVID-19 images, the per-image mean over all images (the convention
of Tahir et al. 2021: an empty prediction on an empty mask scores 1), the share of negatives (Non-COVID + Normal)
given any infection, and the change of the COVID-19 Dice and of the negatives flagged against the unshifted row.
A row breaks the aim of issue #11 item 5 when its COVID-19 Dice falls by more than 0.05 or its negatives flagged
rise by more than 5 points. Progress goes to stderr, one line per shift; --out also writes the table to a file.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from cxrseg.data.covidqu import find_dataset, require_samples, stratified_subset
from cxrseg.data.dataset import load_arrays
from cxrseg.data.io import XRay
from cxrseg.data.shifts import BENCHMARK_SHIFTS, FRAMING_SHIFTS, framing
from cxrseg.evaluation.benchmark_io import add_model_options, emit, pipeline_from_options
from cxrseg.evaluation.metrics import Counts, dice_per_image, summarize
from cxrseg.inference.pipeline import TwoStagePipeline

UNSHIFTED = "none (unshifted)"
AIM_DICE_DROP = 0.05  # COVID-19 Dice may fall by at most this much under any one shift
AIM_FLAGGED_RISE = 5.0  # negatives flagged may rise by at most this many percentage points


def image_seed(name: str, seed: int = 0) -> int:
    """A fixed seed for one image: the same film gets the same noise/text whatever subset it is in."""
    return zlib.crc32(name.encode()) ^ seed


def apply_shift(shift, images: np.ndarray, names: list[str], seed: int = 0) -> np.ndarray:
    """``shift`` applied to each (H, W) float32 image in [0, 1] of ``images`` with its own fixed-seed generator."""
    if shift is None:
        return images
    out = np.empty_like(images)
    for i, (x, name) in enumerate(zip(images, names)):
        y = np.asarray(shift(x, np.random.default_rng(image_seed(name, seed))), np.float32)
        if y.shape != x.shape:
            raise ValueError(f"shift changed the image shape {x.shape} -> {y.shape}")
        out[i] = np.clip(y, 0.0, 1.0)
    return out


def figures(pipe: TwoStagePipeline, images: np.ndarray, lungs: np.ndarray, infections: np.ndarray,
            labels: list[str], names: list[str], batch_size: int = 16) -> dict[str, float | None]:
    """The figures of one row: run the pipeline on (N, H, W) float images, score against the bool masks."""
    lung_parts, inf_parts = [], []
    for start in range(0, len(images), batch_size):
        chunk = [XRay(images[i], names[i]) for i in range(start, min(start + batch_size, len(images)))]
        segs = pipe.predict(chunk)
        sl = slice(start, start + len(segs))
        lung_parts.append(Counts.of(np.stack([s.lung for s in segs]), lungs[sl]))
        inf_parts.append(Counts.of(np.stack([s.infection for s in segs]), infections[sl]))
    lung, inf = Counts.concat(lung_parts), Counts.concat(inf_parts)
    lab = np.array(labels)
    covid, negative = lab == "COVID-19", lab != "COVID-19"
    d = dice_per_image(inf)
    return {
        "lung_dice": summarize(lung)["dice_mean"],
        "covid_dice": float(d[covid].mean()) if covid.any() else None,
        "all_dice": float(d.mean()) if len(d) else None,
        "negatives_flagged_pct": float(100 * np.mean(~inf.pred_empty[negative])) if negative.any() else None,
    }


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _delta(v: float | None, base: float | None) -> float | None:
    return None if v is None or base is None else v - base


def breaks_aim(row: dict, base: dict) -> bool:
    dd = _delta(row["covid_dice"], base["covid_dice"])
    df = _delta(row["negatives_flagged_pct"], base["negatives_flagged_pct"])
    return (dd is not None and dd < -AIM_DICE_DROP) or (df is not None and df > AIM_FLAGGED_RISE)


def table(rows: list[tuple[str, dict]]) -> str:
    """Markdown table; the first row is the unshifted reference the deltas are taken against."""
    base = rows[0][1]
    lines = [
        "| shift | lung Dice | infection Dice, COVID-19 | infection Dice, all images (Tahir et al.) "
        "| negatives flagged % | Δ COVID-19 Dice | Δ negatives flagged (points) | aim |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for i, (name, r) in enumerate(rows):
        dd = _delta(r["covid_dice"], base["covid_dice"])
        df = _delta(r["negatives_flagged_pct"], base["negatives_flagged_pct"])
        aim = "" if i == 0 else ("**BREAKS**" if breaks_aim(r, base) else "ok")
        lines.append(
            f"| {name} | {_fmt(r['lung_dice'], '.4f')} | {_fmt(r['covid_dice'], '.4f')} | {_fmt(r['all_dice'], '.4f')} "
            f"| {_fmt(r['negatives_flagged_pct'], '.1f')} | {'' if i == 0 else _fmt(dd, '+.4f')} "
            f"| {'' if i == 0 else _fmt(df, '+.1f')} | {aim} |"
        )
    return "\n".join(lines)


def all_shifts() -> dict:
    """Every row's shift by name: the acquisition shifts, then the framing shifts (as image shifts)."""
    framings = {name: (lambda x, rng, z=z: framing(x, z)) for name, z in FRAMING_SHIFTS.items()}
    return {**BENCHMARK_SHIFTS, **framings}


def parse_shifts(text: str | None) -> dict:
    known = all_shifts()
    if not text:
        return known
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise SystemExit(f"unknown shift(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return {s: known[s] for s in wanted}


def framed(masks: np.ndarray, name: str) -> np.ndarray:
    """Ground-truth masks as the row's shift frames them: unchanged unless it is a framing shift."""
    if name not in FRAMING_SHIFTS:
        return masks
    return np.stack([framing(m, FRAMING_SHIFTS[name], nearest=True) for m in masks]) if len(masks) else masks


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the COVID-QU-Ex folder")
    ap.add_argument("--split", default="Val")
    add_model_options(ap)
    ap.add_argument("--max-images", type=int, default=None, help="a class-stratified subset of this many images")
    ap.add_argument("--shifts", default=None, help="comma-separated shift names (default: all)")
    ap.add_argument("--size", type=int, default=256, help="image size the split is read at (COVID-QU-Ex: 256)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="mixed into each image's fixed seed")
    ap.add_argument("--out", type=Path, default=None, help="also write the output here (Markdown)")
    a = ap.parse_args(argv)
    shifts = parse_shifts(a.shifts)

    index = find_dataset(a.data, part="infection", splits=(a.split,))
    all_samples = require_samples(index, (a.split,), "infection")
    samples = stratified_subset(all_samples, a.max_images, seed=0)
    bundle = load_arrays(samples, size=a.size)
    images = bundle.images.astype(np.float32) / 255.0
    pipe, models = pipeline_from_options(a, batch_size=a.batch_size)

    rows: list[tuple[str, dict]] = []
    t0 = time.perf_counter()
    for k, (name, fn) in enumerate([(UNSHIFTED, None), *shifts.items()]):
        t = time.perf_counter()
        shifted = apply_shift(fn, images, bundle.names, a.seed)
        r = figures(pipe, shifted, framed(bundle.lungs, name), framed(bundle.infections, name), bundle.labels,
                    bundle.names, a.batch_size)
        rows.append((name, r))
        print(f"[{k + 1}/{len(shifts) + 1}] {name}: COVID-19 Dice {_fmt(r['covid_dice'], '.4f')}, negatives flagged "
              f"{_fmt(r['negatives_flagged_pct'], '.1f')}% ({time.perf_counter() - t:.0f} s)",
              file=sys.stderr, flush=True)

    counts = {c: bundle.labels.count(c) for c in dict.fromkeys(bundle.labels)}
    subset = "" if len(samples) == len(all_samples) else f", a class-stratified subset of the {len(all_samples)}"
    args = argv if argv is not None else sys.argv[1:]
    broken = [n for n, r in rows[1:] if breaks_aim(r, rows[0][1])]
    head = [
        f"Acquisition shifts on COVID-QU-Ex {a.split}: {len(samples)} images"
        f" ({', '.join(f'{n} {c}' for c, n in counts.items())}{subset}), {a.size}x{a.size}.",
        "",
        f"Models: {models}; backend "
        f"{pipe.backend_name}; {time.perf_counter() - t0:.0f} s.",
        "",
        "Command: `python benchmarks/shift.py " + " ".join(shlex.quote(x) for x in args) + "`",
        "",
        f"Aim (issue #11, item 5): no shift costs more than {AIM_DICE_DROP} of COVID-19 Dice or adds more than "
        f"{AIM_FLAGGED_RISE:.0f} points to the negatives (Non-COVID + Normal) flagged with any infection. "
        "Dice is the per-image mean; the all-images column scores an empty prediction on an empty mask as 1.",
        "",
        "",
    ]
    foot = ["", f"Shifts breaking the aim: {len(broken)} of {len(rows) - 1}"
            + (f" ({', '.join(broken)})." if broken else ".")]
    return emit("\n".join(head) + table(rows) + "\n" + "\n".join(foot) + "\n", a.out)


if __name__ == "__main__":
    main()
