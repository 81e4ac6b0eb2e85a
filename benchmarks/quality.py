"""Regenerate the model cards' quality numbers: evaluate the two-stage pipeline on a split.

    python benchmarks/quality.py --data ../shared/data/COVID-QU-Ex --split Val [--tta | --accurate] [--out DIR] [--update-cards]
        [--lung-model W] [--infection-model W] [--backend auto|torch|onnx]

Runs ``cxrseg.evaluation.evaluate`` with the shipped models (or --lung-model/--infection-model), writes
metrics.json, metrics.md and per_image.csv to --out, prints the Markdown tables (headline figures; the comparison
with Tahir et al. 2021 and the best student report in their convention, the per-image mean over all images; the
per-class tables), then the README table: each headline figure against the targets of issue #11 and the
published figures. With --update-cards it stores the headline figures in both cards (``metrics`` field, with the
split and the command; with --tta or --accurate, the ``metrics`` field of each card's ``tta`` or ``accurate`` block).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from cxrseg.evaluation.references import CONVENTION_LABEL, CONVENTION_REASONING, REFERENCES, STUDENT_REPORT, TAHIR_2021

# Headline figures: label -> (stage, subset, key of summarize(); or the detection block's key under "detection").
LUNG_DICE = f"lung Dice, {CONVENTION_LABEL}"
LUNG_IOU = f"lung IoU, {CONVENTION_LABEL}"
INFECTION_DICE = f"infection Dice, {CONVENTION_LABEL}"
INFECTION_IOU = f"infection IoU, {CONVENTION_LABEL}"
COVID_DICE = "infection Dice, per-image mean, COVID-19 images"
COVID_IOU = "infection IoU, per-image mean, COVID-19 images"
NEGATIVES = "Non-COVID + Normal images with any predicted infection"
FIGURES = {
    LUNG_DICE: ("lung", "all", "dice_mean"),
    LUNG_IOU: ("lung", "all", "iou_mean"),
    "lung Dice, pooled, all images": ("lung", "all", "dice_pooled"),
    INFECTION_DICE: ("infection", "all", "dice_mean"),
    INFECTION_IOU: ("infection", "all", "iou_mean"),
    COVID_DICE: ("infection", "COVID-19", "dice_mean"),
    COVID_IOU: ("infection", "COVID-19", "iou_mean"),
    "infection Dice, pooled, all images": ("infection", "all", "dice_pooled"),
    "infection IoU, pooled, all images": ("infection", "all", "iou_pooled"),
    NEGATIVES: ("detection", None, "negatives_with_predicted_infection"),
    "image-level infection sensitivity": ("detection", None, "sensitivity"),
    "image-level infection specificity": ("detection", None, "specificity"),
}
TARGETS = {  # issue #11: figure -> (minimum or maximum, value)
    LUNG_DICE: (">=", 0.972),
    INFECTION_DICE: (">=", 0.85),
    COVID_DICE: (">=", 0.74),
    NEGATIVES: ("<=", 0.05),
}
# The published figures, all in the convention above, for the headline rows that have one.
PUBLISHED_OF = {
    LUNG_DICE: "lung_dice",
    LUNG_IOU: "lung_iou",
    INFECTION_DICE: "infection_dice",
    INFECTION_IOU: "infection_iou",
}


def headline(m: dict) -> dict[str, float | None]:
    """The headline figures of an evaluation's metrics, by label (lung ones only if it had no infection masks)."""
    out = {}
    for label, (stage, subset, key) in FIGURES.items():
        if stage == "detection":
            if "infection_detection" in m:
                out[label] = m["infection_detection"][key]
        elif stage in m:
            out[label] = m[stage].get(subset, {}).get(key)
    return out


def _f(v) -> str:
    return "" if v is None else f"{v:.4f}"


def readme_table(m: dict) -> str:
    """figure | measured | target (issue #11) | met | Tahir et al. 2021 (Test) | best student report (Test)."""
    split = m.get("split", "?")
    lines = [
        f"| figure | {split} | target (issue #11) | met | {TAHIR_2021.name} ({TAHIR_2021.split}) "
        f"| {STUDENT_REPORT.name} ({STUDENT_REPORT.split}) |",
        "|---|---:|---:|:---:|---:|---:|",
    ]
    for name, value in headline(m).items():
        op, goal = TARGETS.get(name, (None, None))
        met = ""
        if op is not None and value is not None:
            met = "yes" if (value >= goal if op == ">=" else value <= goal) else "NO"
        attr = PUBLISHED_OF.get(name)
        refs = [_f(getattr(r, attr)) if attr else "" for r in (TAHIR_2021, STUDENT_REPORT)]
        target = "" if op is None else f"{op} {goal}"
        lines.append(f"| {name} | {_f(value)} | {target} | {met} | {refs[0]} | {refs[1]} |")
    return "\n".join(lines)


def card_metrics(m: dict, stage: str, split: str, pipeline: str, command: str) -> dict:
    """The ``metrics`` block of a stage's card: the headline figures of that stage (all of them for infection)."""
    return {
        "split": f"COVID-QU-Ex Infection Segmentation Data, {split} ({m['n_images']} images)",
        "pipeline": pipeline,
        "command": command,
        "empty_mask_rule": m["empty_mask_rule"],
        "reference_convention": f"{CONVENTION_LABEL}: {CONVENTION_REASONING}",
        **{k: round(v, 4) for k, v in headline(m).items()
           if v is not None and (k.startswith(stage) or stage == "infection")},
        "published_reference": {
            f"{r.name} ({r.split})": {
                f"{s} {w}, {CONVENTION_LABEL}": v
                for s in ("lung", "infection")
                for w in ("Dice", "IoU")
                if (v := getattr(r, f"{s}_{w.lower()}")) is not None
            }
            for r in REFERENCES
        },
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="Val")
    ap.add_argument("--out", type=Path, default=Path("docs/eval-val"))
    ap.add_argument("--lung-model", "--lung", dest="lung", type=Path, help="stage-1 weights (default: shipped)")
    ap.add_argument("--infection-model", "--infection", dest="infection", type=Path,
                    help="stage-2 weights (default: shipped)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--accurate", action="store_true", help="the accurate mode (flip TTA, two stage-1 models)")
    ap.add_argument("--update-cards", action="store_true")
    a = ap.parse_args(argv)

    from cxrseg.progress import ProgressReporter

    from cxrseg._atomic import atomic_write_text
    from cxrseg.evaluation.evaluate import evaluate
    from cxrseg.evaluation.report import markdown, write_report
    from cxrseg.inference.pipeline import TwoStagePipeline
    from cxrseg.models.store import card_path, read_card

    pipe = TwoStagePipeline.from_pretrained(a.lung, a.infection, backend=a.backend, tta=a.tta, batch_size=16,
                                            accurate=a.accurate)
    run = evaluate(pipe, a.data, a.split, progress=ProgressReporter(f"evaluate {a.split}", unit="batch").iterate)
    write_report(run, a.out)
    print(markdown(run.metrics))
    print("### Against the targets of issue #11 and the published figures (theirs in their own convention)\n")
    print(readme_table(run.metrics))
    if a.update_cards:
        args = sys.argv[1:] if argv is None else argv
        command = "python benchmarks/quality.py " + " ".join(shlex.quote(x) for x in args)
        film = pipe.classifier.weights if pipe.classifier is not None else None
        pipeline = (f"two-stage, backend {pipe.backend_name}, tta={pipe.tta}, "
                    + (f"stage 1 the mean of {len(pipe.lung_members)} models, " if len(pipe.lung_members) > 1 else "")
                    + f"image-level decision: {'head + whole-film classifier' if film else 'head alone'}")
        cards = [("lung", pipe.weights["lung"]), ("infection", pipe.weights["infection"])]
        for stage, weights in cards + ([("infection", film)] if film else []):  # the classifier's card: its decision's figures
            card = read_card(weights)
            mode = pipe.decision_block  # TTA / accurate-mode figures sit beside that mode's decision
            block = card.setdefault(mode, {}) if mode else card
            kept = {k: v for k, v in block.get("metrics", {}).items() if k == "val_auc"}  # the classifier's own
            block["metrics"] = {**card_metrics(run.metrics, stage, a.split, pipeline, command), **kept}
            atomic_write_text(card_path(weights), json.dumps(card, indent=2, default=str) + "\n")
            print(f"updated {card_path(weights)}", file=sys.stderr)


if __name__ == "__main__":
    main()
