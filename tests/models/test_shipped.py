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


def test_the_accurate_mode_has_its_wider_stage_1_and_its_own_decision():
    from cxrseg.inference.decision import resolve_classifier
    from cxrseg.inference.pipeline import TwoStagePipeline

    wide = shipped_weights("lung-wide")
    card = read_card(wide)
    assert card["stage"] == "lung" and card["name"] == "cxrseg-lung-wide" and wide.with_suffix(".onnx").is_file()
    decision = read_card(resolve_classifier("auto", None) or INFECTION)
    assert "accurate mode" in decision["accurate"]["thresholds_tuned_on"]
    assert "infection Dice, per-image mean, COVID-19 images" in decision["accurate"]["metrics"]
    pipe = TwoStagePipeline.from_pretrained(backend="torch", accurate=True)
    assert list(pipe.weights) == ["lung", "lung-2", "infection"] and pipe.weights["lung-2"] == wide
    assert pipe.image_threshold == decision["accurate"]["image_threshold"] and pipe.tta
    from cxrseg.data.io import read_xray
    from cxrseg.examples import films

    film = read_xray(films()[0].path)  # a real film: the shipped example from another hospital
    fast, slow = TwoStagePipeline.from_pretrained(backend="torch").predict_one(film), pipe.predict_one(film)
    assert dice_per_image(Counts.of(fast.lung, slow.lung))[0] > 0.9
    from typer.testing import CliRunner

    from cxrseg.cli import app

    info = CliRunner().invoke(app, ["info"])
    assert info.exit_code == 0 and f"# lung-wide: {wide} (sha256 " in info.stdout
    assert info.stdout.index("# lung:") < info.stdout.index("# lung-wide:") < info.stdout.index("# infection:")


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
