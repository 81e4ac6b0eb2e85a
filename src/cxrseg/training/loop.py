"""fit(): train one stage with validation, best checkpoint, resume, logs, progress, and optional DDP.

Files in ``config.out``:
  last.pt             full state (model, optimizer, scheduler, epoch, history), rewritten atomically each epoch
  best.safetensors    the weights with the best validation Dice, and best.json, its model card
  log.csv, log.json   one row per epoch: losses, validation figures, learning rate, seconds
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from cxrseg._atomic import atomic_path, atomic_write_text, remove_stale_temps
from cxrseg.data.dataset import InputSpec, SegmentationDataset
from cxrseg.errors import CxrsegError
from cxrseg.evaluation.metrics import Counts, detection, summarize
from cxrseg.inference.backends import bf16_supported, resolve_device
from cxrseg.inference.postprocess import clean_lung
from cxrseg.models.factory import SegNet, build_model, split_outputs
from cxrseg.progress import ProgressReporter
from cxrseg.models.store import default_card, load_model, save_model, shipped_weights, weights_digest
from cxrseg.training import distributed as ddp
from cxrseg.training.config import TrainConfig
from cxrseg.training.data import load_split, predicted_lung_roi, train_batches
from cxrseg.training.distill import Teacher, distill_loss
from cxrseg.training.losses import build_loss


@dataclass
class FitResult:
    best_weights: Path
    best_metric: float
    best_epoch: int
    history: list[dict]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 under 'auto' where the device runs it natively (CUDA, or a CPU with AVX-512 BF16 / AMX), else None."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if bf16_supported(device) else None


def say(text: str) -> None:
    """One line on stdout, between the progress displays (which are on stderr): transfers, resumes, the time
    budget, each epoch's summary."""
    print(text, flush=True)


def _transfer(model: SegNet, path: Path) -> dict:
    """Copy every tensor of ``path`` whose name and shape match; returns where they came from, for the card:
    the weights, how many tensors were copied, and how those weights were trained (so the chain is kept)."""
    src, card = load_model(path)
    own = model.state_dict()
    matched = {k: v for k, v in src.state_dict().items() if k in own and own[k].shape == v.shape}
    own.update(matched)
    model.load_state_dict(own)
    return {"weights": str(path), "tensors_copied": len(matched), "training": card.get("training")}


def _validate(model, loader, cfg: TrainConfig, device, info: ddp.DistInfo) -> dict:
    """Per-image Counts on this rank's shard, gathered on all ranks, summarised."""
    model.eval()
    parts, positives = [], []
    dtype = autocast_dtype(cfg.precision, device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        for batch in loader:
            x = batch["image"].to(device)
            seg, cls = split_outputs(model(x))
            pred = (seg[:, 0] > 0).cpu().numpy()
            gt = batch["mask"][:, 0].numpy() > 0.5
            if cfg.stage == "lung":
                pred = np.stack([clean_lung(p) for p in pred])
            else:
                pred &= batch["roi"][:, 0].numpy() > 0.5
                if cls is not None:
                    pred &= (cls.float() >= 0).cpu().numpy()[:, None, None]
            parts.append(Counts.of(pred, gt))
            positives.append(batch["has_infection"].numpy() > 0.5)
    gathered = ddp.gather_objects((parts, positives), info)
    counts = Counts.concat([c for g in gathered for c in g[0]])
    out = {"val_" + k: v for k, v in summarize(counts).items() if k in ("dice_mean", "iou_mean", "dice_pooled")}
    if cfg.stage == "infection":
        pos = np.concatenate([p for g in gathered for p in g[1]])
        pred_pos = ~counts.pred_empty
        det = detection(pred_pos, pos)
        out["val_dice_mean_covid"] = summarize(counts[pos])["dice_mean"]
        out["val_neg_with_infection"] = det["false_positive_rate"]
        out["val_sensitivity"] = det["sensitivity"]
    return out


def _write_logs(out: Path, history: list[dict]) -> None:
    atomic_write_text(out / "log.json", json.dumps(history, indent=2) + "\n")
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for row in history for k in row))
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(out / "log.csv", buf.getvalue())


OUTPUT_FILES = ("last.pt", "best.safetensors", "best.json", "log.json", "log.csv")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While training, SIGTERM (``kill``, a scheduler's preemption, torchrun stopping its workers) raises
    KeyboardInterrupt, so ``finally`` blocks run: a checkpoint being written is abandoned (its temporary file
    removed) and the previous complete ``last.pt`` stays. The old handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fit(cfg: TrainConfig) -> FitResult:
    """Train ``cfg.stage`` and return where the best weights are; resumes from ``out/last.pt`` if present.

    Launched by torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel: each rank sees its
    DistributedSampler share of the training set and of the validation set, validation counts are gathered
    so every rank computes the same figures, and only rank 0 writes files.
    """
    device = resolve_device(cfg.device)
    with sigterm_as_interrupt():
        info = ddp.init_distributed(use_cuda=device.type == "cuda")
        try:
            return _fit(cfg, info)
        except KeyboardInterrupt:
            # an interrupt can land between a temporary file's creation and the guard that removes it
            if info.is_main and cfg.out.is_dir():
                remove_stale_temps(cfg.out, OUTPUT_FILES)
            raise
        finally:
            ddp.cleanup(info)


def _fit(cfg: TrainConfig, info: ddp.DistInfo) -> FitResult:
    show = cfg.progress and info.is_main
    device = resolve_device(cfg.device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    seed_everything(cfg.seed + info.rank)
    if info.is_main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(cfg.out, OUTPUT_FILES)  # left by a run killed mid-write
    ddp.barrier(info)

    # Models first, data second: a bad --init-from or --lung-model fails before minutes of loading.
    model = build_model(cfg.model)
    ancestry = None
    if cfg.init_from is not None:
        ancestry = _transfer(model, cfg.init_from)
        if show:
            say(f"transfer: {ancestry['tensors_copied']} tensors copied from {cfg.init_from}")
    amp_dtype = autocast_dtype(cfg.precision, device)  # the loss and the optimizer state stay fp32
    teacher = Teacher(cfg.distill_from, cfg.model, cfg.size, device, amp_dtype, cfg.stage) if cfg.distill_from else None
    if teacher is not None and show:
        say(f"distillation: the mean of {len(cfg.distill_from)} teacher(s), weight {cfg.distill_weight}")
    lung_path = cfg.lung_model or shipped_weights("lung")
    lung_model, lung_card = load_model(lung_path) if cfg.stage == "infection" and cfg.roi == "predicted" else (None, {})

    train = load_split(cfg, cfg.train_split, cfg.max_train, show)
    val = load_split(cfg, cfg.val_split, cfg.max_val, show)
    train_roi = val_roi = None
    roi_source = "n/a"
    if cfg.stage == "infection":
        if lung_model is not None:
            lung_model.to(device)
            lung_size = int(lung_card.get("input_size", train.images.shape[-1]))
            train_roi = predicted_lung_roi(lung_model, train.images, device, size=lung_size)
            val_roi = predicted_lung_roi(lung_model, val.images, device, size=lung_size)
            roi_source = f"stage-1 predictions of {Path(lung_path).name} (sha256 {weights_digest(lung_path)})"
            del lung_model
        else:
            roi_source = "ground-truth lung masks"

    spec = InputSpec.of(cfg.model, cfg.size)
    val_ds = SegmentationDataset(val, cfg.stage, roi=val_roi, augment=False, spec=spec)
    train_loader, sampler = train_batches(cfg, train, train_roi, spec, device, info)
    val_shard = Subset(val_ds, list(range(info.rank, len(val_ds), info.world_size)))
    val_loader = DataLoader(val_shard, batch_size=cfg.batch_size * 2, num_workers=min(cfg.num_workers, 2))

    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels once
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if info.enabled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_loader))
    scheduler = _one_cycle(optimizer, cfg.lr, cfg.epochs * steps_per_epoch)
    seg_loss = build_loss(cfg.loss)
    cls_loss = torch.nn.BCEWithLogitsLoss()
    ema = _ema_model(model, cfg.ema) if cfg.ema else None
    planned = cfg.epochs  # lowered after epoch 1 when a time budget is set

    start_epoch, best, best_epoch, history = 0, -math.inf, -1, []
    last = cfg.out / "last.pt"
    best_path = cfg.out / "best.safetensors"
    if cfg.resume and last.exists():
        try:
            state = torch.load(last, map_location=device, weights_only=False)
        except Exception as e:
            raise CxrsegError(f"{last}: cannot resume, checkpoint unreadable ({e}); delete it or pass --no-resume") from e
        if state.get("stage") != cfg.stage:
            raise CxrsegError(f"{last}: is a {state.get('stage')} run, not {cfg.stage}; use another --out")
        saved_epochs = state.get("config", {}).get("epochs", cfg.epochs)
        if saved_epochs != cfg.epochs:
            raise CxrsegError(
                f"{last}: is a {saved_epochs}-epoch run and the learning-rate schedule spans the whole run; "
                f"resume with --epochs {saved_epochs}, or start a new --out (--init-from {best_path} to continue "
                "from its weights), or pass --no-resume"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        planned = state.get("planned_epochs", cfg.epochs)
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        start_epoch, best, best_epoch, history = state["epoch"] + 1, state["best"], state["best_epoch"], state["history"]
        if planned != cfg.epochs:
            scheduler = _one_cycle(optimizer, cfg.lr, planned * steps_per_epoch)
        if state["scheduler"].get("total_steps") == scheduler.total_steps:
            scheduler.load_state_dict(state["scheduler"])
        else:  # batches per epoch changed (another world size or batch size): same place in the schedule
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(start_epoch * steps_per_epoch):
                    scheduler.step()
        rng = state["rng"]  # one state per rank (older checkpoints: a single state)
        if isinstance(rng, list):
            rng = rng[info.rank] if info.rank < len(rng) else None
        if rng is not None:
            torch.set_rng_state(rng)
        if show and start_epoch >= planned:
            say(f"resumed from {last}: all {planned} epochs already done")
        elif show:
            say(f"resumed from {last}: continuing at epoch {start_epoch + 1}/{planned}")

    epoch = start_epoch
    while epoch < planned:
        t0 = time.time()
        net.train()
        if sampler is not None:
            sampler.set_epoch(epoch)  # the DistributedSampler's or DeviceBatches' shuffle (and augmentation)
        totals = {"loss": 0.0, "seg_loss": 0.0, "cls_loss": 0.0, **({"distill_loss": 0.0} if teacher else {})}
        n_batches = 0
        shown = ProgressReporter(f"{cfg.stage} epoch {epoch + 1}/{planned}", unit="batch", quiet=not show)
        for batch in shown.iterate(train_loader):
            x, y = batch["image"].to(device, non_blocking=True), batch["mask"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                seg, cls = split_outputs(net(x))
            ls = seg_loss(seg.float(), y)
            lc = cls_loss(cls.float(), batch["has_infection"].to(device)) if cls is not None else torch.zeros((), device=device)
            loss = ls + cfg.class_loss_weight * lc
            if teacher is not None:
                ld = distill_loss(seg.float(), teacher(x))
                loss = loss + cfg.distill_weight * ld
                totals["distill_loss"] += ld.item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            n_batches += 1
            totals["loss"] += loss.item()
            totals["seg_loss"] += ls.item()
            totals["cls_loss"] += lc.item()
            shown.display.set_postfix(f"loss={totals['loss'] / n_batches:.4f}")
        # Mean training losses over every rank's batches.
        *sums, n_all = ddp.sum_floats([*totals.values(), float(n_batches)], info)
        row = {"epoch": epoch + 1, **{k: v / max(n_all, 1) for k, v in zip(totals, sums)}}
        scored = ema.module if ema is not None else model
        row.update(_validate(scored, val_loader, cfg, device, info))
        row["lr"] = scheduler.get_last_lr()[0]
        row["seconds"] = round(time.time() - t0, 1)
        if cfg.time_budget_s and start_epoch == 0 and epoch < 2 and epoch + 1 < planned:
            fits = epochs_within(cfg.time_budget_s, [r["seconds"] for r in history] + [row["seconds"]], cfg.epochs)
            if fits != planned:  # the same one-cycle shape over the epochs that fit, resumed where it is now
                planned = fits
                scheduler = _one_cycle(optimizer, cfg.lr, planned * steps_per_epoch)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for _ in range((epoch + 1) * steps_per_epoch):
                        scheduler.step()
                if show:
                    say(f"time budget {cfg.time_budget_s:.0f} s at {row['seconds']} s/epoch: {planned} epochs")
        row["planned_epochs"] = planned
        history.append(row)
        metric = row["val_dice_mean"]  # the same on every rank: validation is gathered
        improved = metric > best
        if improved:
            best, best_epoch = metric, epoch + 1
        rng_states = ddp.gather_objects(torch.get_rng_state(), info)
        if info.is_main:
            if improved:
                card = default_card(cfg.stage, cfg.model, cfg.size)
                card["training"] = {
                    "data": f"COVID-QU-Ex Infection Segmentation Data, {cfg.train_split} split ({len(train)} images)",
                    "validation": f"{cfg.val_split} split ({len(val)} images)",
                    "roi": roi_source,
                    "epoch": epoch + 1,
                    "config": cfg.to_dict(),
                    "command": cfg.command,
                    "init_from": ancestry,
                }
                card["metrics"] = {k: v for k, v in row.items() if k.startswith("val_")}
                save_model(best_path, scored, card)
            with atomic_path(last) as tmp:
                torch.save(
                    {
                        "stage": cfg.stage,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "epoch": epoch,
                        "best": best,
                        "best_epoch": best_epoch,
                        "history": history,
                        "rng": rng_states,
                        "config": cfg.to_dict(),
                        "planned_epochs": planned,
                        **({"ema": ema.state_dict()} if ema is not None else {}),
                    },
                    tmp,
                )
            _write_logs(cfg.out, history)
            summary = ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float) and k != "lr")
            say(f"epoch {epoch + 1}/{planned}: {summary}" + (" (best)" if best_epoch == epoch + 1 else ""))
        ddp.barrier(info)
        epoch += 1
    return FitResult(best_path, best, best_epoch, history)


def epochs_within(budget_s: float, seconds: list[float], cap: int) -> int:
    """Epochs that fit a time budget: those done, plus what is left of it at the last epoch's pace (at most ``cap``).

    The loop asks after epoch 1 and again after epoch 2: a first epoch carries the warm-up (cuDNN autotuning, first
    allocations, other runs still loading), 18-23 s against a steady 6-7 s on the H100 in session 7, and a plan
    fitted on it alone used a third of the budget.
    """
    left = budget_s - sum(seconds)
    return max(len(seconds), min(cap, len(seconds) + int(left // max(seconds[-1], 1e-3))))


def _one_cycle(optimizer, lr: float, total_steps: int):
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.1,
                                               anneal_strategy="cos")


def _ema_model(model: SegNet, decay: float):
    """An exponential moving average of ``model``'s parameters and buffers, updated after each step."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
