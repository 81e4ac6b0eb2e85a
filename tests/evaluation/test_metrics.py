"""Dice and IoU: known values, the empty-mask rule, pooled vs mean, and agreement with MONAI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cxrseg.evaluation.metrics import (
    Counts,
    detection,
    dice_per_image,
    iou_per_image,
    pooled_dice,
    pooled_iou,
    roc_auc,
    summarize,
)


def _box(y0, y1, x0, x1, shape=(10, 10)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_known_values():
    gt = _box(0, 4, 0, 5)  # 20 px
    pred = _box(0, 4, 0, 3) | _box(5, 6, 0, 4)  # 12 px inside, 4 px outside
    c = Counts.of(pred, gt)
    assert (c.tp[0], c.fp[0], c.fn[0]) == (12, 4, 8)
    assert dice_per_image(c)[0] == pytest.approx(2 * 12 / (2 * 12 + 4 + 8))
    assert iou_per_image(c)[0] == pytest.approx(12 / (12 + 4 + 8))


def test_perfect_and_disjoint():
    gt = _box(2, 6, 2, 6)
    assert dice_per_image(Counts.of(gt, gt))[0] == 1.0
    assert iou_per_image(Counts.of(gt, gt))[0] == 1.0
    far = _box(7, 9, 7, 9)
    assert dice_per_image(Counts.of(far, gt))[0] == 0.0
    assert iou_per_image(Counts.of(far, gt))[0] == 0.0


def test_empty_rule():
    empty = np.zeros((10, 10), bool)
    some = _box(1, 3, 1, 3)
    both_empty = Counts.of(empty, empty)
    assert dice_per_image(both_empty)[0] == 1.0 and iou_per_image(both_empty)[0] == 1.0
    false_alarm = Counts.of(some, empty)  # ground truth empty, prediction not
    assert dice_per_image(false_alarm)[0] == 0.0 and iou_per_image(false_alarm)[0] == 0.0
    missed = Counts.of(empty, some)
    assert dice_per_image(missed)[0] == 0.0 and iou_per_image(missed)[0] == 0.0


def test_pooled_versus_mean():
    big_gt = _box(0, 10, 0, 10)  # 100 px, predicted perfectly
    small_gt = _box(0, 1, 0, 2)  # 2 px, missed entirely
    preds = np.stack([big_gt, np.zeros((10, 10), bool)])
    c = Counts.of(preds, np.stack([big_gt, small_gt]))
    s = summarize(c)
    assert s["dice_mean"] == pytest.approx(0.5)  # each image counts once
    assert s["dice_pooled"] == pytest.approx(200 / 202)  # each pixel counts once
    assert s["iou_pooled"] == pytest.approx(100 / 102)
    assert pooled_dice(c) == s["dice_pooled"] and pooled_iou(c) == s["iou_pooled"]
    assert s["n_images"] == 2 and s["n_nonempty_gt"] == 2


def test_nonempty_gt_mean_excludes_empty_truth():
    gt = np.stack([_box(0, 4, 0, 4), np.zeros((10, 10), bool), np.zeros((10, 10), bool)])
    pred = np.stack([_box(0, 4, 0, 2), _box(0, 1, 0, 1), np.zeros((10, 10), bool)])
    s = summarize(Counts.of(pred, gt))
    d0 = 2 * 8 / (8 + 16)
    assert s["dice_mean"] == pytest.approx((d0 + 0 + 1) / 3)
    assert s["dice_mean_nonempty_gt"] == pytest.approx(d0)
    assert s["n_nonempty_gt"] == 1


def test_summary_of_nothing_and_of_all_empty():
    s = summarize(Counts.concat([]))
    assert s["n_images"] == 0 and s["dice_mean"] is None and s["dice_pooled"] is None
    empty = np.zeros((3, 8, 8), bool)
    s = summarize(Counts.of(empty, empty))
    assert s["dice_mean"] == 1.0 and s["dice_pooled"] == 1.0
    assert s["dice_mean_nonempty_gt"] is None and s["n_nonempty_gt"] == 0


def test_counts_concat_slice_and_shape_check():
    a = Counts.of(_box(0, 2, 0, 2), _box(0, 2, 0, 3))
    b = Counts.of(np.zeros((2, 10, 10), bool), np.zeros((2, 10, 10), bool))
    c = Counts.concat([a, b])
    assert len(c) == 3
    assert list(c.gt_empty) == [False, True, True] and list(c.pred_empty) == [False, True, True]
    assert c[0:1].tp.tolist() == [4]
    with pytest.raises(ValueError):
        Counts.of(np.zeros((4, 4), bool), np.zeros((5, 5), bool))


def _random_masks(seed: int, n: int = 24, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.0, 0.5, (n, 1, 1))
    pred = rng.random((n, size, size)) < density
    gt = rng.random((n, size, size)) < rng.uniform(0.0, 0.5, (n, 1, 1))
    pred[0], gt[0] = False, False  # both empty
    pred[1], gt[1] = True, False  # false alarm on an empty truth
    gt[2], pred[2] = gt[2] | True, False  # missed everything
    gt[3] = False  # empty truth, random prediction
    pred[4] = gt[4]  # perfect
    return pred, gt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_image_dice_and_iou_match_monai(seed):
    from monai.metrics import DiceMetric, MeanIoU

    pred, gt = _random_masks(seed)
    c = Counts.of(pred, gt)
    p = torch.from_numpy(pred[:, None].astype(np.float32))
    g = torch.from_numpy(gt[:, None].astype(np.float32))
    monai_dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(p, g)[:, 0].numpy()
    monai_iou = MeanIoU(include_background=True, reduction="none", ignore_empty=False)(p, g)[:, 0].numpy()
    np.testing.assert_allclose(dice_per_image(c), monai_dice, atol=1e-6)
    np.testing.assert_allclose(iou_per_image(c), monai_iou, atol=1e-6)
    s = summarize(c)
    assert s["dice_mean"] == pytest.approx(float(monai_dice.mean()), abs=1e-6)
    assert s["iou_mean"] == pytest.approx(float(monai_iou.mean()), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 3])
def test_nonempty_gt_mean_matches_monai_ignore_empty(seed):
    from monai.metrics import DiceMetric, MeanIoU

    pred, gt = _random_masks(seed)
    p = torch.from_numpy(pred[:, None].astype(np.float32))
    g = torch.from_numpy(gt[:, None].astype(np.float32))
    dm = DiceMetric(include_background=True, reduction="mean", ignore_empty=True)
    dm(p, g)
    im = MeanIoU(include_background=True, reduction="mean", ignore_empty=True)
    im(p, g)
    s = summarize(Counts.of(pred, gt))
    assert s["n_nonempty_gt"] == int(gt.reshape(len(gt), -1).any(1).sum()) < len(gt)
    assert s["dice_mean_nonempty_gt"] == pytest.approx(float(dm.aggregate()), abs=1e-6)
    assert s["iou_mean_nonempty_gt"] == pytest.approx(float(im.aggregate()), abs=1e-6)


def test_detection_sensitivity_and_specificity():
    pred = np.array([1, 1, 0, 0, 1, 0, 0, 0], bool)
    gt = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    d = detection(pred, gt)
    assert (d["tp"], d["fn"], d["tn"], d["fp"]) == (2, 1, 4, 1)
    assert d["sensitivity"] == pytest.approx(2 / 3)
    assert d["specificity"] == pytest.approx(4 / 5)
    assert d["false_positive_rate"] == pytest.approx(1 / 5)


def test_detection_without_positives_or_negatives():
    d = detection(np.array([False, True]), np.array([False, False]))
    assert d["sensitivity"] is None and d["specificity"] == 0.5
    d = detection(np.array([True]), np.array([True]))
    assert d["sensitivity"] == 1.0 and d["specificity"] is None and d["false_positive_rate"] is None


def test_roc_auc_by_hand():
    auc = roc_auc  # ties count a half: against the pairwise definition below
    assert auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5  # all tied
    assert auc([0.3, 0.3, 0.7, 0.7], [0, 1, 0, 1]) == 0.5  # each positive ties one negative, beats one, loses to one
    assert auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert math.isclose(auc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]), 3.5 / 4)  # one tied pair counts a half
    assert math.isnan(auc([0.1, 0.2], [1, 1]))
    rng = np.random.default_rng(0)  # against the pairwise definition, with many ties
    s, y = rng.integers(0, 5, 40).astype(float), rng.random(40) < 0.4
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in s[y] for n in s[~y]]
    assert math.isclose(auc(s, y), sum(pairs) / len(pairs))
