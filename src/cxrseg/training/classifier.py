"""A whole-film COVID-19 classifier (a MONAI DenseNet), trained as a second opinion beside stage 2's image head.

Stage 2's head sees the lungs' box through the U-Net's bottleneck; this network sees the whole equalised film at
128x128. On Val the mean of the two probabilities ranks films better than either (docs/experiments.md, row 43).
Like the head, it learns COVID-QU-Ex's sources as much as the disease: on films from elsewhere it is at chance.

    cxrseg train-classifier --data ../shared/data/COVID-QU-Ex --out runs/classifier

Writes ``OUT/classifier.safetensors`` (the final epoch's weights: no epoch is picked on Val) with its card
``classifier.json``, ``OUT/log.json`` (loss and Val ROC AUC per epoch) and ``OUT/last.pt`` (resume).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cxrseg._atomic import atomic_path, atomic_write_text
from cxrseg.data.covidqu import find_dataset, require_samples, stratified_subset
from cxrseg.data.dataset import InputSpec, load_arrays
from cxrseg.errors import CxrsegError
from cxrseg.evaluation.metrics import roc_auc
from cxrseg.inference.backends import resolve_device
from cxrseg.inference.decision import classifier_input, film_probabilities
from cxrseg.models.factory import IMAGE_CLASSIFIER, build_image_classifier
from cxrseg.models.store import NORMALISATION, save_classifier, software_versions
from cxrseg.progress import ProgressReporter
from cxrseg.training.batch_augment import DeviceBatches
from cxrseg.training.loop import autocast_dtype, say, seed_everything

@dataclass
class ClassifierTrainConfig:
    """``cxrseg train-classifier``: defaults are the run of docs/experiments.md row 43."""

    data: Path
    out: Path
    epochs: int = 14
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    arch: str = "densenet121"  # or "densenet-small" (models.factory.CLASSIFIER_SIZES)
    size: int = 128
    input_norm: str = "equalize"
    shift_augment: bool = True
    # chance of one extra quality loss (blur, noise, down-sampling, JPEG) on films without COVID-19: COVID-QU-Ex's
    # COVID-19 films are the lower-quality ones, so without it a degraded film looks like COVID-19 (row 62)
    degrade_negatives: float = 0.0
    # largest zoom in or out of the framing augmentation, for every film alike (1: off; row 78: not enough against
    # the framing shortcut, which tighten_negatives takes out)
    framing_zoom: float = 1.0
    # largest zoom-in of the framing given to half the films without COVID-19 (1: off): matches their framing to
    # the COVID-19 films' tighter one, so framing is no cue (row 79)
    tighten_negatives: float = 1.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    train_split: str = "Train"
    val_split: str = "Val"
    max_train: int | None = None
    max_val: int | None = None
    progress: bool = True
    command: str = ""

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        if self.epochs < 1 or self.batch_size < 1:
            raise CxrsegError("epochs and batch size must be at least 1")
        if not 0.0 <= self.degrade_negatives <= 1.0:
            raise CxrsegError(f"degrade_negatives is a probability, got {self.degrade_negatives}")
        if self.framing_zoom < 1 or self.tighten_negatives < 1:
            raise CxrsegError("framing_zoom and tighten_negatives are factors of at least 1, got "
                              f"{self.framing_zoom} and {self.tighten_negatives}")


def fit_classifier(cfg: ClassifierTrainConfig) -> Path:
    """Train on ``cfg.train_split`` with bf16 autocast (fp32 loss and AdamW state), one-cycle schedule, batch
    augmentation (:mod:`cxrseg.training.batch_augment`); report Val ROC AUC each epoch; resume from last.pt."""
    device = resolve_device(cfg.device)
    dtype = autocast_dtype(cfg.precision, device)
    seed_everything(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    index = find_dataset(cfg.data, part="infection", splits=(cfg.train_split, cfg.val_split))
    split = lambda name, limit: load_arrays(stratified_subset(require_samples(index, (name,), "infection"), limit, cfg.seed), 256)  # noqa: E731
    train, val = split(cfg.train_split, cfg.max_train), split(cfg.val_split, cfg.max_val)
    batches = DeviceBatches(train, "lung", None, InputSpec(norm=cfg.input_norm, size=cfg.size), cfg.batch_size,
                            device, shifts=cfg.shift_augment, seed=cfg.seed, degrade_negatives=cfg.degrade_negatives,
                            framing_zoom=cfg.framing_zoom, tighten_negatives=cfg.tighten_negatives)
    x_val = classifier_input(val.images.astype(np.float32) / 255.0, cfg.size, cfg.input_norm)
    y_val = val.has_infection()
    model = build_image_classifier(cfg.arch).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=cfg.epochs * len(batches), pct_start=0.15)
    history, start = [], 0
    last = cfg.out / "last.pt"
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        if state.get("epochs") != cfg.epochs:
            raise CxrsegError(f"{last}: is a {state.get('epochs')}-epoch run and the schedule spans the whole run; "
                              f"resume with --epochs {state.get('epochs')} or use another --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start = state["history"], state["epoch"] + 1
        say(f"resumed from {last}: continuing at epoch {start + 1}/{cfg.epochs}")
    for epoch in range(start, cfg.epochs):
        t0, total = time.time(), 0.0
        model.train()
        batches.set_epoch(epoch)
        shown = ProgressReporter(f"classifier epoch {epoch + 1}/{cfg.epochs}", unit="batch", quiet=not cfg.progress)
        for batch in shown.iterate(batches):
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logit = model(batch["image"])
            loss = F.binary_cross_entropy_with_logits(logit.float()[:, 0], batch["has_infection"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
        p = film_probabilities(model, x_val, device, bf16=dtype is not None, batch_size=64)
        row = {"epoch": epoch + 1, "loss": total / max(1, len(batches)), "val_auc": roc_auc(p, y_val),
               "seconds": round(time.time() - t0, 1)}
        history.append(row)
        with atomic_path(last) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "epoch": epoch, "epochs": cfg.epochs, "history": history}, tmp)
        atomic_write_text(cfg.out / "log.json", json.dumps(history, indent=2) + "\n")
        say(f"epoch {epoch + 1}/{cfg.epochs}: loss={row['loss']:.4f}, val_auc={row['val_auc']:.4f}, seconds={row['seconds']}")
    card = {
        "name": "cxrseg-classifier",
        "stage": "classifier",
        "task": "P(COVID-19) for the whole film (a second opinion beside stage 2's image-level head)",
        "architecture": {"type": IMAGE_CLASSIFIER, "arch": cfg.arch, "in_channels": 1, "input_norm": cfg.input_norm},
        "input_size": cfg.size,
        "input": "whole chest X-ray",
        "normalisation": NORMALISATION + ("; then global histogram equalisation" if cfg.input_norm == "equalize" else ""),
        "training": {"data": f"COVID-QU-Ex Infection Segmentation Data, {cfg.train_split} split ({len(train)} images)",
                     "epoch": cfg.epochs, "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
                     "command": cfg.command},
        "metrics": {"split": f"{cfg.val_split} ({len(val)} images)", "val_auc": history[-1]["val_auc"] if history else math.nan},
        "software": software_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return save_classifier(cfg.out / "classifier.safetensors", model, card)
