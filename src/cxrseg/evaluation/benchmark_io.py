"""What the benchmark scripts share: the options that choose the models and build the pipeline from them, reading
the CSV that lists a folder's films, and handing the finished report to stdout and, when asked, to a file
(``benchmarks/external.py``, ``severity.py``, ``shift.py``).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import TYPE_CHECKING

from cxrseg.models.store import describe_weights

if TYPE_CHECKING:  # the pipeline (torch, MONAI) loads only when a benchmark builds one
    from cxrseg.inference.pipeline import TwoStagePipeline


def add_model_options(ap: argparse.ArgumentParser) -> None:
    """The options that choose the models and how they run, named as ``cxrseg predict`` names them."""
    ap.add_argument("--lung-model", type=Path, default=None, help="stage-1 weights (default: shipped)")
    ap.add_argument("--infection-model", type=Path, default=None, help="stage-2 weights (default: shipped)")
    ap.add_argument("--classifier", default="auto",
                    help="whole-film classifier beside the head: auto (the shipped one), none, or weights (as cxrseg predict)")
    ap.add_argument("--backend", default="auto", help="auto, torch or onnx")
    ap.add_argument("--crop-borders", action="store_true",
                    help="run the models inside flat edge bands only (cxrseg predict --crop-borders)")
    ap.add_argument("--precision", default="auto", help="auto, bf16 or fp32 (as cxrseg predict)")
    ap.add_argument("--accurate", action="store_true", help="the accurate mode (flip TTA, two stage-1 models)")


def pipeline_from_options(a: argparse.Namespace, **kwargs) -> tuple[TwoStagePipeline, str]:
    """The pipeline :func:`add_model_options` chose (``kwargs`` go to ``from_pretrained`` too), and a line that
    names its models for the report's head."""
    from cxrseg.inference.pipeline import TwoStagePipeline

    models = f"lung {describe_weights(a.lung_model, 'lung')}; infection {describe_weights(a.infection_model, 'infection')}"
    if a.accurate:
        models += "; accurate mode (flip TTA, stage 1 the mean with lung-wide, its own thresholds)"
    if a.classifier != "auto":
        models += f"; classifier {a.classifier}"
    pipe = TwoStagePipeline.from_pretrained(a.lung_model, a.infection_model, backend=a.backend, precision=a.precision,
                                            crop_borders=a.crop_borders, accurate=a.accurate, classifier=a.classifier,
                                            **kwargs)
    return pipe, models


def listed_rows(table: Path, point: str) -> list[dict[str, str]]:
    """The rows of ``table`` (a CSV with a header line), each a dict by column; a missing table ends the run with
    one line that says where to point (``point``, e.g. "--scores at the scored films' folder")."""
    if not table.is_file():
        raise SystemExit(f"{table}: not found (point {point})")
    with open(table, newline="") as f:
        return list(csv.DictReader(f))


def emit(text: str, out: Path | None) -> str:
    """Print ``text`` as it is and, with ``out``, write it there too (its folder made as needed); returns ``text``."""
    print(text, end="")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return text
