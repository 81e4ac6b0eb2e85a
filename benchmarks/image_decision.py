"""The image-level decision: stage 2's head, a whole-film classifier, and the mean of the two (issue #11 item 4).

    python benchmarks/image_decision.py --data ../shared/data/COVID-QU-Ex --classifier runs/classifier/classifier.safetensors

For each decision (P(COVID-19) from the head, from the classifier of ``cxrseg train-classifier``, their mean)
the stage-2 thresholds are tuned on ``--split`` exactly as ``cxrseg tune`` does (best COVID-19 per-image Dice with
at most ``--max-negative-rate`` of the films without infection flagged; the same grid, the same cached stage-2
probabilities from the shipped models, PyTorch fp32), and the table gives the ROC AUC, the tuned figures and
how many COVID-19 films lose all their infection to the veto. Then, with ``--external`` (default
``../shared/external``), the ROC AUC of each on the films from outside COVID-QU-Ex: REPORTED, NEVER TUNED ON
(see ``benchmarks/external.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cxrseg.data.covidqu import find_dataset, require_samples
from cxrseg.data.dataset import load_arrays
from cxrseg.evaluation.benchmark_io import emit
from cxrseg.evaluation.metrics import roc_auc
from cxrseg.evaluation.tune import _score_grid
from cxrseg.inference.decision import FilmClassifier
from cxrseg.inference.pipeline import TwoStagePipeline, resize_batch
from cxrseg.models.store import describe_weights, load_classifier, weights_digest

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)  # cxrseg.evaluation.tune's grid
MIN_AREAS = (0, 10, 25, 50, 100)
IMAGE_THRESHOLDS = [None] + [round(0.1 + 0.025 * i, 3) for i in range(35)]


def classifier_probability(weights: Path, images: np.ndarray) -> np.ndarray:
    """P(COVID-19) of the classifier for (N, 256, 256) float32 films in [0, 1] (fp32)."""
    return FilmClassifier(weights)(images)


def inference_ms(weights: Path, repeats: int = 10) -> dict[str, float]:
    """The classifier's forward time per film, batch 8, fp32 and bf16 autocast (when the CPU has native bf16)."""
    import time as _time

    from cxrseg.inference.backends import bf16_supported

    model, card = load_classifier(weights)
    x = torch.rand(8, 1, int(card["input_size"]), int(card["input_size"]))
    out = {}
    for precision in ("fp32", "bf16") if bf16_supported("cpu") else ("fp32",):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(x)
            t = _time.perf_counter()
            for _ in range(repeats):
                model(x)
        out[precision] = (_time.perf_counter() - t) / repeats / len(x) * 1e3
    return out


def tuned(prob, image_prob, lung, gt, limit: float) -> dict:
    """The best row of the tune grid for one decision, with the COVID-19 films its veto empties."""
    table = [r for t in THRESHOLDS for a in MIN_AREAS
             for r in _score_grid(prob, image_prob, lung, gt, t, a, IMAGE_THRESHOLDS) if r["image_threshold"] is not None]
    allowed = [r for r in table if r["negatives_with_infection"] <= limit] or table
    best = max(allowed, key=lambda r: (r["dice_mean_covid"] or 0.0, r["dice_mean"]))
    positive = gt.reshape(len(gt), -1).any(1)
    best["covid_vetoed"] = int((image_prob[positive] < best["image_threshold"]).sum())
    return best


def external_probabilities(folder: Path, pipe: TwoStagePipeline, weights: Path) -> tuple[np.ndarray, ...]:
    """(head P, classifier P, is COVID-19, is SARS) for the external films."""
    spec = importlib.util.spec_from_file_location("external", REPO / "benchmarks" / "external.py")
    external = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(external)
    from cxrseg.data.io import read_xray

    films = external.read_manifest(folder)
    head, small = [], []
    for film in films:
        x = read_xray(film.path)
        head.append(pipe.predict([x])[0].infection_probability)
        small.append(resize_batch(x.pixels[None], (256, 256))[0])
    clf = classifier_probability(weights, np.stack(small).astype(np.float32))
    return (np.array(head), clf, np.array([f.covid for f in films]), np.array([f.group == "SARS" for f in films]))


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="COVID-QU-Ex folder")
    ap.add_argument("--classifier", type=Path, required=True, help="weights from cxrseg train-classifier")
    ap.add_argument("--split", default="Val")
    ap.add_argument("--max-negative-rate", type=float, default=0.05)
    ap.add_argument("--external", type=Path, default=REPO.parent / "shared" / "external",
                    help="films from outside COVID-QU-Ex (reported only); 'none' to skip")
    ap.add_argument("--head-weights", default="",
                    help="also weighted means, w x head + (1 - w) x classifier, for these comma-separated w")
    ap.add_argument("--out", type=Path, default=None, help="also write the output here (Markdown)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    pipe = TwoStagePipeline.from_pretrained(backend="torch", classifier="none")  # the head alone, fp32, as cxrseg tune
    index = find_dataset(a.data, part="infection", splits=(a.split,))
    bundle = load_arrays(require_samples(index, (a.split,), "infection"), pipe.size)
    images = bundle.images.astype(np.float32) / 255.0
    pipe.image_threshold, pipe.min_area, pipe.infection_threshold = None, 0, 0.0
    out = pipe.run_model_size(images)
    head, clf = out.image_prob, classifier_probability(a.classifier, images)
    positive = bundle.infections.reshape(len(bundle), -1).any(1)
    decisions = {"stage-2 head (shipped)": head, "whole-film classifier": clf, "mean of the two": (head + clf) / 2}
    for w in (float(x) for x in a.head_weights.split(",") if x.strip()):
        decisions[f"{w:g} x head + {1 - w:g} x classifier"] = w * head + (1 - w) * clf
    args = argv if argv is not None else sys.argv[1:]
    lines = [
        f"Image-level decision on COVID-QU-Ex {a.split} ({len(bundle)} films, {int(positive.sum())} with infection); "
        f"stage-2 thresholds tuned per decision at most {a.max_negative_rate:.0%} of the others flagged.",
        "",
        f"Models: lung {describe_weights(None, 'lung')}; infection {describe_weights(None, 'infection')}; "
        f"classifier {a.classifier} (sha256 {weights_digest(a.classifier)}); PyTorch fp32.",
        "",
        "| decision | ROC AUC | infection Dice, all images (Tahir et al.) | COVID-19 | negatives flagged "
        "| COVID-19 films vetoed | pixel / image threshold, min area |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, p in decisions.items():
        r = tuned(out.infection_prob, p, out.lung, bundle.infections, a.max_negative_rate)
        lines.append(f"| {name} | {roc_auc(p, positive):.4f} | {r['dice_mean']:.4f} | {r['dice_mean_covid']:.4f} | "
                     f"{r['negatives_with_infection']:.1%} | {r['covid_vetoed']} | {r['threshold']} / "
                     f"{r['image_threshold']}, {r['min_area']} |")
    if str(a.external) != "none":
        pipe.image_threshold = None
        ext_head, ext_clf, covid, sars = external_probabilities(a.external, pipe, a.classifier)
        lines += ["", f"External films ({a.external}; {len(covid)} films, {int(covid.sum())} COVID-19), REPORTED, "
                  "NEVER TUNED ON:", "", "| decision | ROC AUC | without SARS |", "|---|---:|---:|"]
        for name, p in (("stage-2 head (shipped)", ext_head), ("whole-film classifier", ext_clf),
                        ("mean of the two", (ext_head + ext_clf) / 2)):
            lines.append(f"| {name} | {roc_auc(p, covid):.3f} | {roc_auc(p[~sars], covid[~sars]):.3f} |")
    ms = inference_ms(a.classifier)
    lines += ["", "Classifier forward pass on this CPU (batch 8, " f"{torch.get_num_threads()} threads): "
              + ", ".join(f"{k} {v:.1f} ms/film" for k, v in ms.items()) + "."]
    lines += ["", f"{time.perf_counter() - t0:.0f} s; `python benchmarks/image_decision.py "
              + " ".join(shlex.quote(x) for x in args) + "`"]
    return emit("\n".join(lines) + "\n", a.out)


if __name__ == "__main__":
    main()
