"""Models on disk: safetensors + card round trip, clear errors for broken checkpoints, classifier head."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from cxrseg.errors import CxrsegError
from cxrseg.models.factory import ModelConfig, build_model, split_outputs
from cxrseg.models.store import card_path, card_summary, default_card, load_model, read_card, save_model

SMALL = ModelConfig(channels=(4, 8, 16), num_res_units=1)


def _saved(tmp_path, config=SMALL, stage="lung", size=64):
    torch.manual_seed(0)
    model = build_model(config).eval()
    path = save_model(tmp_path / "m.safetensors", model, default_card(stage, config, size))
    return model, path


def test_round_trip_gives_identical_outputs(tmp_path):
    model, path = _saved(tmp_path)
    assert path.is_file() and card_path(path).is_file()
    loaded, card = load_model(path)
    assert not loaded.training
    x = torch.rand(2, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert card["architecture"]["channels"] == [4, 8, 16]


def test_round_trip_with_classifier_head(tmp_path):
    config = ModelConfig(channels=(4, 8, 16), num_res_units=1, classifier=True)
    model, path = _saved(tmp_path, config, stage="infection")
    loaded, card = load_model(path)
    assert loaded.head is not None
    x = torch.rand(3, 1, 64, 64)
    with torch.inference_mode():
        seg_a, cls_a = model(x)
        seg_b, cls_b = loaded(x)
    torch.testing.assert_close(seg_a, seg_b, rtol=0, atol=0)
    torch.testing.assert_close(cls_a, cls_b, rtol=0, atol=0)
    assert card["image_threshold"] == 0.5


def test_card_describes_the_model(tmp_path):
    _, path = _saved(tmp_path, size=96)
    card = read_card(path)
    arch = card["architecture"]
    assert arch["type"] == "monai.networks.nets.UNet"
    assert arch["channels"] == [4, 8, 16] and arch["num_res_units"] == 1 and arch["classifier"] is False
    assert card["input_size"] == 96
    assert "255" in card["normalisation"] and "[0, 1]" in card["normalisation"]
    assert card["stage"] == "lung"
    for package in ("cxrseg", "torch", "monai", "numpy", "python"):
        assert card["software"][package]
    assert card["software"]["torch"] == torch.__version__
    assert json.loads(card_path(path).read_text())  # plain JSON on disk


def test_save_leaves_no_temporary_files(tmp_path):
    _saved(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_classifier_head_output_shapes():
    model = build_model(ModelConfig(channels=(4, 8, 16, 32), num_res_units=1, classifier=True)).eval()
    with torch.inference_mode():
        seg, logit = split_outputs(model(torch.rand(5, 1, 64, 64)))
    assert seg.shape == (5, 1, 64, 64)
    assert logit.shape == (5,)
    plain = build_model(SMALL).eval()
    with torch.inference_mode():
        seg, logit = split_outputs(plain(torch.rand(2, 1, 64, 64)))
    assert seg.shape == (2, 1, 64, 64) and logit is None


def test_classifier_head_sees_the_image():
    """The image logit depends on the input (it is fed from the bottleneck, not a constant)."""
    torch.manual_seed(1)
    model = build_model(ModelConfig(channels=(4, 8, 16), num_res_units=1, classifier=True)).eval()
    with torch.inference_mode():
        _, a = model(torch.zeros(1, 1, 64, 64))
        _, b = model(torch.rand(1, 1, 64, 64))
    assert not torch.allclose(a, b)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CxrsegError, match="nothere.safetensors.*not found"):
        load_model(tmp_path / "nothere.safetensors")


def test_missing_card(tmp_path):
    _, path = _saved(tmp_path)
    card_path(path).unlink()
    with pytest.raises(CxrsegError, match=r"m\.json.*card not found"):
        load_model(path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_weights(tmp_path, damage):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\x00not safetensors at all" * 50, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(CxrsegError, match=r"m\.safetensors"):
        load_model(path)


def test_card_that_is_not_json(tmp_path):
    _, path = _saved(tmp_path)
    card_path(path).write_text("{not json")
    with pytest.raises(CxrsegError, match="not valid JSON"):
        load_model(path)


def test_card_weights_mismatch(tmp_path):
    _, path = _saved(tmp_path)
    card = read_card(path)
    card["architecture"]["channels"] = [8, 16, 32]
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(CxrsegError, match="does not match its card"):
        load_model(path)


def test_card_without_architecture(tmp_path):
    _, path = _saved(tmp_path)
    card = read_card(path)
    del card["architecture"]
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(CxrsegError, match="m.safetensors"):
        load_model(path)


def test_weights_of_another_model_with_this_card(tmp_path):
    _, path = _saved(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_path = _saved(other, ModelConfig(channels=(4, 8, 16), num_res_units=1, classifier=True), "infection")
    shutil.copyfile(other_path, path)  # head tensors the lung card knows nothing about
    with pytest.raises(CxrsegError, match="does not match its card"):
        load_model(path)


def test_card_summary_reads_the_decision_chain_and_figures():
    card = default_card("infection", ModelConfig(classifier=True))
    card.update(threshold=0.4, image_threshold=0.55, min_area=100)
    card["training"] = {"data": "Train", "epoch": 3, "roi": "ground-truth lung masks", "command": "cxrseg train x",
                        "init_from": {"weights": "a", "training": {"init_from": {"weights": "b", "training": {}}}}}
    card["metrics"] = {"split": "Val", "pipeline": "two-stage", "command": "q", "infection Dice": 0.5, "note": "text"}
    text = "\n".join(card_summary(card))
    assert "pixel threshold 0.4, image threshold 0.55, components under 100 px dropped" in text
    assert "epoch 3 of the last run, which started from 2 earlier run(s)" in text
    assert "ROI:       ground-truth lung masks" in text
    assert "  infection Dice: 0.5" in text and "note" not in text
    assert "with TTA" not in text
    card["tta"] = {"threshold": 0.5, "image_threshold": 0.6, "min_area": 25, "thresholds_tuned_on": "Val with TTA"}
    lines = card_summary(card)
    assert "with TTA:  pixel threshold 0.5, image threshold 0.6, components under 25 px dropped (tuned on Val with TTA)" in lines
    assert [line[:10] for line in lines[3:7]] == ["decision: ", "with TTA: ", "trained:  ", "ROI:      "]
    card["tta"]["metrics"] = {"split": "Val", "pipeline": "two-stage, tta=True", "command": "q --tta", "infection Dice": 0.6}
    assert card_summary(card)[-5:] == [
        "  infection Dice: 0.5", "  by: q",  # the plain figures, then the TTA ones
        "measured:  Val, two-stage, tta=True", "  infection Dice: 0.6", "  by: q --tta",
    ]
    only_figures = card_summary({"tta": {"metrics": {"split": "Val", "x": 1}}})  # a lung card: TTA figures, no decision
    assert not any(line.startswith("with TTA") for line in only_figures) and "  x: 1" in only_figures
    lung = "\n".join(card_summary(default_card("lung", ModelConfig())))
    assert "ROI" not in lung and "image threshold" not in lung and "measured" not in lung
