"""Segmentation losses from MONAI, on logits of one channel."""

from __future__ import annotations

from torch import nn


def build_loss(name: str) -> nn.Module:
    """'bce_dice' (default), 'focal_jaccard' or 'focal_tversky'; Dice terms are pooled over the batch
    (``batch=True``) so that images with empty masks do not each add a loss of 1."""
    from monai.losses import DiceCELoss, DiceFocalLoss, FocalLoss, TverskyLoss

    if name == "bce_dice":
        return DiceCELoss(sigmoid=True, batch=True)
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
