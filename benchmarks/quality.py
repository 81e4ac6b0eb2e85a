"""Regenerate the model cards' quality numbers: evaluate the two-stage pipeline on a split.

    python benchmarks/quality.py --data ../shared/data/COVID-QU-Ex --split Val [--tta] [--update-cards]

Runs ``cxrseg.evaluation.evaluate`` with the shipped models (or --lung/--infection), prints the Markdown
tables, checks them against the targets of the shipped-model issue, and with --update-cards stores the
headline figures in both cards (``metrics`` field, with the split and the command; with --tta, the ``metrics``
field of each card's ``tta`` block).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from tqdm.auto import tqdm

from cxrseg._atomic import atomic_write_text
from cxrseg.evaluation.evaluate import evaluate
from cxrseg.evaluation.report import markdown, write_report
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.models.store import card_path, read_card, shipped_weights

TARGETS = {  # (figure, minimum or maximum, value)
    "lung Dice, per-image mean, all images": (">=", 0.970),
    "infection Dice, per-image mean, COVID-19 images": (">=", 0.78),
    "infection Dice, pooled, all images": (">=", 0.80),
    "Non-COVID + Normal images with any predicted infection": ("<=", 0.10),
}
PUBLISHED = {"lung Dice (Tahir et al. 2021, Test)": 0.9799, "infection Dice (Tahir et al. 2021, Test)": 0.8821}


def headline(m: dict) -> dict[str, float]:
    return {
        "lung Dice, per-image mean, all images": m["lung"]["all"]["dice_mean"],
        "lung IoU, per-image mean, all images": m["lung"]["all"]["iou_mean"],
        "lung Dice, pooled, all images": m["lung"]["all"]["dice_pooled"],
        "infection Dice, per-image mean, COVID-19 images": m["infection"]["COVID-19"]["dice_mean"],
        "infection IoU, per-image mean, COVID-19 images": m["infection"]["COVID-19"]["iou_mean"],
        "infection Dice, pooled, all images": m["infection"]["all"]["dice_pooled"],
        "infection IoU, pooled, all images": m["infection"]["all"]["iou_pooled"],
        "infection Dice, per-image mean, all images (empty rule)": m["infection"]["all"]["dice_mean"],
        "Non-COVID + Normal images with any predicted infection": m["infection_detection"]["negatives_with_predicted_infection"],
        "image-level infection sensitivity": m["infection_detection"]["sensitivity"],
        "image-level infection specificity": m["infection_detection"]["specificity"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="Val")
    ap.add_argument("--out", type=Path, default=Path("docs/eval-val"))
    ap.add_argument("--lung", type=Path)
    ap.add_argument("--infection", type=Path)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--update-cards", action="store_true")
    a = ap.parse_args()
    pipe = TwoStagePipeline.from_pretrained(a.lung, a.infection, backend=a.backend, tta=a.tta, batch_size=16)
    run = evaluate(pipe, a.data, a.split, progress=lambda it: tqdm(it, desc=f"evaluate {a.split}", unit="batch"))
    write_report(run, a.out)
    print(markdown(run.metrics))
    figures = headline(run.metrics)
    print("| figure | measured | target | met |\n|---|---:|---:|:---:|")
    for name, value in figures.items():
        op, goal = TARGETS.get(name, (None, None))
        met = "" if op is None else ("yes" if (value >= goal if op == ">=" else value <= goal) else "NO")
        print(f"| {name} | {value:.4f} | {'' if op is None else f'{op} {goal}'} | {met} |")
    if a.update_cards:
        command = "python benchmarks/quality.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
        for stage, path in (("lung", a.lung), ("infection", a.infection)):
            weights = path or shipped_weights(stage)
            card = read_card(weights)
            block = card.setdefault("tta", {}) if a.tta else card  # TTA figures sit beside the TTA decision
            block["metrics"] = {
                "split": f"COVID-QU-Ex Infection Segmentation Data, {a.split} ({run.metrics['n_images']} images)",
                "pipeline": f"two-stage, backend {pipe.backend_name}, tta={a.tta}",
                "command": command,
                "empty_mask_rule": run.metrics["empty_mask_rule"],
                **{k: round(v, 4) for k, v in figures.items() if k.startswith(stage) or stage == "infection"},
                "published_reference": PUBLISHED,
            }
            atomic_write_text(card_path(weights), json.dumps(card, indent=2, default=str) + "\n")
            print(f"updated {card_path(weights)}", file=sys.stderr)


if __name__ == "__main__":
    main()
