"""Write an evaluation as metrics.json, metrics.md (Markdown tables) and per_image.csv, atomically.

metrics.md opens with the headline figures: the per-image mean over all images (the convention of Tahir et
al. 2021, labelled so), the stricter COVID-19-only mean, pooled figures, negatives flagged, sensitivity and
specificity; then the comparison with the published results in their convention; then the per-class tables.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from cxrseg._atomic import atomic_write_text
from cxrseg.evaluation.evaluate import EvaluationRun
from cxrseg.evaluation.references import CONVENTION_LABEL, CONVENTION_REASONING, REFERENCES


def _f(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _get(metrics: dict, stage: str, subset: str, key: str):
    return metrics.get(stage, {}).get(subset, {}).get(key)


def _table(title: str, by_class: dict) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| subset | images | Dice (per-image mean) | IoU (per-image mean) | Dice (pooled) | IoU (pooled) "
        "| Dice (per-image mean, non-empty GT) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in by_class.items():
        lines.append(
            f"| {name} | {m['n_images']} | {_f(m['dice_mean'])} | {_f(m['iou_mean'])} | {_f(m['dice_pooled'])} "
            f"| {_f(m['iou_pooled'])} | {_f(m['dice_mean_nonempty_gt'])} ({m['n_nonempty_gt']}) |"
        )
    return lines + ["", f"Row *all*, per-image means: the {CONVENTION_LABEL}.", ""]


def headline_rows(metrics: dict) -> list[tuple[str, str, str]]:
    """(figure, lung, infection) for the headline table: the references' convention first, then the stricter ones."""
    inf = "infection" in metrics
    rows = []
    for what, key in (("Dice", "dice_mean"), ("IoU", "iou_mean")):
        rows.append((f"{what}, {CONVENTION_LABEL}", _f(_get(metrics, "lung", "all", key)),
                     _f(_get(metrics, "infection", "all", key)) if inf else "-"))
    for what, key in (("Dice", "dice_mean"), ("IoU", "iou_mean")):
        rows.append((f"{what}, per-image mean, COVID-19 images only", _f(_get(metrics, "lung", "COVID-19", key)),
                     _f(_get(metrics, "infection", "COVID-19", key)) if inf else "-"))
    for what, key in (("Dice", "dice_pooled"), ("IoU", "iou_pooled")):
        rows.append((f"{what}, pooled over every pixel of all images", _f(_get(metrics, "lung", "all", key)),
                     _f(_get(metrics, "infection", "all", key)) if inf else "-"))
    if inf:
        d = metrics["infection_detection"]
        negatives = _pct(d["negatives_with_predicted_infection"])
        rows.append(("Non-COVID + Normal images given any infection", "", negatives))
        rows.append(("image-level infection sensitivity / specificity", "",
                     f"{_f(d['sensitivity'])} / {_f(d['specificity'])}"))
    return rows


def comparison_rows(metrics: dict, ours: str | None = None) -> list[tuple[str, str, str, str, str, str]]:
    """(result, split, lung Dice, lung IoU, infection Dice, infection IoU): ours, the published references in the
    same convention (per-image mean over all images), then our stricter COVID-19-only figures."""
    split = metrics.get("split", "?")
    ours = ours or f"ours ({split})"
    rows = [(
        ours, f"{split} ({metrics['n_images']} images)",
        _f(_get(metrics, "lung", "all", "dice_mean")), _f(_get(metrics, "lung", "all", "iou_mean")),
        _f(_get(metrics, "infection", "all", "dice_mean")), _f(_get(metrics, "infection", "all", "iou_mean")),
    )]
    for r in REFERENCES:
        rows.append((f"{r.name} ({r.split})", r.split, _f(r.lung_dice), _f(r.lung_iou),
                     _f(r.infection_dice), _f(r.infection_iou)))
    n_covid = _get(metrics, "lung", "COVID-19", "n_images")
    if n_covid:
        rows.append((
            f"{ours}, COVID-19 images only (stricter)", f"{split} ({n_covid} COVID-19 images)",
            _f(_get(metrics, "lung", "COVID-19", "dice_mean")), _f(_get(metrics, "lung", "COVID-19", "iou_mean")),
            _f(_get(metrics, "infection", "COVID-19", "dice_mean")),
            _f(_get(metrics, "infection", "COVID-19", "iou_mean")),
        ))
    return rows


def comparison_markdown(metrics: dict, ours: str | None = None) -> list[str]:
    """The comparison with the published results, in their convention, with the reasoning in a sentence."""
    lines = [
        f"### Comparison with published results: {CONVENTION_LABEL}",
        "",
        "| result | split | lung Dice | lung IoU | infection Dice | infection IoU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in comparison_rows(metrics, ours)]
    lines += [
        "",
        CONVENTION_REASONING + " The published figures are on the Test split; ours are on the split named.",
        "",
    ]
    return lines


def markdown(metrics: dict) -> str:
    lines = [f"## Evaluation on {metrics.get('split', '?')} ({metrics['n_images']} images)", ""]
    lines += ["### Headline figures", "", "| figure | lung | infection |", "|---|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in headline_rows(metrics)]
    lines += [""]
    lines += comparison_markdown(metrics)
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
