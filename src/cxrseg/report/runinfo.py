"""``run.json``: what a predict run used (models, their cards and digests, backend, TTA), kept in its output folder.

``cxrseg predict`` writes it once the run's inputs were found (after the images: a mistyped input leaves no folder
behind); an output folder without one (an older version's, or a run killed before its end) makes the report show
the shipped cards and say so.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from cxrseg._atomic import atomic_write_text

RUN_JSON = "run.json"


def run_info(pipeline, weights: dict[str, Path], command: str | None = None) -> dict:
    """The record of one predict run: ``weights`` maps 'lung' and 'infection' (and 'lung-2', ... for the further
    stage-1 models of the accurate mode) to the weights files used; the pipeline's whole-film classifier is added
    when it has one."""
    from cxrseg import __version__
    from cxrseg.models.store import weights_digest

    cards = pipeline.cards
    classifier = getattr(pipeline, "classifier", None)  # the optional second opinion (cxrseg.inference.decision)
    if classifier is not None:
        weights = {**weights, "classifier": classifier.weights}
    models = {}
    for stage, path in weights.items():
        entry = {"weights": str(path), "card": cards.get(stage, {})}
        try:
            entry["sha256"] = weights_digest(path)
        except OSError:
            entry["sha256"] = None
        models[stage] = entry
    return {
        "cxrseg": __version__,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "backend": getattr(pipeline, "backend_name", None),
        "tta": bool(getattr(pipeline, "tta", False)),
        "accurate": bool(getattr(pipeline, "accurate", False)),
        "decision": {
            "lung_threshold": getattr(pipeline, "lung_threshold", None),
            "infection_threshold": getattr(pipeline, "infection_threshold", None),
            "image_threshold": getattr(pipeline, "image_threshold", None),
            "min_area": getattr(pipeline, "min_area", None),
        },
        "models": models,
    }


def write_run_info(out: str | Path, pipeline, weights: dict[str, Path], command: str | None = None) -> Path:
    """Write ``OUT/run.json`` atomically (shards sharing a folder write the same record); returns its path."""
    path = Path(out) / RUN_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(run_info(pipeline, weights, command), indent=2, default=str) + "\n")
    return path


def read_run_info(out: str | Path) -> dict | None:
    """``OUT/run.json`` as a dict, or None when the folder has none or it cannot be read."""
    try:
        info = json.loads((Path(out) / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
