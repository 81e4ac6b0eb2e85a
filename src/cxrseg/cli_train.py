"""The ``cxrseg train`` and ``cxrseg train-classifier`` verbs (registered on the app in :mod:`cxrseg.cli`)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def _fail(message: str, code: int = 2) -> None:
    """One red line on stderr and the exit code: how every verb reports a bad option."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _parse_channels(text: str) -> tuple[int, ...]:
    try:
        ch = tuple(int(c) for c in text.split(","))
    except ValueError:
        _fail(f"--channels must be comma-separated integers, not {text!r}")
    if len(ch) < 2 or min(ch) < 1:
        _fail("--channels needs at least two positive sizes, e.g. 16,32,64,128,256")
    return ch


def train(
    stage: Annotated[str, typer.Argument(help="'lung' (stage 1) or 'infection' (stage 2)")],
    data: Annotated[Path, typer.Option(help="COVID-QU-Ex folder")],
    out: Annotated[Path, typer.Option(help="run folder: checkpoints, logs, best model")],
    epochs: int = 20,
    batch_size: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    size: Annotated[int, typer.Option(help="model input size (pixels, square)")] = 256,
    loss: Annotated[str, typer.Option(help="bce_dice, bce_dice_per_image, focal_jaccard or focal_tversky")] = "bce_dice",
    channels: Annotated[str, typer.Option(help="U-Net channels per level")] = "16,32,64,128,256",
    res_units: int = 2,
    classifier: Annotated[Optional[bool], typer.Option("--classifier/--no-classifier", help="image-level head (default: on for infection)")] = None,
    roi: Annotated[str, typer.Option(help="stage-2 ROI from 'predicted' stage-1 masks or 'ground_truth'")] = "predicted",
    lung_model: Annotated[Optional[Path], typer.Option(help="stage-1 weights for --roi predicted (default: shipped)")] = None,
    init_from: Annotated[Optional[Path], typer.Option(help="start from these weights, e.g. stage 1 (transfer)")] = None,
    class_loss_weight: Annotated[float, typer.Option(help="weight of the image-level head's loss (stage 2)")] = 0.5,
    max_train: Annotated[Optional[int], typer.Option(help="use at most this many training images")] = None,
    max_val: Annotated[Optional[int], typer.Option(help="use at most this many validation images")] = None,
    workers: int = 0,
    device: str = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="continue from OUT/last.pt if present")] = True,
    precision: Annotated[str, typer.Option(help="auto (bf16 autocast where supported), bf16 or fp32")] = "auto",
    input_norm: Annotated[str, typer.Option(help="input normalisation: none or equalize (histogram)")] = "none",
    roi_input: Annotated[str, typer.Option(help="stage 2: 'masked' (X-ray x lungs) or 'image_and_mask' (2 channels)")] = "masked",
    roi_margin: Annotated[Optional[float], typer.Option(help="stage 2: crop to the lungs' box + this margin (e.g. 0.08)")] = None,
    shift_augment: Annotated[bool, typer.Option(help="random acquisition shifts: gamma, window, blur, noise, JPEG, ...")] = False,
    batch_augment: Annotated[bool, typer.Option(help="keep the training set on the device and augment whole batches there (for a GPU that per-sample workers cannot feed)")] = False,
    framing_zoom: Annotated[float, typer.Option(
        help="with --batch-augment: an isotropic zoom in or out up to this factor, e.g. 1.3 (1: off; against the "
             "framing shortcut)")] = 1.0,
    tighten_negatives: Annotated[float, typer.Option(
        help="with --batch-augment: half the films without COVID-19 framed tighter, zoomed in by up to this factor, "
             "e.g. 1.25 (1: off; against the framing shortcut)")] = 1.0,
    distill_from: Annotated[Optional[list[Path]], typer.Option(
        help="teacher weights (repeat for an ensemble): their mean probability on each training batch is a second, "
             "soft target (knowledge distillation)")] = None,
    distill_weight: Annotated[float, typer.Option(help="weight of the distillation loss")] = 1.0,
    ema: Annotated[Optional[float], typer.Option(help="validate and save an EMA of the weights with this decay")] = None,
    time_budget: Annotated[Optional[float], typer.Option(help="seconds: fit the epochs to this, timed on epoch 1")] = None,
) -> None:
    """Train one stage; resumes an interrupted run from OUT/last.pt."""
    import torch

    from cxrseg.models.factory import ModelConfig
    from cxrseg.training import TrainConfig, fit

    if threads:
        torch.set_num_threads(threads)
    model = ModelConfig(
        channels=_parse_channels(channels),
        num_res_units=res_units,
        classifier=(stage == "infection") if classifier is None else classifier,
        input_norm=input_norm,
        roi_input=roi_input,
        roi_margin=roi_margin,
    )
    cfg = TrainConfig(
        stage=stage, data=data, out=out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, size=size,
        loss=loss, model=model, roi=roi, lung_model=lung_model, init_from=init_from,
        class_loss_weight=class_loss_weight, max_train=max_train, max_val=max_val, num_workers=workers,
        device=device, resume=resume, precision=precision, shift_augment=shift_augment, ema=ema,
        time_budget_s=time_budget, batch_augment=batch_augment, framing_zoom=framing_zoom,
        tighten_negatives=tighten_negatives, distill_from=tuple(distill_from or ()), distill_weight=distill_weight,
        command="cxrseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    result = fit(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"best validation Dice {result.best_metric:.4f} at epoch {result.best_epoch}: {result.best_weights}")


def train_classifier(
    data: Annotated[Path, typer.Option(help="COVID-QU-Ex folder")],
    out: Annotated[Path, typer.Option(help="run folder: classifier.safetensors and its card, log, last.pt")],
    epochs: int = 14,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: Annotated[int, typer.Option(help="seed of the initial weights, the batches and the augmentation")] = 0,
    arch: Annotated[str, typer.Option(help="densenet121 (7.0M parameters) or densenet-small (0.67M)")] = "densenet121",
    size: Annotated[int, typer.Option(help="network input size (pixels, square)")] = 128,
    max_train: Annotated[Optional[int], typer.Option(help="use at most this many training images")] = None,
    max_val: Annotated[Optional[int], typer.Option(help="use at most this many validation images")] = None,
    device: str = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch")] = None,
    degrade_negatives: Annotated[float, typer.Option(
        help="chance of one extra blur/noise/down-sampling/JPEG on films without COVID-19 (against the "
             "image-quality shortcut)")] = 0.0,
    framing_zoom: Annotated[float, typer.Option(
        help="largest zoom in or out of the framing augmentation, e.g. 1.3 (1: off; against the framing shortcut)")] = 1.0,
    tighten_negatives: Annotated[float, typer.Option(
        help="half the films without COVID-19 framed tighter, zoomed in by up to this factor, e.g. 1.25 (1: off; "
             "COVID-QU-Ex's COVID-19 films are framed tighter)")] = 1.0,
) -> None:
    """Train the whole-film COVID-19 classifier (an experiment beside stage 2's head; resumes from OUT/last.pt)."""
    import torch

    from cxrseg.training.classifier import ClassifierTrainConfig, fit_classifier

    if threads:
        torch.set_num_threads(threads)
    cfg = ClassifierTrainConfig(data=data, out=out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, arch=arch,
                                size=size, max_train=max_train, max_val=max_val, device=device,
                                degrade_negatives=degrade_negatives, framing_zoom=framing_zoom,
                                tighten_negatives=tighten_negatives, command="cxrseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    typer.echo(f"classifier: {fit_classifier(cfg)}")
