"""Choose stage-2 decision thresholds on a validation split and write them into the model card.

The network is run once; every combination of pixel threshold, image-level threshold and minimum
infection area is then scored from the cached probabilities. The objective is the per-image mean
infection Dice over the images that have infection (COVID-19), subject to at most ``max_negative_rate``
of the images with empty ground truth (Non-COVID, Normal) getting any predicted infection. (Maximising
the mean over all images under the empty-mask rule instead rewards vetoing too much: on Val it chose a
setting that missed a quarter of the COVID-19 images.)
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrseg._atomic import atomic_write_text
from cxrseg.data.covidqu import find_dataset, require_samples
from cxrseg.data.dataset import load_arrays
from cxrseg.evaluation.metrics import Counts, dice_per_image, pooled_dice
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.inference.postprocess import clean_infection
from cxrseg.models.store import card_path, read_card


@dataclass(frozen=True)
class Thresholds:
    threshold: float
    image_threshold: float | None
    min_area: int


@dataclass
class TuneResult:
    best: Thresholds
    objective: float
    table: list[dict]  # every combination with its figures
    ranked: list[dict]  # the combinations within the false-alarm limit (all, if none is), best first
    max_negative_rate: float
    # COVID-19 Dice with no image-level veto, at the best pixel threshold and min area: what a perfect image
    # classifier would reach, so ``ceiling - objective`` is what the veto costs and the rest is segmentation.
    ceiling: float


def _vetoed(c: Counts, veto: np.ndarray) -> Counts:
    """Counts when the images in ``veto`` get an empty prediction: their predicted pixels go, their truth stays."""
    return Counts(np.where(veto, 0, c.tp), np.where(veto, 0, c.fp), np.where(veto, c.tp + c.fn, c.fn))


def _figures(c: Counts, t: Thresholds) -> dict:
    d = dice_per_image(c)
    pos = ~c.gt_empty
    return {
        "threshold": t.threshold,
        "image_threshold": t.image_threshold,
        "min_area": t.min_area,
        "dice_mean": float(d.mean()),
        "dice_mean_covid": float(d[pos].mean()) if pos.any() else None,
        "dice_pooled": pooled_dice(c),
        "negatives_with_infection": float(np.mean(~c.pred_empty[~pos])) if (~pos).any() else 0.0,
    }


def _score_grid(prob, image_prob, lung, gt, threshold: float, min_area: int, image_thresholds) -> list[dict]:
    """Figures for one (pixel threshold, min area) and every image threshold: the masks are cleaned once,
    and an image-level veto only changes that image's counts."""
    c = Counts.of(np.stack([clean_infection(p > threshold, m, min_area) for p, m in zip(prob, lung)]), gt)
    return [
        _figures(c if it is None else _vetoed(c, image_prob < it), Thresholds(threshold, it, min_area))
        for it in image_thresholds
    ]


def tune_infection(
    pipeline: TwoStagePipeline,
    data: str | Path,
    split: str = "Val",
    thresholds: Sequence[float] = (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7),
    image_thresholds: Sequence[float] = tuple(round(0.1 + 0.025 * i, 3) for i in range(35)),  # 0.1 .. 0.95
    min_areas: Sequence[int] = (0, 10, 25, 50, 100),
    max_negative_rate: float = 0.05,
    progress: Callable | None = None,
) -> TuneResult:
    """Grid-search the stage-2 thresholds on ``split``; see the module docstring for the objective."""
    index = find_dataset(data, part="infection", splits=(split,))
    bundle = load_arrays(require_samples(index, (split,), "infection"), pipeline.size)
    saved = pipeline.image_threshold, pipeline.min_area, pipeline.infection_threshold
    pipeline.image_threshold, pipeline.min_area, pipeline.infection_threshold = None, 0, 0.0
    try:
        out = pipeline.run_model_size(bundle.images.astype(np.float32) / 255.0)
    finally:
        pipeline.image_threshold, pipeline.min_area, pipeline.infection_threshold = saved
    image_grid = [None] + (list(image_thresholds) if out.image_prob is not None else [])
    grid = list(itertools.product(thresholds, min_areas))
    table = [
        row
        for t, area in (progress(grid) if progress else grid)
        for row in _score_grid(out.infection_prob, out.image_prob, out.lung, bundle.infections, t, area, image_grid)
    ]
    allowed = [r for r in table if r["negatives_with_infection"] <= max_negative_rate] or table
    ranked = sorted(allowed, key=lambda r: (r["dice_mean_covid"] or 0.0, r["dice_mean"]), reverse=True)
    best = ranked[0]
    return TuneResult(
        Thresholds(best["threshold"], best["image_threshold"], best["min_area"]),
        best["dice_mean_covid"] or 0.0,
        table,
        ranked,
        max_negative_rate,
        max(r["dice_mean_covid"] or 0.0 for r in table if r["image_threshold"] is None),
    )


def write_thresholds(weights: str | Path, result: TuneResult, split: str, path: str = "",
                     block: str | None = None) -> None:
    """Store the chosen thresholds in the infection model's card, with how they were chosen (``path``: the backend
    and precision they were tuned on, e.g. 'torch-bf16').

    ``block`` ('tta' or 'accurate') puts them in that block of the card, which the pipeline uses when it runs in that
    mode (:attr:`TwoStagePipeline.decision_block`); None, at the card's top (the default path's decision).
    """
    how = {"tta": " with flip TTA", "accurate": " in the accurate mode (flip TTA, two stage-1 models)"}.get(block or "", "")
    card = read_card(weights)
    decision = {
        "threshold": result.best.threshold,
        "image_threshold": result.best.image_threshold,
        "min_area": result.best.min_area,
        "thresholds_tuned_on": (
            f"{split} split{how}: max per-image mean infection Dice on images with "
            f"infection, at most {result.max_negative_rate:.0%} of images without infection flagged"
            + (f"; {path}" if path else "")
        ),
    }
    if block:
        card[block] = decision
    else:
        card.update(decision)
    atomic_write_text(card_path(weights), json.dumps(card, indent=2, default=str) + "\n")
