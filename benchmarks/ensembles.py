"""Averaged models on a split: several stage-1 models, several stage-2 models, with or without flip TTA.

    python benchmarks/ensembles.py --data ../shared/data/COVID-QU-Ex --lung W1 [--lung W2 ...]
        [--infection V1 --infection V2 ...] [--combos 0,0+1,0+2] [--tta] [--classifier auto|none|C] [--out FILE]

Stage 1 is the mean probability of every ``--lung`` model (default: the shipped one), as
:class:`~cxrseg.inference.pipeline.TwoStagePipeline` averages them; the table first gives the lung Dice of each
model alone and of their mean. Stage 2 then runs once per ``--infection`` model (default: the shipped one) on
those lungs; for each combination in ``--combos`` (indices into ``--infection``, ``+`` joined) the pixel
probabilities and the heads' P(COVID-19) are averaged, the classifier (the shipped one by default) joins the heads'
mean as in the pipeline, and the thresholds are tuned exactly as ``cxrseg tune`` does (best COVID-19 per-image Dice
with at most ``--max-negative-rate`` of the other films flagged; the default path, bf16 where the CPU has it).
The accurate mode (``--accurate``) is the second row of ``--lung shipped --lung lung-wide --tta``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from cxrseg.data.covidqu import find_dataset, require_samples
from cxrseg.data.dataset import load_arrays
from cxrseg.evaluation.benchmark_io import emit
from cxrseg.evaluation.metrics import Counts, dice_per_image
from cxrseg.evaluation.tune import _score_grid
from cxrseg.inference.decision import FilmClassifier, combine, resolve_classifier
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.models.store import shipped_weights, weights_digest

THRESHOLDS = (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)  # cxrseg.evaluation.tune's grid
MIN_AREAS = (0, 10, 25, 50, 100)
IMAGE_THRESHOLDS = [None] + [round(0.1 + 0.025 * i, 3) for i in range(35)]


def weights_path(name: str, stage: str) -> Path:
    """'shipped' (or 'lung-wide') means a model shipped in the package; anything else is a path."""
    if name == "shipped":
        return shipped_weights(stage)
    return shipped_weights(name) if name == "lung-wide" else Path(name)


def tuned(prob, image_prob, lung, gt, limit: float) -> tuple[dict, float]:
    """(the best row of cxrseg tune's grid within the false-alarm limit, the no-veto ceiling)."""
    table = [r for t in THRESHOLDS for a in MIN_AREAS for r in _score_grid(prob, image_prob, lung, gt, t, a, IMAGE_THRESHOLDS)]
    allowed = [r for r in table if r["negatives_with_infection"] <= limit] or table
    best = max(allowed, key=lambda r: (r["dice_mean_covid"] or 0.0, r["dice_mean"]))
    return best, max(r["dice_mean_covid"] or 0.0 for r in table if r["image_threshold"] is None)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="COVID-QU-Ex folder")
    ap.add_argument("--split", default="Val")
    ap.add_argument("--lung", action="append", default=None, help="stage-1 weights ('shipped', 'lung-wide' or a path)")
    ap.add_argument("--infection", action="append", default=None, help="stage-2 weights ('shipped' or a path)")
    ap.add_argument("--combos", default=None, help="stage-2 combinations, e.g. 0,0+1 (default: each alone, then all)")
    ap.add_argument("--tta", action="store_true", help="flip TTA on both stages")
    ap.add_argument("--classifier", default="auto", help="'auto' (the shipped one), 'none', or weights")
    ap.add_argument("--max-negative-rate", type=float, default=0.05)
    ap.add_argument("--max-images", type=int, default=None, help="the first N films of the split (a quick look)")
    ap.add_argument("--out", type=Path, default=None, help="also write the output here (Markdown)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    lungs = [weights_path(w, "lung") for w in a.lung or ["shipped"]]
    infections = [weights_path(w, "infection") for w in a.infection or ["shipped"]]
    n = len(infections)
    combos = [[int(i) for i in c.split("+")] for c in (a.combos.split(",") if a.combos else
                                                     [str(i) for i in range(n)] + (["+".join(map(str, range(n)))] if n > 1 else []))]
    index = find_dataset(a.data, part="infection", splits=(a.split,))
    bundle = load_arrays(require_samples(index, (a.split,), "infection")[: a.max_images], 256)
    images = bundle.images.astype(np.float32) / 255.0

    pipes = [TwoStagePipeline.from_pretrained(lungs, w, classifier="none", tta=a.tta, batch_size=16) for w in infections]
    lines = [f"Averaged models on COVID-QU-Ex {a.split} ({len(bundle)} films), {pipes[0].backend_name}, "
             f"flip TTA {'on' if a.tta else 'off'}.", "",
             f"`python benchmarks/ensembles.py {shlex.join(argv if argv is not None else sys.argv[1:])}`", "",
             "| stage 1 | lung Dice, per-image mean |", "|---|---:|"]
    members = pipes[0].lung_members
    for i, m in enumerate(members):
        alone = TwoStagePipeline(m.backend, pipes[0].infection_backend, m.card, pipes[0].infection_card, tta=a.tta)
        lung = alone.lungs(images)[1]
        dice = dice_per_image(Counts.of(lung, bundle.lungs)).mean()
        lines.append(f"| {lungs[i]} (sha256 {weights_digest(lungs[i])}) | {dice:.4f} |")
    if len(members) > 1:  # one model alone is its own mean: its masks are the lungs stage 2 sees
        _, lung = pipes[0].lungs(images)
        lines.append(f"| mean of the {len(members)} | {dice_per_image(Counts.of(lung, bundle.lungs)).mean():.4f} |")

    probs, heads = [], []
    for p in pipes:  # stage 2 on the averaged lungs: the raw probabilities the grid is scored on
        prob, head, _ = p._stage2(images, lung)
        probs.append(prob)
        heads.append(head)
    film = resolve_classifier(a.classifier, None)
    clf = FilmClassifier(film, "cpu", pipes[0].lung_backend.precision)(images, a.tta) if film else None
    lines += ["", "Stage 2: " + "; ".join(f"{i}: {w} (sha256 {weights_digest(w)})" for i, w in enumerate(infections))
              + f". Decision: the heads' mean{' averaged with the classifier ' + str(film) if film else ''}; "
              f"thresholds tuned as `cxrseg tune` does, at most {a.max_negative_rate:.0%} of the others flagged.", "",
              "| stage 2 | infection Dice, all images (Tahir et al.) | COVID-19 | negatives flagged | no-veto ceiling "
              "| pixel / image threshold, min area |", "|---|---:|---:|---:|---:|---|"]
    for c in combos:
        prob = probs[c[0]] if len(c) == 1 else np.mean([probs[i] for i in c], axis=0)
        head = np.mean([heads[i] for i in c], axis=0)
        best, ceiling = tuned(prob, head if clf is None else combine(head, clf), lung, bundle.infections,
                              a.max_negative_rate)
        lines.append(f"| {'+'.join(map(str, c))} | {best['dice_mean']:.4f} | {best['dice_mean_covid']:.4f} | "
                     f"{best['negatives_with_infection']:.1%} | {ceiling:.4f} | {best['threshold']} / "
                     f"{best['image_threshold']}, {best['min_area']} |")
    lines += ["", f"{time.perf_counter() - t0:.0f} s."]
    return emit("\n".join(lines) + "\n", a.out)


if __name__ == "__main__":
    main()
