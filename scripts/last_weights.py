"""Write a run's final-epoch weights (from ``last.pt``) as ``last.safetensors`` with a card, beside ``best.*``.

    python scripts/last_weights.py RUN

``cxrseg train`` keeps the epoch with the best Val Dice at its fixed decision thresholds (stage 2: image
head at 0.5). Thresholds are tuned afterwards, so the final epoch of a one-cycle run can be the better model
once tuned; this makes it available to ``cxrseg tune`` and ``cxrseg evaluate`` for that comparison. A run
trained with ``--ema`` validated and saved its EMA weights, so those are the final epoch's weights here too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from cxrseg.models.factory import ModelConfig, build_model
from cxrseg.models.store import read_card, save_model


def last_weights(run: Path) -> Path:
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    card = read_card(run / "best.safetensors")  # same architecture and run; epoch and metrics differ
    model = build_model(ModelConfig.from_dict(state["config"]["model"]))
    weights = state["model"]
    if "ema" in state:  # torch.optim.swa_utils.AveragedModel: the averaged network under "module."
        weights = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    model.load_state_dict(weights)
    row = state["history"][-1]
    card["training"] = {**card["training"], "epoch": row["epoch"]}
    card["metrics"] = {k: v for k, v in row.items() if k.startswith("val_")}
    return save_model(run / "last.safetensors", model, card)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    print(last_weights(ap.parse_args().run))


if __name__ == "__main__":
    main()
