"""The whole-film classifier trainer: what it writes, that its weights load back, and its clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cxrseg.data.synthetic import make_synthetic_covidqu
from cxrseg.errors import CxrsegError
from cxrseg.models.factory import build_image_classifier
from cxrseg.models.store import load_classifier
from cxrseg.inference.decision import classifier_input
from cxrseg.training.classifier import ClassifierTrainConfig, fit_classifier


def test_fit_writes_weights_card_and_log(tmp_path):
    root = make_synthetic_covidqu(tmp_path / "data", {"Train": 3, "Val": 2}, size=64, seed=2)
    cfg = ClassifierTrainConfig(data=root, out=tmp_path / "run", epochs=2, batch_size=4, size=32, progress=False,
                                arch="densenet-small", command="cxrseg train-classifier ...")
    weights = fit_classifier(cfg)
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert [row["epoch"] for row in log] == [1, 2] and all(0 <= row["val_auc"] <= 1 for row in log)
    model, card = load_classifier(weights)
    assert card["input_size"] == 32 and card["training"]["command"] == "cxrseg train-classifier ..."
    assert card["architecture"]["arch"] == "densenet-small"
    assert card["metrics"]["val_auc"] == log[-1]["val_auc"]
    x = classifier_input(np.random.default_rng(0).random((2, 64, 64), dtype=np.float32), 32, "equalize")
    assert x.shape == (2, 1, 32, 32)
    with torch.inference_mode():
        assert model(x).shape == (2, 1)
    # A finished run resumes to the end without training again.
    before = (tmp_path / "run" / "last.pt").stat().st_mtime_ns
    fit_classifier(cfg)
    assert (tmp_path / "run" / "last.pt").stat().st_mtime_ns == before
    with pytest.raises(CxrsegError, match="2-epoch run"):
        fit_classifier(ClassifierTrainConfig(data=root, out=tmp_path / "run", epochs=3, size=32, progress=False,
                                             arch="densenet-small"))


def test_load_classifier_names_the_problem(tmp_path, tiny_models):
    with pytest.raises(CxrsegError, match="not found"):
        load_classifier(tmp_path / "missing.safetensors")
    lung, _ = tiny_models
    with pytest.raises(CxrsegError, match="not a cxrseg image classifier"):
        load_classifier(lung)
    sizes = {a: sum(p.numel() for p in build_image_classifier(a).parameters()) for a in ("densenet121", "densenet-small")}
    assert sizes["densenet121"] > 6e6 > 1e6 > sizes["densenet-small"]
    with pytest.raises(CxrsegError, match="unknown classifier"):
        build_image_classifier("vgg")
