"""Threshold tuning: the fast grid equals brute force, the choice obeys the false-alarm limit, the card keeps it."""

from __future__ import annotations

import numpy as np

from cxrseg.evaluation.metrics import Counts
from cxrseg.evaluation.tune import Thresholds, TuneResult, _figures, _score_grid, tune_infection, write_thresholds
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.inference.postprocess import clean_infection
from cxrseg.models.store import read_card


def _random_case(seed: int = 0, n: int = 12, size: int = 32):
    rng = np.random.default_rng(seed)
    prob = rng.random((n, size, size)) ** 3
    lung = np.zeros((n, size, size), bool)
    lung[:, 4:-4, 4:-4] = True
    gt = (rng.random((n, size, size)) > 0.8) & lung
    gt[: n // 2] = False  # half the images have empty ground truth
    return prob, rng.random(n), lung, gt


def test_grid_equals_scoring_each_setting_from_scratch():
    prob, image_prob, lung, gt = _random_case()
    image_thresholds = [None, 0.3, 0.5, 0.8]
    rows = _score_grid(prob, image_prob, lung, gt, 0.4, 3, image_thresholds)
    for row, it in zip(rows, image_thresholds):
        pred = np.stack([clean_infection(p > 0.4, m, 3) for p, m in zip(prob, lung)])
        if it is not None:
            pred[image_prob < it] = False
        assert row == _figures(Counts.of(pred, gt), Thresholds(0.4, it, 3))


def test_veto_of_everything_flags_no_negative_and_scores_covid_zero():
    prob, image_prob, lung, gt = _random_case(seed=1)
    (row,) = _score_grid(prob, image_prob, lung, gt, 0.5, 0, [1.01])
    assert row["negatives_with_infection"] == 0.0 and row["dice_mean_covid"] == 0.0 and row["dice_pooled"] == 0.0


def _setting(row: dict) -> Thresholds:
    return Thresholds(row["threshold"], row["image_threshold"], row["min_area"])


def test_tune_obeys_the_limit_and_stores_the_choice(own_models, synthetic_root):
    lung, infection = own_models
    pipe = TwoStagePipeline.from_pretrained(lung, infection, backend="torch")
    before = (pipe.infection_threshold, pipe.image_threshold, pipe.min_area)
    result = tune_infection(pipe, synthetic_root, "Val", max_negative_rate=0.34)
    assert (pipe.infection_threshold, pipe.image_threshold, pipe.min_area) == before  # restored after the run
    allowed = [r for r in result.table if r["negatives_with_infection"] <= 0.34]
    assert allowed, "the synthetic task is easy enough for some setting to stay under the limit"
    chosen = next(r for r in result.table if _setting(r) == result.best)
    assert chosen["negatives_with_infection"] <= 0.34
    assert result.objective == chosen["dice_mean_covid"] == max(r["dice_mean_covid"] for r in allowed)
    assert result.ranked[0] == chosen and len(result.ranked) == len(allowed)
    unvetoed = [r["dice_mean_covid"] for r in result.table if r["image_threshold"] is None]
    assert len(unvetoed) == len({(r["threshold"], r["min_area"]) for r in result.table})  # "no veto" is on the grid
    assert result.ceiling == max(unvetoed) >= result.objective

    write_thresholds(infection, result, "Val")
    card = read_card(infection)
    assert (card["threshold"], card["image_threshold"], card["min_area"]) == (
        result.best.threshold, result.best.image_threshold, result.best.min_area
    )
    assert isinstance(card["image_threshold"], float) and "Val split" in card["thresholds_tuned_on"]
    reloaded = TwoStagePipeline.from_pretrained(lung, infection, backend="torch")
    assert (reloaded.infection_threshold, reloaded.image_threshold, reloaded.min_area) == (
        result.best.threshold, result.best.image_threshold, result.best.min_area
    )


def test_tta_thresholds_are_stored_apart_and_used_only_with_tta(own_models, synthetic_root):
    lung, infection = own_models
    plain = tune_infection(TwoStagePipeline.from_pretrained(lung, infection, backend="torch"), synthetic_root, "Val")
    write_thresholds(infection, plain, "Val")
    tta_pipe = TwoStagePipeline.from_pretrained(lung, infection, backend="torch", tta=True)
    assert tta_pipe.infection_threshold == plain.best.threshold  # no tta block yet: the card's own decision
    # A TTA decision that differs from the plain one, so the test sees which one each pipeline reads.
    tta = TuneResult(Thresholds(0.65, 0.15, 7), 0.0, [], [], 0.1, 0.0)
    write_thresholds(infection, tta, "Val", block="tta")
    card = read_card(infection)
    assert card["tta"]["min_area"] == 7 and "with flip TTA" in card["tta"]["thresholds_tuned_on"]
    assert card["threshold"] == plain.best.threshold  # the plain decision is untouched
    with_tta = TwoStagePipeline.from_pretrained(lung, infection, backend="torch", tta=True)
    without = TwoStagePipeline.from_pretrained(lung, infection, backend="torch")
    assert (with_tta.infection_threshold, with_tta.image_threshold, with_tta.min_area) == (0.65, 0.15, 7)
    assert (without.infection_threshold, without.image_threshold, without.min_area) == (
        plain.best.threshold, plain.best.image_threshold, plain.best.min_area
    )
