"""How sure stage 1 is of the lungs it found, as one number per film, and the warning when it is low.

``lung_confidence`` is stage 1's mean lung probability inside its own cleaned lung mask, at the model grid. On
COVID-QU-Ex Val it ranks the films by their true lung Dice (Spearman 0.87), and inputs that are not an upright
frontal chest X-ray (noise, photographs, inverted, rotated or upside-down films, a mask file given as an image)
score below nearly every real film. Measured by ``python benchmarks/input_check.py`` (README: what `predict` writes; docs/input_check*.md).
"""

from __future__ import annotations

import numpy as np

# Below these a film's lungs are doubtful. Averaging flips (TTA) or models (the accurate mode) lowers the confidence
# where they disagree, so each way of running stage 1 has its own threshold, set where it warns at most 0.6% of
# COVID-QU-Ex Val films; plain 0.96 also warns 1 of 88 films from other sources and 95% of the wrong inputs of
# benchmarks/input_check.py, the TTA and accurate thresholds all of them (docs/input_check*.md).
LOW_LUNG_CONFIDENCE = {"plain": 0.96, "tta": 0.95, "accurate": 0.94}


def confidence_threshold(models: int = 1, tta: bool = False) -> float:
    """The threshold for stage 1 run as ``models`` averaged models (several: the accurate mode), with flip TTA or
    not."""
    return LOW_LUNG_CONFIDENCE["accurate" if models > 1 else "tta" if tta else "plain"]


def lung_confidence(prob: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """(N,) mean of ``prob`` (N, S, S) inside each cleaned mask ``lung`` (N, S, S); 0 where no lung was found."""
    inside = lung.reshape(len(lung), -1)
    total = inside.sum(axis=1)
    summed = (prob.reshape(len(prob), -1) * inside).sum(axis=1, dtype=np.float64)
    return np.where(total > 0, summed / np.maximum(total, 1), 0.0).astype(np.float32)


def doubtful(confidence: float | None, threshold: float = LOW_LUNG_CONFIDENCE["plain"]) -> bool:
    """Whether a film's lungs were found with low confidence (None: not measured, so not doubtful)."""
    return confidence is not None and confidence < threshold


def lung_warning(confidence: float | None, threshold: float = LOW_LUNG_CONFIDENCE["plain"]) -> str:
    """A sentence for the reader when the lungs were found with low confidence; empty otherwise."""
    if not doubtful(confidence, threshold):
        return ""
    return (
        f"the lungs were found with low confidence ({confidence:.3f} < {threshold:.2f}): check that this is a "
        "frontal chest X-ray, upright and not inverted; every figure for this film may be wrong"
    )
