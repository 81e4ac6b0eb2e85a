"""Knowledge distillation: frozen teacher networks whose mean probability is a second, soft target.

A student of the shipped size learns from the ground truth and from what a slower ensemble predicts on the same
augmented batch, so the default path can gain some of the ensemble's accuracy at no inference cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from cxrseg.errors import CxrsegError
from cxrseg.models.factory import ModelConfig, split_outputs
from cxrseg.models.store import load_model
from cxrseg.training.batch_augment import equalize_batch

# What a teacher must share with the student to read the student's batch as its own input. Stage 1 is the
# exception for the normalisation: its input is the plain X-ray, so a teacher's own can be applied to it.
_INPUT_FIELDS = ("roi_input", "input_norm", "roi_margin", "in_channels")


class Teacher:
    """The mean sigmoid probability of one or more frozen segmentation networks, run on the student's input."""

    def __init__(self, paths: Sequence[Path], student: ModelConfig, size: int, device: torch.device,
                 amp_dtype: torch.dtype | None = None, stage: str = "infection") -> None:
        if not paths:
            raise CxrsegError("distillation needs at least one teacher model")
        self.models: list[tuple[torch.nn.Module, bool]] = []  # (network, equalise the batch for it first)
        own_norm = stage == "lung" and student.input_norm == "none"
        for path in map(Path, paths):
            model, card = load_model(path)
            for name in (f for f in _INPUT_FIELDS if not (own_norm and f == "input_norm")):
                theirs, ours = getattr(model.config, name), getattr(student, name)
                if theirs != ours:
                    raise CxrsegError(f"{path}: teacher's {name} is {theirs!r} but the student's is {ours!r}; "
                                      "a teacher must read the same input as the student")
            teacher_size = int(card.get("input_size", size))
            if teacher_size != size:
                raise CxrsegError(f"{path}: teacher runs at {teacher_size} px but the student trains at {size}")
            equalise = model.config.input_norm == "equalize" and student.input_norm != "equalize"
            self.models.append((model.to(device).eval().requires_grad_(False), equalise))
        self.device = device
        self.amp_dtype = amp_dtype

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) float32 probabilities in [0, 1] for the student's input batch ``x``."""
        total = None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
            for model, equalise in self.models:
                seg, _ = split_outputs(model(equalize_batch(x) if equalise else x))
                p = torch.sigmoid(seg.float())
                total = p if total is None else total + p
        return total / len(self.models)


def distill_loss(logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
    """Pixel BCE of the student's logits against the teacher's probabilities. Its floor is the teacher's own
    entropy, not 0; its gradient, the student's probability minus the teacher's, is what teaches."""
    return F.binary_cross_entropy_with_logits(logits, soft_target)
