"""Segmentation losses from MONAI, on logits of one channel."""

from __future__ import annotations

import torch
from torch import nn


def build_loss(name: str) -> nn.Module:
    """'bce_dice' (default), 'bce_dice_per_image', 'focal_jaccard' or 'focal_tversky'.

    Dice terms are pooled over the batch (``batch=True``) so that images with empty masks do not each add a
    loss of 1, except in 'bce_dice_per_image', which averages the Dice loss of each image that has a mask.
    """
    from monai.losses import DiceCELoss, DiceFocalLoss, FocalLoss, TverskyLoss

    if name == "bce_dice":
        return DiceCELoss(sigmoid=True, batch=True)
    if name == "bce_dice_per_image":
        return PerImageDiceBCELoss()
    if name == "focal_jaccard":
        return DiceFocalLoss(sigmoid=True, jaccard=True, batch=True)
    if name == "focal_tversky":
        return _Sum(FocalLoss(use_softmax=False), TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7, batch=True))
    raise ValueError(f"unknown loss {name!r}")


class _Sum(nn.Module):
    def __init__(self, *losses: nn.Module) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, logits, target):
        return sum(loss(logits, target) for loss in self.losses)


class PerImageDiceBCELoss(nn.Module):
    """Pixel BCE plus the mean soft-Dice loss of the images whose mask is not empty.

    A pooled Dice is dominated by large lesions; scoring each image on its own gives a small lesion the same
    weight as a large one, which is what a per-image mean Dice rewards. Images with empty masks (Normal,
    Non-COVID) are left to the BCE term and the image-level head, as a Dice of 0/0 teaches nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(sigmoid=True, batch=False, reduction="none")
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_image = self.dice(logits, target).flatten(1).mean(1)
        has_mask = target.flatten(1).amax(1) > 0
        dice = per_image[has_mask].mean() if has_mask.any() else logits.sum() * 0.0
        return self.bce(logits, target) + dice
