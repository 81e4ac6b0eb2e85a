"""What training reads: the splits at the right size, stage 1's lungs for stage 2, and the training batches."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from cxrseg.data.covidqu import DATA_SIZE, LUNG_PART, find_dataset, require_samples, stratified_subset
from cxrseg.data.dataset import ArrayBundle, InputSpec, SegmentationDataset, load_arrays, resize_mask
from cxrseg.data.normalize import normalize_input
from cxrseg.inference.backends import TorchBackend
from cxrseg.inference.postprocess import clean_lung
from cxrseg.models.factory import SegNet
from cxrseg.progress import ProgressReporter
from cxrseg.training import distributed as ddp
from cxrseg.training.batch_augment import DeviceBatches
from cxrseg.training.config import TrainConfig



def predicted_lung_roi(
    lung_model: SegNet, images: np.ndarray, device: torch.device, batch_size: int = 32, size: int | None = None
) -> np.ndarray:
    """Stage-1 lung masks (N, S, S) bool for uint8 images of size S, post-processed (model run at its own size)."""
    backend = TorchBackend(lung_model, device)
    out = np.zeros(images.shape, bool)
    norm = lung_model.config.input_norm
    size = size or images.shape[-1]
    for i in range(0, len(images), batch_size):
        x = normalize_input(images[i : i + batch_size].astype(np.float32) / 255.0, norm)
        if size != x.shape[-1]:
            x = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None], size=(size, size), mode="bilinear",
                                                antialias=True)[:, 0].numpy()
        seg, _ = backend(x[:, None])
        for j, logit in enumerate(seg[:, 0]):
            out[i + j] = resize_mask(clean_lung(logit > 0), images.shape[-1])
    return out


def _crops(cfg: TrainConfig) -> bool:
    return cfg.stage == "infection" and cfg.model.roi_margin is not None


def load_split(cfg: TrainConfig, split: str, limit: int | None, show: bool) -> ArrayBundle:
    """``split`` decoded at the size training needs (256 when stage 2 crops, else the model size), maybe subsampled."""
    # Stage 2 needs infection masks; stage 1 prefers the larger lung part when the folder has it.
    part = "infection" if cfg.stage == "infection" else ("lung" if (cfg.data / LUNG_PART).is_dir() else "auto")
    index = find_dataset(cfg.data, part=part, splits=(split,))
    samples = stratified_subset(require_samples(index, (split,), cfg.stage), limit, cfg.seed)
    bar = ProgressReporter(f"load {split}", unit="img").iterate if show else None
    return load_arrays(samples, DATA_SIZE if _crops(cfg) else cfg.size, progress=bar)


def train_batches(cfg: TrainConfig, train: ArrayBundle, roi: np.ndarray | None, spec: InputSpec,
                   device: torch.device, info: ddp.DistInfo):
    """(training batches, the object to tell each epoch or None): per-sample augmentation in DataLoader workers,
    or, with ``batch_augment``, the whole set on the device augmented a batch at a time."""
    seed = cfg.seed + info.rank
    if cfg.batch_augment:  # one shuffle for all ranks (each takes its share); augmentation seeded per rank
        batches = DeviceBatches(train, cfg.stage, roi, spec, cfg.batch_size, device, shifts=cfg.shift_augment,
                                seed=cfg.seed, rank=info.rank, world_size=info.world_size, framing_zoom=cfg.framing_zoom,
                                tighten_negatives=cfg.tighten_negatives)
        return batches, batches
    train_ds = SegmentationDataset(train, cfg.stage, roi=roi, augment=True, seed=seed, spec=spec,
                                   shifts=cfg.shift_augment)
    sampler = DistributedSampler(train_ds, info.world_size, info.rank, seed=cfg.seed) if info.enabled else None
    loader = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=cfg.num_workers,
        drop_last=len(train_ds) > cfg.batch_size * info.world_size,
        persistent_workers=cfg.num_workers > 0,
        pin_memory=device.type == "cuda",
    )
    return loader, sampler
