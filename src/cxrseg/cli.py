"""The ``cxrseg`` command line: thin verbs over the library; user errors print one line, never a traceback."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cxrseg.errors import CxrsegError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Two-stage chest X-ray segmentation: lungs, then COVID-19 infection, with per-lung severity.",
)


@app.callback()
def _root() -> None:
    """cxrseg: segment lungs and COVID-19 infection in chest X-rays."""


def _fail(message: str, code: int = 2) -> None:
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


@app.command()
def train(
    stage: Annotated[str, typer.Argument(help="'lung' (stage 1) or 'infection' (stage 2)")],
    data: Annotated[Path, typer.Option(help="COVID-QU-Ex folder")],
    out: Annotated[Path, typer.Option(help="run folder: checkpoints, logs, best model")],
    epochs: int = 20,
    batch_size: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    size: Annotated[int, typer.Option(help="model input size (pixels, square)")] = 256,
    loss: Annotated[str, typer.Option(help="bce_dice, focal_jaccard or focal_tversky")] = "bce_dice",
    channels: Annotated[str, typer.Option(help="U-Net channels per level")] = "16,32,64,128,256",
    res_units: int = 2,
    classifier: Annotated[Optional[bool], typer.Option("--classifier/--no-classifier", help="image-level head (default: on for infection)")] = None,
    roi: Annotated[str, typer.Option(help="stage-2 ROI from 'predicted' stage-1 masks or 'ground_truth'")] = "predicted",
    lung_model: Annotated[Optional[Path], typer.Option(help="stage-1 weights for --roi predicted (default: shipped)")] = None,
    init_from: Annotated[Optional[Path], typer.Option(help="start from these weights, e.g. stage 1 (transfer)")] = None,
    max_train: Annotated[Optional[int], typer.Option(help="use at most this many training images")] = None,
    max_val: Annotated[Optional[int], typer.Option(help="use at most this many validation images")] = None,
    workers: int = 0,
    device: str = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="continue from OUT/last.pt if present")] = True,
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
    )
    cfg = TrainConfig(
        stage=stage, data=data, out=out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, size=size,
        loss=loss, model=model, roi=roi, lung_model=lung_model, init_from=init_from, max_train=max_train,
        max_val=max_val, num_workers=workers, device=device, resume=resume,
        command="cxrseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    result = fit(cfg)
    typer.echo(f"best validation Dice {result.best_metric:.4f} at epoch {result.best_epoch}: {result.best_weights}")


def main() -> None:
    """Entry point: run the app, turning every :class:`CxrsegError` into one line on stderr and exit code 2."""
    try:
        app()
    except CxrsegError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
