"""The models shipped inside the package: present, described by their cards, and the same under both backends."""

from __future__ import annotations

import numpy as np
import pytest

from cxrseg.data.io import XRay
from cxrseg.data.synthetic import phantom
from cxrseg.evaluation.metrics import Counts, dice_per_image
from cxrseg.models.store import read_card, shipped_weights

try:
    LUNG, INFECTION = shipped_weights("lung"), shipped_weights("infection")
except Exception:  # the repository before the first trained models landed
    pytest.skip("no shipped models in this checkout", allow_module_level=True)


def test_cards_describe_the_shipped_models():
    for weights, stage in ((LUNG, "lung"), (INFECTION, "infection")):
        card = read_card(weights)
        assert card["stage"] == stage
        assert card["input_size"] in (192, 256)
        assert card["training"]["command"].startswith("cxrseg train")
        assert "dice" in " ".join(card["metrics"]).lower()
        assert weights.with_suffix(".onnx").is_file()
    assert read_card(INFECTION)["image_threshold"] is not None


def test_onnx_and_torch_backends_agree_on_the_shipped_models():
    from cxrseg.inference.pipeline import TwoStagePipeline

    rng = np.random.default_rng(3)
    xrays = [XRay(phantom(lbl, 256, rng)[0].astype(np.float32) / 255, lbl) for lbl in ("COVID-19", "Normal", "Non-COVID")]
    xrays.append(XRay(np.clip(rng.normal(0.5, 0.2, (300, 260)), 0, 1).astype(np.float32), "noise"))
    torch_out = TwoStagePipeline.from_pretrained(backend="torch").predict(xrays)
    onnx_out = TwoStagePipeline.from_pretrained(backend="onnx").predict(xrays)
    for a, b in zip(torch_out, onnx_out):
        assert dice_per_image(Counts.of(a.lung, b.lung))[0] >= 0.999
        assert dice_per_image(Counts.of(a.infection, b.infection))[0] >= 0.999
        assert a.infection_probability == pytest.approx(b.infection_probability, abs=1e-3)
