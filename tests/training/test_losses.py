"""Every training loss is finite, and lower for a right prediction than for a wrong one."""

from __future__ import annotations

import pytest
import torch

from cxrseg.training.config import LOSSES
from cxrseg.training.losses import build_loss


def _target() -> torch.Tensor:
    y = torch.zeros(4, 1, 32, 32)
    y[0, :, 8:20, 8:20] = 1
    y[1, :, 2:6, 20:30] = 1
    y[2, :, 10:30, 4:12] = 1  # image 3 has an empty mask, as Normal images do
    return y


@pytest.mark.parametrize("name", LOSSES)
def test_loss_prefers_the_right_answer(name):
    loss = build_loss(name)
    y = _target()
    perfect = torch.where(y > 0, 8.0, -8.0)
    wrong = -perfect
    unsure = torch.zeros_like(y)
    values = [loss(logits, y) for logits in (perfect, unsure, wrong)]
    for v in values:
        assert v.ndim == 0 and torch.isfinite(v)
    assert values[0] < values[1] < values[2]
    assert values[0] < 0.05


@pytest.mark.parametrize("name", LOSSES)
def test_loss_has_useful_gradients(name):
    loss = build_loss(name)
    logits = torch.zeros(4, 1, 32, 32, requires_grad=True)
    y = _target()
    loss(logits, y).backward()
    g = logits.grad
    assert torch.isfinite(g).all()
    # gradient descent raises logits on the mask and lowers them elsewhere
    assert g[y > 0].mean() < 0 < g[y == 0].mean()


@pytest.mark.parametrize("name", LOSSES)
def test_loss_on_all_empty_batch_is_finite(name):
    loss = build_loss(name)
    y = torch.zeros(2, 1, 16, 16)
    silent, noisy = loss(torch.full_like(y, -8.0), y), loss(torch.full_like(y, 8.0), y)
    assert torch.isfinite(silent) and torch.isfinite(noisy)
    assert silent < noisy


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("l2")


def test_per_image_dice_weighs_a_missed_small_lesion_like_a_large_one():
    y = torch.zeros(2, 1, 64, 64)
    y[0, :, 4:60, 4:60] = 1  # large lesion, found
    y[1, :, 30:33, 30:33] = 1  # small lesion, missed
    logits = torch.where(y > 0, 8.0, -8.0)
    logits[1] = -8.0
    pooled = build_loss("bce_dice")(logits, y)
    per_image = build_loss("bce_dice_per_image")(logits, y)
    assert pooled < 0.05  # the pooled Dice barely notices the missed lesion
    assert per_image > 0.45  # one of the two lesioned images scores a Dice loss of ~1
