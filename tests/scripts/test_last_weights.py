"""scripts/last_weights.py: the final epoch's weights as a model file; the EMA weights when the run kept an EMA."""

from __future__ import annotations

import torch

from cxrseg.models.factory import ModelConfig
from cxrseg.models.store import load_model
from cxrseg.training import TrainConfig, fit
from _scripts import load_script

TINY = (8, 16, 32, 64)


def test_last_weights_are_the_ema_of_an_ema_run(synthetic_root, tmp_path):
    out = tmp_path / "run"
    fit(TrainConfig(stage="lung", data=synthetic_root, out=out, epochs=2, batch_size=4, lr=5e-3, size=128,
                    model=ModelConfig(channels=TINY), ema=0.9, max_train=8, max_val=3, progress=False))
    path = load_script("scripts/last_weights.py").last_weights(out)
    model, card = load_model(path)
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    saved = model.state_dict()
    assert set(saved) == set(ema)
    assert all(torch.equal(saved[k], ema[k]) for k in saved)
    assert any(not torch.equal(saved[k], state["model"][k]) for k in saved)  # not the raw weights
    assert card["training"]["epoch"] == 2
