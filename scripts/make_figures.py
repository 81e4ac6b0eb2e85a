"""Make the README's pictures: training curves of both stages, and Val prediction grids per class.

    python scripts/make_figures.py --runs runs --eval docs/eval-val --data ../shared/data/COVID-QU-Ex --out docs

Reads ``RUNS/{lung,infection}/log.json`` (written by ``cxrseg train``) and ``EVAL/per_image.csv`` (written by
``cxrseg evaluate``), re-segments the chosen Val images with the shipped (or given) models, and writes
``training_curves.png``, ``grid_lung.png`` and ``grid_infection.png``. Ground truth is outlined in green,
the prediction in red; rows are classes, columns best / median / worst by Dice. Dotted lines in the curves
mark where a joined log (``scripts/join_runs.py``) passes from one run to its fine-tuning continuation.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cxrseg.data.covidqu import CLASSES, find_dataset  # noqa: E402
from cxrseg.data.io import read_mask, read_xray  # noqa: E402
from cxrseg.inference.overlay import render_comparison  # noqa: E402
from cxrseg.inference.pipeline import TwoStagePipeline  # noqa: E402


def training_curves(runs: Path, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for stage, colour in (("lung", "tab:blue"), ("infection", "tab:red")):
        log = runs / stage / "log.json"
        if not log.exists():
            continue
        rows = json.loads(log.read_text())
        ep = [r["epoch"] for r in rows]
        axes[0].plot(ep, [r["loss"] for r in rows], "-o", color=colour, label=f"{stage} train loss", ms=3)
        axes[1].plot(ep, [r["val_dice_mean"] for r in rows], "-o", color=colour, label=f"{stage} Val Dice (mean)", ms=3)
        for prev, row in zip(rows, rows[1:]):  # a joined log (scripts/join_runs.py): mark where fine-tuning began
            if row.get("run") != prev.get("run"):
                for a in axes:
                    a.axvline(prev["epoch"] + 0.5, color=colour, ls=":", lw=1)
        if stage == "infection" and rows and rows[0].get("val_dice_mean_covid") is not None:
            axes[1].plot(ep, [r["val_dice_mean_covid"] for r in rows], "--o", color="tab:orange", label="infection Val Dice, COVID-19 only", ms=3)
    axes[0].set(xlabel="epoch", ylabel="loss", title="Training loss")
    axes[1].set(xlabel="epoch", ylabel="Dice", title="Validation Dice (per-image mean)", ylim=(0, 1))
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    path = out / "training_curves.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _pick(rows: list[dict], key: str) -> list[dict]:
    """Best, median and worst rows by ``key``."""
    rows = sorted(rows, key=lambda r: float(r[key]), reverse=True)
    return [rows[0], rows[len(rows) // 2], rows[-1]] if rows else []


def prediction_grid(stage: str, per_image: list[dict], data: Path, pipe: TwoStagePipeline, split: str, out: Path) -> Path:
    index = find_dataset(data, part="infection", splits=(split,))
    by_name = {s.image.name: s for s in index.samples}
    key = f"{stage}_dice"
    fig, axes = plt.subplots(len(CLASSES), 3, figsize=(9, 9.6), dpi=110)
    for r, label in enumerate(CLASSES):
        chosen = _pick([row for row in per_image if row["class"] == label], key)
        for c, (title, row) in enumerate(zip(("best", "median", "worst"), chosen)):
            sample = by_name[row["file"]]
            xray = read_xray(sample.image)
            seg = pipe.predict([xray])[0]
            truth = read_mask(sample.lung if stage == "lung" else sample.infection)
            pred = seg.lung if stage == "lung" else seg.infection
            ax = axes[r, c]
            ax.imshow(render_comparison(xray.pixels, truth, pred))
            ax.set_title(f"{label} {title}: Dice {float(row[key]):.3f}", fontsize=8)
            ax.axis("off")
    fig.suptitle(f"{stage.capitalize()}: ground truth (green) vs prediction (red), {split}", fontsize=10)
    fig.tight_layout()
    path = out / f"grid_{stage}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--eval", type=Path, default=Path("docs/eval-val"), help="folder with per_image.csv")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/COVID-QU-Ex"))
    ap.add_argument("--split", default="Val")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--lung-model", type=Path)
    ap.add_argument("--infection-model", type=Path)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    print(training_curves(a.runs, a.out))
    with open(a.eval / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    pipe = TwoStagePipeline.from_pretrained(a.lung_model, a.infection_model, backend="torch")
    for stage in ("lung", "infection"):
        print(prediction_grid(stage, rows, a.data, pipe, a.split, a.out))


if __name__ == "__main__":
    main()
