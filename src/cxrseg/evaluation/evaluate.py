"""Run the two-stage pipeline over a COVID-QU-Ex split and measure it against the ground truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrseg.data.covidqu import CLASSES, Sample, find_dataset, require_samples, stratified_subset
from cxrseg.data.io import read_mask, read_xray
from cxrseg.errors import InputFileError
from cxrseg.evaluation.metrics import Counts, detection, dice_per_image, iou_per_image, summarize
from cxrseg.evaluation.references import CONVENTION_LABEL, CONVENTION_REASONING, REFERENCES
from cxrseg.inference.pipeline import TwoStagePipeline

EMPTY_RULE = (
    "Per-image Dice/IoU: an image whose ground truth and prediction are both empty scores 1; an empty ground "
    "truth with any predicted pixel scores 0 (MONAI compute_dice ignore_empty=False). *_nonempty_gt means "
    "exclude images with empty ground truth (MONAI ignore_empty=True, nnU-Net's NaN convention). Pooled figures "
    "sum TP/FP/FN over all pixels of the set. The per-image mean of subset 'all' (every image, Non-COVID and "
    f"Normal included) is the {CONVENTION_LABEL}; the COVID-19 subset's mean is the stricter figure."
)


@dataclass
class EvaluationRun:
    """Per-image results of one evaluation, and the summary built from them."""

    samples: list[Sample]
    lung: Counts
    infection: Counts | None
    image_prob: np.ndarray | None
    metrics: dict = field(default_factory=dict)

    def per_image_rows(self) -> list[dict]:
        ld, lj = dice_per_image(self.lung), iou_per_image(self.lung)
        rows = []
        for i, s in enumerate(self.samples):
            r = {"file": s.image.name, "class": s.label, "lung_dice": round(float(ld[i]), 5), "lung_iou": round(float(lj[i]), 5)}
            if self.infection is not None:
                c = self.infection[i : i + 1]
                r.update(
                    infection_dice=round(float(dice_per_image(c)[0]), 5),
                    infection_iou=round(float(iou_per_image(c)[0]), 5),
                    infection_gt_px=int(c.tp[0] + c.fn[0]),
                    infection_pred_px=int(c.tp[0] + c.fp[0]),
                    infection_probability=None if self.image_prob is None else round(float(self.image_prob[i]), 4),
                )
            rows.append(r)
        return rows


def _by_class(counts: Counts, labels: np.ndarray) -> dict:
    out = {"all": summarize(counts)}
    for c in CLASSES:
        sel = labels == c
        if sel.any():
            out[c] = summarize(counts[sel])
    return out


def reference_convention(metrics: dict) -> dict:
    """The figures in the convention of the published references, taken from ``metrics[stage]["all"]``.

    No new computation: the per-image mean over all images under the empty-mask rule *is* ``dice_mean`` /
    ``iou_mean`` of subset ``all``; this block names it, and carries the published figures beside it.
    """
    out: dict = {"label": CONVENTION_LABEL, "reasoning": CONVENTION_REASONING}
    for stage in ("lung", "infection"):
        if stage in metrics:
            a = metrics[stage]["all"]
            out[stage] = {"dice": a["dice_mean"], "iou": a["iou_mean"], "n_images": a["n_images"]}
    out["references"] = [r.as_dict() for r in REFERENCES]
    return out


def summarize_run(samples: list[Sample], lung: Counts, infection: Counts | None) -> dict:
    labels = np.array([s.label for s in samples])
    metrics: dict = {"n_images": len(samples), "empty_mask_rule": EMPTY_RULE, "lung": _by_class(lung, labels)}
    if infection is not None:
        metrics["infection"] = _by_class(infection, labels)
        negatives = labels != "COVID-19"
        metrics["infection_detection"] = detection(~infection.pred_empty, ~infection.gt_empty)
        metrics["infection_detection"]["negatives_with_predicted_infection"] = (
            float(np.mean(~infection.pred_empty[negatives])) if negatives.any() else None
        )
    metrics["reference_convention"] = reference_convention(metrics)
    return metrics


def evaluate(
    pipeline: TwoStagePipeline,
    data: str | Path,
    split: str = "Val",
    max_images: int | None = None,
    progress: Callable | None = None,
) -> EvaluationRun:
    """Segment every image of ``split`` and compare with its masks (infection too, when the part has them)."""
    index = find_dataset(data, part="auto", splits=(split,))
    samples = require_samples(index, (split,))
    if max_images is not None:
        samples = stratified_subset(samples, max_images, seed=0)
    with_infection = all(s.infection is not None for s in samples)
    lung_parts, inf_parts, probs = [], [], []
    batches = range(0, len(samples), pipeline.batch_size)
    for start in progress(batches) if progress else batches:
        chunk = samples[start : start + pipeline.batch_size]
        xrays = [read_xray(s.image, allow_blank=True) for s in chunk]  # a dataset's film is scored whatever it is
        for s, seg in zip(chunk, pipeline.predict(xrays)):
            lung_gt = _mask_like(s.lung, seg.lung.shape)
            lung_parts.append(Counts.of(seg.lung, lung_gt))
            if with_infection:
                inf_parts.append(Counts.of(seg.infection, _mask_like(s.infection, seg.lung.shape)))
                probs.append(np.nan if seg.infection_probability is None else seg.infection_probability)
    lung = Counts.concat(lung_parts)
    infection = Counts.concat(inf_parts) if with_infection else None
    run = EvaluationRun(samples, lung, infection, np.array(probs) if with_infection else None)
    run.metrics = summarize_run(samples, lung, infection)
    run.metrics.update(split=split, data=str(index.root), backend=pipeline.backend_name, tta=pipeline.tta)
    return run


def _mask_like(path: Path, shape: tuple[int, int]) -> np.ndarray:
    m = read_mask(path)
    if m.shape != shape:
        raise InputFileError(path, f"mask is {m.shape[1]}x{m.shape[0]} but its image is {shape[1]}x{shape[0]}")
    return m
