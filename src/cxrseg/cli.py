"""The ``cxrseg`` command line: thin verbs over the library; user errors print one line, never a traceback."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cxrseg.cli_train import _fail, train, train_classifier
from cxrseg.errors import CxrsegError
from cxrseg.progress import ProgressReporter

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Two-stage chest X-ray segmentation: lungs, then COVID-19 infection, with per-lung severity.",
)


@app.callback()
def _root() -> None:
    """cxrseg: segment lungs and COVID-19 infection in chest X-rays."""


# The training verbs live in cli_train.py, registered here so that `cxrseg --help` lists every verb.
app.command()(train)
app.command("train-classifier")(train_classifier)


def _pipeline(lung: Optional[Path], infection: Optional[Path], backend: str, device: str, tta: bool, batch_size: int,
              precision: str = "auto", classifier: Optional[str | Path] = "auto", accurate: bool = False):
    from cxrseg.inference.pipeline import TwoStagePipeline

    return TwoStagePipeline.from_pretrained(lung, infection, backend=backend, device=device, tta=tta, batch_size=batch_size,
                                            precision=precision, classifier=classifier, accurate=accurate)


ClassifierOpt = Annotated[str, typer.Option(
    "--classifier", help="whole-film classifier averaged with stage 2's head: 'auto' (the shipped one, beside the "
    "shipped stage 2), 'none' (the head alone), or weights from cxrseg train-classifier")]


LungOpt = Annotated[Optional[Path], typer.Option("--lung-model", help="stage-1 weights (default: shipped)")]
InfectionOpt = Annotated[Optional[Path], typer.Option("--infection-model", help="stage-2 weights (default: shipped)")]
BackendOpt = Annotated[str, typer.Option(help="torch, onnx, or auto (torch bf16 where the CPU/GPU has bf16, else onnxruntime on CPU when installed)")]
PrecisionOpt = Annotated[str, typer.Option(help="auto (bf16 with --backend auto where supported), bf16 (torch) or fp32 (the reference)")]
AccurateOpt = Annotated[bool, typer.Option(
    "--accurate", help="slower, more accurate mode: flip TTA, stage 1 the mean of the shipped lung model and a wider "
    "one, and the thresholds tuned for it (3.5x the model work, 2.2x a folder run; README, 'Accurate mode')")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress lines: print only the results")]
BordersOpt = Annotated[bool, typer.Option("--crop-borders/--keep-borders",
                                          help="run the models inside flat edge bands (collimation, padding) only "
                                               "(off by default: see docs/experiments.md)")]


@app.command()
def data(
    root: Annotated[Path, typer.Argument(help="COVID-QU-Ex folder (or one of its two part folders)")],
    part: Annotated[str, typer.Option(help="infection, lung or auto")] = "auto",
) -> None:
    """Summarise a dataset: images and masks per split and class, share with infection, problems found."""
    from cxrseg.data.covidqu import find_dataset, summary_markdown

    index = find_dataset(root, part=part)
    if not index.samples and not index.counts:
        raise CxrsegError(f"{root}: no split/class folders with images found")
    typer.echo(summary_markdown(index))


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="image files or folders (PNG, JPEG, TIFF, DICOM)")],
    out: Annotated[Path, typer.Option(help="output folder")] = Path("cxrseg-out"),
    lung_model: LungOpt = None,
    infection_model: InfectionOpt = None,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "auto",
    device: str = "auto",
    batch_size: int = 8,
    tta: Annotated[bool, typer.Option(help="flip test-time augmentation + uncertainty map and score")] = False,
    resume: Annotated[bool, typer.Option(help="skip files already in OUT/results.csv")] = False,
    shard: Annotated[Optional[str], typer.Option(help="i/n: process every n-th file starting at i")] = None,
    workers: Annotated[Optional[int], typer.Option(help="decoding processes (default: min(2, CPU count); 0: in-process)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the final summary")] = False,
    make_report: Annotated[bool, typer.Option("--report", help="write OUT/report.html at the end (cxrseg report)")] = False,
    dicom_seg: Annotated[bool, typer.Option("--dicom-seg", help="also write STEM_seg.dcm, a DICOM SEG, for each DICOM input")] = False,
    covid_status: Annotated[str, typer.Option(help="unknown (the model judges COVID-19-likeness) or positive "
                                                   "(confirmed: no veto, grades from the opacity alone)")] = "unknown",
    crop_borders: BordersOpt = False,
    classifier: ClassifierOpt = "auto",
    accurate: AccurateOpt = False,
) -> None:
    """Segment X-rays: masks at the input size, an overlay, and a results.csv row per image.

    Progress goes to stderr: a bar on a terminal, else (a log file) a plain line every ~10% or 30 s.
    """
    from cxrseg.inference.batch import predict_files
    from cxrseg.inference.pipeline import COVID_STATUSES

    if covid_status not in COVID_STATUSES:
        _fail(f"--covid-status must be one of {', '.join(COVID_STATUSES)}, not {covid_status!r}")
    pipe = _pipeline(lung_model, infection_model, backend, device, tta, batch_size, precision, classifier, accurate)
    pipe.covid_status, pipe.crop_borders = covid_status, crop_borders
    progress = ProgressReporter("predict", unit="img", quiet=quiet)
    report = predict_files(
        pipe, inputs, out, resume=resume, shard=shard, workers=workers, progress=progress.start,
        on_failure=progress.skipped, dicom_seg=dicom_seg, on_note=progress.message,
    )
    _record_run(out, pipe)  # once the inputs were found: no folder for a typo
    typer.echo(f"{report.done} segmented, {report.skipped} already done, {len(report.failed)} failed -> {out}")
    if report.doubtful:
        typer.secho(f"{len(report.doubtful)} film(s) with doubtful lungs (low lung_confidence: perhaps not a frontal "
                    f"chest X-ray, or inverted or rotated); see the note column of {out}/results.csv",
                    fg=typer.colors.YELLOW, err=True)
    if dicom_seg:
        typer.echo(f"{report.dicom_segs} DICOM SEG file(s) written (STEM_seg.dcm, for DICOM inputs only)")
    if make_report:
        _write_report(out)
    if report.failed:
        typer.secho(f"{len(report.failed)} file(s) could not be read; see {out}/failed*.csv", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def _record_run(out: Path, pipe) -> None:
    """OUT/run.json: the models (the weights the pipeline loaded) and cards this run uses, for `cxrseg report`."""
    from cxrseg.report import write_run_info

    write_run_info(out, pipe, pipe.weights, command="cxrseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


def _write_report(folder: Path, thumbnails: bool = True, page_size: int = 100) -> None:
    from cxrseg.report import build_report

    result = build_report(folder, thumbnails=thumbnails, page_size=page_size)
    typer.echo(f"report: {result.path} ({result.images} images, {result.failed} failed, "
               f"{result.thumbnails} thumbnails)")


@app.command("report")
def report_command(
    folder: Annotated[Path, typer.Argument(help="a `cxrseg predict` output folder (results.csv, masks, overlays)")],
    thumbnails: Annotated[bool, typer.Option(help="small JPEG thumbnails in FOLDER/report_thumbs/ (else the overlays)")] = True,
    page_size: Annotated[int, typer.Option(help="table rows per page")] = 100,
) -> None:
    """Write FOLDER/report.html: summary, models, plots, a sortable table of all images, the failed files."""
    _write_report(folder, thumbnails, page_size)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("cxrseg-demo"),
    backend: BackendOpt = "auto",
) -> None:
    """The main job on two real chest X-rays shipped with the package (one COVID-19, one with no finding; CC BY 3.0):
    segment them with the shipped models, write the usual outputs, print two lines per film."""
    import csv

    from cxrseg.examples import ATTRIBUTION, films, summary_lines
    from cxrseg.inference.batch import predict_files

    examples = films()
    pipe = _pipeline(None, None, backend, "auto", False, len(examples))
    report = predict_files(pipe, [f.path for f in examples], out, workers=0)
    if report.failed:
        raise CxrsegError("; ".join(f"{f}: {why}" for f, why in report.failed))
    _record_run(out, pipe)  # as predict does: `cxrseg report OUT` names the models
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    for film in examples:
        for line in summary_lines(film, rows[film.name]):
            typer.echo(line)
    typer.echo(f"masks, overlays, results.csv and run.json in {out}/ (shipped models, {pipe.backend_name}); "
               f"right/left are the patient's. Films: CC BY 3.0, see {ATTRIBUTION}. Research use, not a clinical tool.")


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="COVID-QU-Ex folder")],
    split: str = "Val",
    out: Annotated[Path, typer.Option(help="folder for metrics.json, metrics.md, per_image.csv")] = Path("cxrseg-eval"),
    lung_model: LungOpt = None,
    infection_model: InfectionOpt = None,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "auto",
    device: str = "auto",
    batch_size: int = 16,
    tta: bool = False,
    max_images: Annotated[Optional[int], typer.Option(help="evaluate a class-stratified subset")] = None,
    crop_borders: BordersOpt = False,
    classifier: ClassifierOpt = "auto",
    accurate: AccurateOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure the two-stage pipeline on a split: Dice/IoU per image and pooled, by class; detection."""
    from cxrseg.evaluation.evaluate import evaluate as run_evaluation
    from cxrseg.evaluation.report import markdown, write_report

    pipe = _pipeline(lung_model, infection_model, backend, device, tta, batch_size, precision, classifier, accurate)
    pipe.crop_borders = crop_borders
    run = run_evaluation(pipe, data, split, max_images, progress=ProgressReporter(f"evaluate {split}", unit="batch", quiet=quiet).iterate)
    paths = write_report(run, out)
    typer.echo(markdown(run.metrics))
    typer.echo(f"wrote {paths['json']}, {paths['markdown']}, {paths['per_image']}")


@app.command()
def tune(
    data: Annotated[Path, typer.Option(help="COVID-QU-Ex folder")],
    infection_model: Annotated[Path, typer.Option("--infection-model", help="stage-2 weights whose card gets the thresholds")],
    lung_model: LungOpt = None,
    split: str = "Val",
    max_negative_rate: Annotated[float, typer.Option(help="at most this share of empty-mask images flagged")] = 0.05,
    write: Annotated[bool, typer.Option(help="store the chosen thresholds in the model card")] = True,
    tta: Annotated[bool, typer.Option(help="tune for flip TTA: stored apart, used by --tta runs")] = False,
    classifier: Annotated[Optional[Path], typer.Option(
        "--classifier", help="tune the head averaged with this whole-film classifier; stored in its card")] = None,
    accurate: Annotated[bool, typer.Option(
        "--accurate", help="tune for the accurate mode (with --lung-model unset: the two shipped stage-1 models); "
        "stored apart, used by --accurate runs")] = False,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Choose stage-2 thresholds (pixel, image-level, min area) on a split; store them in the card.

    Tuned on the path `cxrseg predict` takes by default here (bf16 where the CPU has it): in fp32 the shipped pair
    met the 5% limit and on the bf16 default path it flagged 2 more negative films, 5.4% (docs/experiments.md)."""
    from cxrseg.evaluation.tune import tune_infection, write_thresholds

    pipe = _pipeline(lung_model, infection_model, backend, "auto", tta, 32, precision, classifier=classifier, accurate=accurate)
    result = tune_infection(pipe, data, split, max_negative_rate=max_negative_rate, progress=ProgressReporter("tune", unit="setting", quiet=quiet).iterate)
    typer.echo(f"best 10 of {len(result.table)} settings with at most {max_negative_rate:.0%} of negatives flagged:")
    typer.echo("| threshold | image threshold | min area | Dice mean | Dice mean COVID | Dice pooled | negatives flagged |")
    typer.echo("|---:|---:|---:|---:|---:|---:|---:|")
    for r in result.ranked[:10]:
        typer.echo(
            f"| {r['threshold']} | {r['image_threshold']} | {r['min_area']} | {r['dice_mean']:.4f} | "
            f"{r['dice_mean_covid']:.4f} | {r['dice_pooled']:.4f} | {r['negatives_with_infection']:.3f} |"
        )
    typer.echo(f"chosen: {result.best} (per-image mean Dice on images with infection {result.objective:.4f})")
    typer.echo(f"without the image-level veto (a perfect image classifier) that Dice could reach {result.ceiling:.4f}")
    if write:
        target = classifier or infection_model  # the decision belongs to the model(s) that make it
        block = pipe.decision_block
        write_thresholds(target, result, split, path=pipe.backend_name, block=block)
        typer.echo(f"stored in {target.with_suffix('.json')}" + (f" (its '{block}' block)" if block else ""))


@app.command()
def info(
    lung_model: LungOpt = None,
    infection_model: InfectionOpt = None,
    full: Annotated[bool, typer.Option("--full", help="print the whole cards as JSON")] = False,
) -> None:
    """Summarise the model cards of both stages, of the accurate mode's second stage 1 and of the whole-film
    classifier beside stage 2's head (shipped models by default); --full prints them whole."""
    import json

    from cxrseg.inference.decision import resolve_classifier
    from cxrseg.models.store import card_summary, read_card, shipped_weights, weights_digest

    film = resolve_classifier("auto", infection_model)
    try:  # the accurate mode's second stage 1, beside the shipped stage 1
        wide = shipped_weights("lung-wide") if lung_model is None else None
    except CxrsegError:
        wide = None
    shown = [("lung", lung_model), *([("lung-wide", wide)] if wide else []), ("infection", infection_model),
             *([("classifier", film)] if film else [])]
    for stage, path in shown:
        weights = path or shipped_weights(stage)
        card = read_card(weights)
        typer.echo(f"# {stage}: {weights} (sha256 {weights_digest(weights)})"
                   + (": the accurate mode's second stage 1" if stage == "lung-wide" else ""))
        typer.echo(json.dumps(card, indent=2) if full else "\n".join(card_summary(card)))


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="folder for lung.onnx and infection.onnx")] = Path("cxrseg-onnx"),
    format: Annotated[str, typer.Option("--format", help="only 'onnx'")] = "onnx",
    lung_model: LungOpt = None,
    infection_model: InfectionOpt = None,
) -> None:
    """Export both stages (ONNX), each with its model card beside it."""
    import shutil

    from cxrseg.export import export_onnx
    from cxrseg.models.store import card_path, shipped_weights

    if format != "onnx":
        _fail(f"unknown export format {format!r}; only 'onnx' is supported")
    for stage, path in (("lung", lung_model), ("infection", infection_model)):
        weights = path or shipped_weights(stage)
        target = export_onnx(weights, out / f"{stage}.onnx")
        if card_path(weights).resolve() != target.with_suffix(".json").resolve():
            shutil.copyfile(card_path(weights), target.with_suffix(".json"))
        typer.echo(f"wrote {target}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind; loopback by default")] = "127.0.0.1",
    port: int = 8000,
    lung_model: LungOpt = None,
    infection_model: InfectionOpt = None,
    backend: BackendOpt = "auto",
    device: str = "auto",
    max_upload_mb: Annotated[float, typer.Option(help="largest accepted upload, MB")] = 20.0,
    max_pixels: Annotated[int, typer.Option(help="largest accepted image, width x height")] = 8192 * 8192,
    workers: Annotated[int, typer.Option(help="inference worker threads")] = 1,
    queue_size: Annotated[int, typer.Option(help="requests that may wait; more are answered 503")] = 8,
    save_dir: Annotated[Optional[Path], typer.Option(help="keep uploads and results here (default: keep nothing)")] = None,
    preview_max_side: int = 2048,
    api_key: Annotated[Optional[str], typer.Option(
        envvar="CXRSEG_API_KEY", show_envvar=True,
        help="clients must send 'Authorization: Bearer KEY' to /api/v1 (all but health); needed off loopback. "
             "Prefer the environment variable: a command line is visible to other users")] = None,
    upload_timeout: Annotated[float, typer.Option(help="seconds a request body may take to arrive; slower gets 408")] = 60.0,
    header_timeout: Annotated[float, typer.Option(
        help="seconds a request line and headers may take to arrive; slower connections are closed")] = 15.0,
    accurate: AccurateOpt = False,
) -> None:
    """Web page at / and JSON API at /api/v1 (segment, health, models); OpenAPI docs at /docs (offline)."""
    from cxrseg.server import ServerSettings, run_server

    run_server(
        ServerSettings(
            host=host, port=port, max_upload_mb=max_upload_mb, max_pixels=max_pixels, queue_size=queue_size,
            workers=workers, save_dir=save_dir, lung=lung_model, infection=infection_model, backend=backend,
            device=device, preview_max_side=preview_max_side, api_key=api_key or None, upload_timeout_s=upload_timeout,
            header_timeout_s=header_timeout, accurate=accurate,
        )
    )


def main() -> None:
    """Entry point: run the app, turning every :class:`CxrsegError` into one line on stderr and exit code 2."""
    # Idle OpenMP threads sleep rather than spin, for every verb (predict, evaluate, serve, ...): spinning threads
    # starve each other on a loaded machine (see cxrseg.inference.batch). Read once, when torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
