"""Write an evaluation as metrics.json, metrics.md (Markdown tables) and per_image.csv, atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from cxrseg._atomic import atomic_write_text
from cxrseg.evaluation.evaluate import EvaluationRun


def _f(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _table(title: str, by_class: dict) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| subset | images | Dice (mean) | IoU (mean) | Dice (pooled) | IoU (pooled) | Dice (mean, non-empty GT) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in by_class.items():
        lines.append(
            f"| {name} | {m['n_images']} | {_f(m['dice_mean'])} | {_f(m['iou_mean'])} | {_f(m['dice_pooled'])} "
            f"| {_f(m['iou_pooled'])} | {_f(m['dice_mean_nonempty_gt'])} ({m['n_nonempty_gt']}) |"
        )
    return lines + [""]


def markdown(metrics: dict) -> str:
    lines = [f"## Evaluation on {metrics.get('split', '?')} ({metrics['n_images']} images)", ""]
    lines += _table("Lung", metrics["lung"])
    if "infection" in metrics:
        lines += _table("Infection", metrics["infection"])
        d = metrics["infection_detection"]
        lines += [
            "### Image-level infection detection (any predicted pixel vs any ground-truth pixel)",
            "",
            f"sensitivity {_f(d['sensitivity'])}, specificity {_f(d['specificity'])} "
            f"(TP {d['tp']}, FN {d['fn']}, TN {d['tn']}, FP {d['fp']}); "
            f"Non-COVID + Normal images with any predicted infection: {_f(d['negatives_with_predicted_infection'])}",
            "",
        ]
    lines += [f"Empty-mask rule: {metrics['empty_mask_rule']}", ""]
    return "\n".join(lines)


def write_report(run: EvaluationRun, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    paths = {"json": out / "metrics.json", "markdown": out / "metrics.md", "per_image": out / "per_image.csv"}
    atomic_write_text(paths["json"], json.dumps(run.metrics, indent=2) + "\n")
    atomic_write_text(paths["markdown"], markdown(run.metrics))
    rows = run.per_image_rows()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(paths["per_image"], buf.getvalue())
    return paths
