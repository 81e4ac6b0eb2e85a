"""A second opinion for the image-level decision: a whole-film classifier's P(COVID-19), averaged with stage 2's head.

On COVID-QU-Ex Val the mean ranks films better than the head alone (ROC AUC 0.992 against 0.990 for the stage 2 of
session 7) and, with the thresholds retuned, keeps 10-11 more COVID-19 films from the veto at the same false-alarm rate
(docs/experiments.md, rows 43-47 and 57); on films from elsewhere it is at chance, like the head. Trained by
``cxrseg train-classifier``. The shipped one joins the shipped stage 2 by default (``classifier='auto'``); its
card holds the decision (pixel and image thresholds, minimum area) that ``cxrseg tune --classifier W`` chose for
the mean, which the pipeline then uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cxrseg.data.normalize import normalize_input
from cxrseg.errors import CxrsegError
from cxrseg.models.store import load_classifier, shipped_weights


def classifier_input(images: np.ndarray, size: int, norm: str) -> torch.Tensor:
    """(N, 1, size, size) network input from (N, H, W) float32 films in [0, 1]: normalised, then resized."""
    x = torch.from_numpy(normalize_input(images, norm))[:, None]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@torch.inference_mode()
def film_probabilities(model: torch.nn.Module, x: torch.Tensor, device: torch.device, bf16: bool = False,
                       batch_size: int = 32, tta: bool = False) -> np.ndarray:
    """(N,) sigmoid outputs of ``model`` on the inputs ``x`` (N, 1, S, S), in batches, under bf16 autocast when asked;
    with ``tta`` the mean with the mirrored input. Used by the pipeline and by the trainer's validation."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        batch = x[i : i + batch_size].to(device)
        views = [batch, batch.flip(-1)] if tta else [batch]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            p = sum(torch.sigmoid(model(v).float()[:, 0]) for v in views) / len(views)
        out.append(p.cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


class FilmClassifier:
    """P(COVID-19) for whole films from the weights of ``cxrseg train-classifier``, in fp32 or bf16 autocast."""

    def __init__(self, weights: str | Path, device: torch.device | str = "cpu", precision: str = "fp32",
                 batch_size: int = 32) -> None:
        self.weights = Path(weights)
        model, self.card = load_classifier(weights)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.size = int(self.card["input_size"])
        self.norm = self.card.get("architecture", {}).get("input_norm", "none")
        self.precision, self.batch_size = precision, batch_size

    @property
    def has_decision(self) -> bool:
        """Did ``cxrseg tune --classifier`` store thresholds for the averaged decision in this card?"""
        return self.card.get("image_threshold") is not None

    def __call__(self, images: np.ndarray, tta: bool = False) -> np.ndarray:
        """(N,) probabilities for (N, H, W) float32 films in [0, 1]; with ``tta`` the mean with the mirrored film."""
        x = classifier_input(images, self.size, self.norm)
        return film_probabilities(self.model, x, self.device, self.precision == "bf16", self.batch_size, tta)


def combine(head: np.ndarray | None, film: np.ndarray) -> np.ndarray:
    """The averaged P(COVID-19): the mean of the head's and the classifier's, or the classifier's without a head."""
    return film if head is None else (head + film) / 2


def resolve_classifier(classifier: str | Path | None, infection: str | Path | None) -> Path | None:
    """The classifier weights a pipeline uses: 'auto' means the shipped classifier, but only beside the shipped stage 2
    (``infection`` None), since its card's thresholds were tuned for that pair; 'none' or None means the head alone;
    anything else is a path to ``cxrseg train-classifier`` weights."""
    if classifier is None or str(classifier).lower() == "none":
        return None
    if str(classifier).lower() != "auto":
        return Path(classifier)
    if infection is not None and Path(infection).resolve() != shipped_weights("infection").resolve():
        return None
    try:
        return shipped_weights("classifier")
    except CxrsegError:  # an install without it: the head alone, as before it shipped
        return None
