"""Dice and IoU per image and pooled, from confusion counts, with one stated rule for empty masks.

The empty-mask rule (identical to MONAI's ``compute_dice(..., ignore_empty=False)``):

* ground truth empty and prediction empty  -> Dice = IoU = 1 (a correct "nothing here");
* ground truth empty and prediction not    -> Dice = IoU = 0 (every predicted pixel is wrong).

So per-image means over Non-COVID and Normal images measure how often the model stays silent.
We also report the mean over images with non-empty ground truth only, which equals MONAI's
``ignore_empty=True`` and nnU-Net's convention of NaN for empty references excluded from the mean.
*Pooled* Dice/IoU sum TP, FP, FN over every pixel of the set first, so they need no rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Counts:
    """Per-image true positives, false positives and false negatives (arrays of length N)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def of(cls, pred: np.ndarray, gt: np.ndarray) -> Counts:
        """Counts for bool arrays of shape (N, H, W) or (H, W)."""
        pred = np.asarray(pred, bool).reshape(-1, *np.shape(pred)[-2:])
        gt = np.asarray(gt, bool).reshape(-1, *np.shape(gt)[-2:])
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
        axes = (1, 2)
        tp = np.sum(pred & gt, axis=axes, dtype=np.int64)
        return cls(tp, np.sum(pred, axis=axes, dtype=np.int64) - tp, np.sum(gt, axis=axes, dtype=np.int64) - tp)

    @classmethod
    def concat(cls, parts: list[Counts]) -> Counts:
        if not parts:
            z = np.zeros(0, np.int64)
            return cls(z, z, z)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("tp", "fp", "fn")))

    def __getitem__(self, idx) -> Counts:
        return Counts(self.tp[idx], self.fp[idx], self.fn[idx])

    def __len__(self) -> int:
        return len(self.tp)

    @property
    def gt_empty(self) -> np.ndarray:
        return (self.tp + self.fn) == 0

    @property
    def pred_empty(self) -> np.ndarray:
        return (self.tp + self.fp) == 0


def dice_per_image(c: Counts) -> np.ndarray:
    den = 2 * c.tp + c.fp + c.fn
    return np.where(den > 0, 2 * c.tp / np.maximum(den, 1), 1.0)


def iou_per_image(c: Counts) -> np.ndarray:
    den = c.tp + c.fp + c.fn
    return np.where(den > 0, c.tp / np.maximum(den, 1), 1.0)


def pooled_dice(c: Counts) -> float:
    tp, fp, fn = int(c.tp.sum()), int(c.fp.sum()), int(c.fn.sum())
    den = 2 * tp + fp + fn
    return 1.0 if den == 0 else 2 * tp / den


def pooled_iou(c: Counts) -> float:
    tp, fp, fn = int(c.tp.sum()), int(c.fp.sum()), int(c.fn.sum())
    den = tp + fp + fn
    return 1.0 if den == 0 else tp / den


def _mean(a: np.ndarray) -> float | None:
    return float(np.mean(a)) if len(a) else None


def summarize(c: Counts) -> dict[str, float | int | None]:
    """The standard figures of one set of images.

    * ``dice_mean`` / ``iou_mean``: per-image mean over **every** image of the set, empty-mask rule applied
      (an empty prediction on an empty ground truth scores 1, any predicted pixel on it 0). Over a whole
      COVID-QU-Ex split this is the figure Tahir et al. 2021 report
      (:data:`cxrseg.evaluation.references.CONVENTION_LABEL`); over the COVID-19 images alone it is the
      stricter figure, as every COVID-19 image has infection.
    * ``dice_mean_nonempty_gt`` / ``iou_mean_nonempty_gt``: the same mean over images whose ground truth is
      not empty (``n_nonempty_gt`` of them), MONAI ``ignore_empty=True``.
    * ``dice_pooled`` / ``iou_pooled``: TP, FP, FN summed over every pixel of the set first.
    """
    nonempty = ~c.gt_empty
    d, j = dice_per_image(c), iou_per_image(c)
    return {
        "n_images": len(c),
        "dice_mean": _mean(d),
        "iou_mean": _mean(j),
        "dice_pooled": pooled_dice(c) if len(c) else None,
        "iou_pooled": pooled_iou(c) if len(c) else None,
        "n_nonempty_gt": int(nonempty.sum()),
        "dice_mean_nonempty_gt": _mean(d[nonempty]),
        "iou_mean_nonempty_gt": _mean(j[nonempty]),
    }


def detection(pred_positive: np.ndarray, gt_positive: np.ndarray) -> dict[str, float | int | None]:
    """Image-level detection: sensitivity, specificity and counts, for bool arrays of length N."""
    p, g = np.asarray(pred_positive, bool), np.asarray(gt_positive, bool)
    tp, fn = int(np.sum(p & g)), int(np.sum(~p & g))
    tn, fp = int(np.sum(~p & ~g)), int(np.sum(p & ~g))
    return {
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "false_positive_rate": fp / (tn + fp) if tn + fp else None,
    }


def roc_auc(scores, positive) -> float:
    """ROC AUC of ``scores`` for the bool labels ``positive``: the Mann-Whitney U over the two classes (ties count a
    half), so the share of (positive, negative) pairs ranked the right way; NaN without both classes."""
    from scipy.stats import mannwhitneyu

    s, y = np.asarray(scores, float), np.asarray(positive, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float(mannwhitneyu(s[y], s[~y]).statistic / (n_pos * n_neg))
