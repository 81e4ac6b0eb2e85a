"""Is ``lung_confidence`` a fair warning? Its spread on real films and on inputs that are not frontal chest X-rays.

    python benchmarks/input_check.py [--data ../shared/data/COVID-QU-Ex] [--external ../shared/external]
        [--severity ../shared/severity] [--every 20] [--tta | --accurate] [--out docs/input_check.md]

``lung_confidence`` (``cxrseg.inference.lung_check``) is stage 1's mean lung probability inside its own mask; a film
below the threshold for the way stage 1 runs (``LOW_LUNG_CONFIDENCE``: plain, TTA, accurate) gets a warning in its
note. This prints, for each set of inputs, how many films, the
median, lowest and highest confidence, and the share warned:

* real frontal films: COVID-QU-Ex Val (all of it), the external films, the severity films and the two example films
  shipped with the package (the folders that are missing are left out);
* inputs a user should be warned about, made from every ``--every``-th Val film: inverted (a MONOCHROME1 film
  exported without its LUT), upside down, rotated 90 degrees, and its lung-mask file given as the image; plus 20
  noise images and the photographs matplotlib ships, when it is installed.

On Val it also gives the Spearman correlation of the confidence with the lung Dice against the ground truth, and the
lung Dice of the warned films beside the rest: the warning is also a per-film estimate of the lungs' quality.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage, stats

from cxrseg.data.io import XRay, read_mask, read_xray
from cxrseg.errors import CxrsegError
from cxrseg.evaluation.benchmark_io import add_model_options, emit, pipeline_from_options
from cxrseg.evaluation.metrics import Counts, dice_per_image
from cxrseg.inference.batch import collect_inputs
from cxrseg.inference.pipeline import resize_batch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def films_in(folder: Path) -> list[Path]:
    """The image files anywhere below ``folder``, as ``cxrseg predict`` finds them (none when it is missing)."""
    try:
        return collect_inputs([folder]) if folder.is_dir() else []
    except CxrsegError:  # a folder without images
        return []


def confidences(pipe, xrays: list[XRay], batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(lung_confidence (N,), cleaned lung masks at the model grid (N, S, S)) from the pipeline's model pass."""
    conf, lungs = [], []
    for i in range(0, len(xrays), batch):
        out = pipe.model_pass(xrays[i : i + batch]).outputs
        conf.append(out.lung_confidence)
        lungs.append(out.lung)
    return np.concatenate(conf), np.concatenate(lungs)


def made_wrong(val: list[XRay], masks: list[Path], seed: int = 0) -> dict[str, list[XRay]]:
    """Inputs that are not an upright frontal chest X-ray, made from Val films, noise and photographs."""
    rng = np.random.default_rng(seed)
    changed: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "Val films inverted": lambda a: 1 - a,
        "Val films upside down": lambda a: a[::-1],
        "Val films rotated 90 degrees": np.rot90,
    }
    sets = {name: [XRay(np.ascontiguousarray(f(x.pixels)), x.source) for x in val] for name, f in changed.items()}
    sets["Val lung-mask files as images"] = [read_xray(m) for m in masks]
    noise = [rng.random((256, 256), dtype=np.float32) for _ in range(10)]
    noise += [(ndimage.gaussian_filter(rng.random((256, 256)), 8) * 4 % 1).astype(np.float32) for _ in range(10)]
    sets["noise (uniform, smoothed)"] = [XRay(a, f"noise {i}") for i, a in enumerate(noise)]
    try:
        import matplotlib

        photos = films_in(Path(matplotlib.get_data_path()) / "sample_data")
        sets["photographs (matplotlib's sample data)"] = [read_xray(p) for p in photos]
    except ImportError:
        pass
    return sets


def row(name: str, conf: np.ndarray, threshold: float) -> str:
    low = conf < threshold
    return (f"| {name} | {len(conf)} | {np.median(conf):.4f} | {conf.min():.4f} | {conf.max():.4f} | "
            f"{low.mean():.1%} ({low.sum()}) |\n")


def mean_text(x: np.ndarray) -> str:
    return f"{x.mean():.4f}" if len(x) else "(none)"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "COVID-QU-Ex", help="COVID-QU-Ex (Val is used)")
    ap.add_argument("--external", type=Path, default=SHARED / "external")
    ap.add_argument("--severity", type=Path, default=SHARED / "severity")
    ap.add_argument("--every", type=int, default=20, help="make the wrong inputs from every n-th Val film")
    ap.add_argument("--out", type=Path, default=None, help="also write the report here")
    ap.add_argument("--tta", action="store_true", help="flip TTA (as cxrseg predict --tta)")
    add_model_options(ap)
    a = ap.parse_args(argv)
    from cxrseg.data.covidqu import find_dataset
    from cxrseg.examples import films

    pipe, models = pipeline_from_options(a, tta=a.tta)
    t = pipe.lung_confidence_threshold
    samples = find_dataset(a.data).select(("Val",))
    if not samples:
        raise SystemExit(f"{a.data}: no Val split found (point --data at COVID-QU-Ex)")
    print(f"{len(samples)} Val films ...", file=sys.stderr)
    val = [read_xray(s.image) for s in samples]
    conf, lungs = confidences(pipe, val)
    truth = np.stack([read_mask(s.lung) for s in samples]).astype(np.float32)
    truth = resize_batch(truth, lungs.shape[1:]) > 0.5  # onto the model grid (COVID-QU-Ex's 256: unchanged)
    dice = dice_per_image(Counts.of(lungs, truth))

    text = (f"# lung_confidence on real films and on wrong inputs\n\n`python benchmarks/input_check.py "
            f"{shlex.join(argv if argv is not None else sys.argv[1:])}`\n\nmodels: {models}\n\n"
            f"Warned: lung_confidence below {t} (stage 1's mean probability inside its mask; the threshold of "
            "this way of running stage 1).\n\n"
            "| inputs | films | median | lowest | highest | warned |\n|---|---:|---:|---:|---:|---:|\n")
    text += row("COVID-QU-Ex Val", conf, t)
    others = {"external films (../shared/external)": films_in(a.external),
              "severity films (../shared/severity)": films_in(a.severity),
              "example films shipped with cxrseg": [f.path for f in films()]}
    for name, paths in others.items():
        if paths:
            print(f"{name} ...", file=sys.stderr)
            text += row(name, confidences(pipe, [read_xray(p) for p in paths])[0], t)
    step = max(a.every, 1)
    for name, xrays in made_wrong(val[::step], [s.lung for s in samples[::step]]).items():
        print(f"{name} ...", file=sys.stderr)
        text += row(name, confidences(pipe, xrays)[0], t)
    low = conf < t
    rho = stats.spearmanr(conf, dice).statistic
    text += (f"\nOn Val, lung_confidence against the lung Dice of the same film: Spearman {rho:.3f}. Lung Dice of the "
             f"{low.sum()} warned films {mean_text(dice[low])}, of the rest {mean_text(dice[~low])}; the 10 worst "
             "films by Dice have confidence "
             f"{', '.join(f'{c:.3f}' for c in conf[np.argsort(dice)[:10]])}.\n")
    return emit(text, a.out)


if __name__ == "__main__":
    main()
