"""In-memory arrays of a COVID-QU-Ex selection and the torch Dataset that feeds training.

The infection part is small (4,660 images of 256x256: about 0.9 GB as uint8 with both masks), so
images are decoded once into uint8 arrays; every epoch then costs only augmentation and the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.utils import convert_to_tensor
from PIL import Image
from torch.utils.data import Dataset

from cxrseg.data.covidqu import Sample
from cxrseg.data.io import read_gray_u8, read_mask
from cxrseg.data.normalize import normalize_input
from cxrseg.data.roi import crop_resize, lung_box
from cxrseg.data.shifts import RandAcquisitionShift
from cxrseg.errors import InputFileError

TARGETS = ("lung", "infection")


@dataclass
class ArrayBundle:
    """Images and masks of N samples at one size: uint8 images, bool masks, class labels."""

    images: np.ndarray  # (N, S, S) uint8
    lungs: np.ndarray  # (N, S, S) bool
    infections: np.ndarray | None  # (N, S, S) bool, or None for the lung-only part
    labels: list[str]
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def has_infection(self) -> np.ndarray:
        """(N,) bool: the ground truth holds any infection pixel."""
        if self.infections is None:
            return np.zeros(len(self), bool)
        return self.infections.reshape(len(self), -1).any(axis=1)


def resize_u8(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to ``size`` (an int for square, or (height, width))."""
    h, w = (size, size) if isinstance(size, int) else size
    if mask.shape == (h, w):
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127


def _load_one(s: Sample, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    img = read_gray_u8(s.image)
    lung = read_mask(s.lung)
    if not lung.any():
        raise InputFileError(s.lung, "lung mask is empty (every X-ray has lungs); fix or remove this sample")
    if lung.shape != img.shape:
        raise InputFileError(s.lung, f"mask is {lung.shape[1]}x{lung.shape[0]} but its image is {img.shape[1]}x{img.shape[0]}")
    inf = None
    if s.infection is not None:
        inf = read_mask(s.infection)
        if inf.shape != img.shape:
            raise InputFileError(
                s.infection, f"mask is {inf.shape[1]}x{inf.shape[0]} but its image is {img.shape[1]}x{img.shape[0]}"
            )
        inf = resize_mask(inf, size)
    return resize_u8(img, size), resize_mask(lung, size), inf


def load_arrays(samples: Sequence[Sample], size: int = 256, progress: Callable | None = None) -> ArrayBundle:
    """Decode ``samples`` into an :class:`ArrayBundle` at ``size`` x ``size``; errors name the bad file."""
    n = len(samples)
    images = np.zeros((n, size, size), np.uint8)
    lungs = np.zeros((n, size, size), bool)
    with_inf = n > 0 and all(s.infection is not None for s in samples)
    infections = np.zeros((n, size, size), bool) if with_inf else None
    it = progress(samples) if progress else samples
    for i, s in enumerate(it):
        img, lung, inf = _load_one(s, size)
        images[i], lungs[i] = img, lung
        if infections is not None:
            infections[i] = inf
    return ArrayBundle(images, lungs, infections, [s.label for s in samples], [s.name for s in samples])


def train_transforms(seed: int = 0, intensity: bool = True):
    """Paired augmentation (image and mask move together): flip, small affine, and (``intensity``)
    brightness/contrast jitter, which the acquisition shifts replace when they are on."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    keys = ["image", "mask", "roi"]
    t = Compose(
        [
            RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            RandAffined(
                keys=keys,
                prob=0.7,
                rotate_range=(np.deg2rad(10),),
                scale_range=(0.1, 0.1),
                translate_range=(12, 12),
                mode=("bilinear", "nearest", "nearest"),
                padding_mode="zeros",
            ),
        ]
        + (
            [
                RandAdjustContrastd(keys="image", prob=0.3, gamma=(0.7, 1.5)),
                RandScaleIntensityd(keys="image", prob=0.3, factors=0.15),
                RandShiftIntensityd(keys="image", prob=0.3, offsets=0.08),
            ]
            if intensity
            else []
        )
    )
    t.set_random_state(seed)
    return t


@dataclass(frozen=True)
class InputSpec:
    """How a network's input is made from an X-ray (and, for stage 2, a lung mask): see ModelConfig."""

    norm: str = "none"
    roi_input: str = "masked"
    roi_margin: float | None = None
    size: int | None = None  # network input size; None: the arrays' size

    @classmethod
    def of(cls, config, size: int | None = None) -> InputSpec:
        return cls(config.input_norm, config.roi_input, config.roi_margin, size)


def stage2_input(image: torch.Tensor, roi: torch.Tensor, roi_input: str) -> torch.Tensor:
    """(1|2, S, S) network input from a (1, S, S) X-ray and its (1, S, S) lung mask."""
    return image * roi if roi_input == "masked" else torch.cat([image, roi], 0)


class SegmentationDataset(Dataset):
    """Yields dicts of float tensors: ``image`` (C,S,S), ``mask`` (1,S,S), ``roi`` (1,S,S), ``has_infection`` ().

    ``target='lung'``: the input is the X-ray, the mask its lungs.
    ``target='infection'``: the input is built from the X-ray and the ``roi`` lung mask as ``spec`` says
    (masked or two channels, optionally cropped to the lungs' box), the mask its infection.
    ``roi`` defaults to the ground-truth lungs; pass stage-1 predictions to train as the pipeline runs.
    With ``shifts``, training images first get random acquisition shifts (:mod:`cxrseg.data.shifts`), then
    the spec's normalisation, then the paired geometric augmentation.
    """

    def __init__(
        self,
        bundle: ArrayBundle,
        target: str = "lung",
        roi: np.ndarray | None = None,
        augment: bool = False,
        seed: int = 0,
        spec: InputSpec = InputSpec(),
        shifts: bool = False,
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
        if target == "infection" and bundle.infections is None:
            raise ValueError("infection target needs infection masks (the Infection Segmentation Data part)")
        self.bundle = bundle
        self.target = target
        self.roi = bundle.lungs if roi is None else roi
        self.spec = spec
        self.transform = train_transforms(seed, intensity=not shifts) if augment else None
        self.shift = RandAcquisitionShift(seed=seed + 7919) if (augment and shifts) else None
        self.positive = bundle.has_infection()

    def __len__(self) -> int:
        return len(self.bundle)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        pixels = self.bundle.images[i].astype(np.float32) / 255.0
        if self.shift is not None:
            pixels = self.shift(pixels)
        image = torch.from_numpy(normalize_input(pixels, self.spec.norm))[None]
        mask_np = self.bundle.lungs[i] if self.target == "lung" else self.bundle.infections[i]
        mask = torch.from_numpy(mask_np.astype(np.float32))[None]
        roi = torch.from_numpy(self.roi[i].astype(np.float32))[None]
        item = {"image": image, "mask": mask, "roi": roi}
        if self.transform is not None:
            item = self.transform(item)
            # Plain tensors, not MONAI MetaTensors: metadata tracking slows every later op.
            item = {k: convert_to_tensor(v, track_meta=False).float() for k, v in item.items()}
            item["image"] = item["image"].clamp_(0.0, 1.0)
        image, mask, roi = item["image"], (item["mask"] > 0.5).float(), (item["roi"] > 0.5).float()
        size = self.spec.size or image.shape[-1]
        if self.target == "infection" and self.spec.roi_margin is not None:
            box = lung_box(roi[0].numpy() > 0.5, self.spec.roi_margin)
            image = crop_resize(image, box, size)
            mask, roi = crop_resize(mask, box, size, "nearest"), crop_resize(roi, box, size, "nearest")
        elif size != image.shape[-1]:
            image = crop_resize(image, (0, image.shape[-2], 0, image.shape[-1]), size)
            mask = crop_resize(mask, (0, mask.shape[-2], 0, mask.shape[-1]), size, "nearest")
            roi = crop_resize(roi, (0, roi.shape[-2], 0, roi.shape[-1]), size, "nearest")
        if self.target == "infection":
            image = stage2_input(image, roi, self.spec.roi_input)
        return {
            "image": image.contiguous(),
            "mask": mask,
            "roi": roi,
            "has_infection": torch.tensor(float(self.positive[i])),
        }
