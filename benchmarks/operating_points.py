"""COVID-19 and all-images infection Dice at several false-alarm limits: compare models at the same rate.

A model's shipped thresholds put it at one false-alarm rate; two models are compared fairly only at the same
one. This runs `cxrseg tune`'s grid once (stage 2's probabilities cached) and prints, for each limit on the share
of Non-COVID + Normal images given any infection, the setting with the best COVID-19 per-image Dice and the one
with the best per-image mean over all images (Tahir et al.'s convention), and the no-veto ceiling.

    python benchmarks/operating_points.py --data ../shared/data/COVID-QU-Ex [--lung-model W] [--infection-model W]
"""

from __future__ import annotations

import argparse

from cxrseg.evaluation.tune import tune_infection
from cxrseg.inference.pipeline import TwoStagePipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="Val")
    ap.add_argument("--lung-model", default=None)
    ap.add_argument("--infection-model", default=None)
    ap.add_argument("--limits", default="0.03,0.05,0.07,0.10")
    ap.add_argument("--classifier", default="auto",
                    help="whole-film classifier averaged with the head: auto (shipped, with the shipped stage 2), none, or weights")
    a = ap.parse_args()
    pipe = TwoStagePipeline.from_pretrained(a.lung_model, a.infection_model, backend="torch", precision="fp32",
                                            batch_size=16, classifier=a.classifier)
    result = tune_infection(pipe, a.data, a.split)
    film = pipe.classifier.weights if pipe.classifier is not None else "none (the head alone)"
    print(f"models: lung {a.lung_model or 'shipped'}, infection {a.infection_model or 'shipped'}, classifier {film}; {a.split}")
    print("| negatives flagged at most | best COVID-19 Dice (all-images, flagged, setting) "
          "| best all-images Dice (COVID-19, flagged, setting) |")
    print("|---:|---|---|")
    for limit in (float(x) for x in a.limits.split(",")):
        ok = [r for r in result.table if r["negatives_with_infection"] <= limit]
        b = max(ok, key=lambda r: (r["dice_mean_covid"] or 0.0, r["dice_mean"]))
        m = max(ok, key=lambda r: r["dice_mean"])

        def setting(r: dict) -> str:
            return f"t={r['threshold']}, image t={r['image_threshold']}, min area {r['min_area']}"

        print(f"| {limit:.0%} | {b['dice_mean_covid']:.4f} ({b['dice_mean']:.4f}, {b['negatives_with_infection']:.1%}, "
              f"{setting(b)}) | {m['dice_mean']:.4f} ({m['dice_mean_covid']:.4f}, {m['negatives_with_infection']:.1%}, "
              f"{setting(m)}) |")
    print(f"no veto (a perfect image classifier): COVID-19 Dice {result.ceiling:.4f}")


if __name__ == "__main__":
    main()
