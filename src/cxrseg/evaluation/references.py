"""Published figures on COVID-QU-Ex that our evaluations are compared with, and the convention they use.

Tahir et al. 2021 (the dataset's own paper) and the best student report on the same data give Dice and IoU
on the Test split of the *Infection Segmentation Data*. Their IoU/Dice ratio (0.94 for infection) rules out
pooled figures: a pooled IoU is D / (2 - D), which would be 0.79 for D = 0.88. Both are the **per-image mean
over all images** (COVID-19, Non-COVID and Normal alike), an empty prediction on an empty mask scoring 1 and any
predicted pixel on an empty mask scoring 0. That is ``summarize(...)["dice_mean"]`` / ``["iou_mean"]`` over
the whole split (subset ``all``) in :mod:`cxrseg.evaluation.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The label every report gives the figure the references use.
CONVENTION_LABEL = "per-image mean over all images (convention of Tahir et al. 2021)"

#: One sentence on why the references must be read in that convention (printed under comparison tables).
CONVENTION_REASONING = (
    "The published IoU/Dice ratio (0.94) rules out pooled figures (a pooled IoU is D/(2-D), 0.79 for D = 0.88), "
    "so the references are per-image means over all images, Normal and Non-COVID included, where an empty "
    "prediction on an empty mask scores 1; every negative image left silent therefore counts as a perfect score, "
    "which is why the COVID-19-only mean is the stricter figure."
)


@dataclass(frozen=True)
class Reference:
    """One published result: Dice and IoU (per-image mean over all images) for each stage, None if not given."""

    name: str
    split: str
    lung_dice: float | None = None
    lung_iou: float | None = None
    infection_dice: float | None = None
    infection_iou: float | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "split": self.split,
            "convention": CONVENTION_LABEL,
            "lung": {"dice": self.lung_dice, "iou": self.lung_iou},
            "infection": {"dice": self.infection_dice, "iou": self.infection_iou},
        }


TAHIR_2021 = Reference(
    name="Tahir et al. 2021",
    split="Test",
    lung_dice=0.9799,
    lung_iou=0.9611,
    infection_dice=0.8821,
    infection_iou=0.8305,
)
STUDENT_REPORT = Reference(
    name="best student report",
    split="Test",
    infection_dice=0.7957,
    infection_iou=0.7449,
)
REFERENCES: tuple[Reference, ...] = (TAHIR_2021, STUDENT_REPORT)

CITATION = (
    'A. M. Tahir et al., "COVID-19 Infection Localization and Severity Grading from Chest X-ray Images", '
    "Computers in Biology and Medicine 139, 105002 (2021)"
)
