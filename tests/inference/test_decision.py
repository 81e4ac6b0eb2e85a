"""The whole-film classifier: averaged with the head, its own tuned decision, shipped beside the shipped stage 2,
and the CLI's --classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrseg.evaluation.tune import tune_infection, write_thresholds
from cxrseg.inference.decision import FilmClassifier, combine, resolve_classifier
from cxrseg.models.store import read_card, shipped_weights
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.training.classifier import ClassifierTrainConfig, fit_classifier


@pytest.fixture(scope="module")
def tiny_classifier(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier")
    return fit_classifier(ClassifierTrainConfig(data=synthetic_root, out=out, epochs=1, batch_size=4, size=32,
                                                arch="densenet-small", progress=False))


def test_combine():
    np.testing.assert_allclose(combine(np.array([0.2, 0.8]), np.array([0.6, 0.4])), [0.4, 0.6])
    np.testing.assert_allclose(combine(None, np.array([0.3])), [0.3])


def test_pipeline_averages_the_head_and_the_classifier(tiny_models, tiny_classifier):
    lung, infection = tiny_models
    images = np.random.default_rng(0).random((3, 256, 256), dtype=np.float32)
    plain = TwoStagePipeline.from_pretrained(lung, infection, backend="torch")
    both = TwoStagePipeline.from_pretrained(lung, infection, backend="torch", classifier=tiny_classifier)
    film = FilmClassifier(tiny_classifier)(images)
    head = plain.run_model_size(images).image_prob
    np.testing.assert_allclose(both.run_model_size(images).image_prob, (head + film) / 2, atol=1e-5)
    assert both.image_threshold == plain.image_threshold  # no decision of its own yet: the infection card's
    flipped = FilmClassifier(tiny_classifier)(images, tta=True)
    mirrored = FilmClassifier(tiny_classifier)(images[..., ::-1].copy())
    np.testing.assert_allclose(flipped, (film + mirrored) / 2, atol=1e-5)


def test_tuned_decision_is_stored_in_the_classifier_card_and_used(tiny_models, tiny_classifier, synthetic_root,
                                                                  tmp_path):
    lung, infection = tiny_models
    weights = tmp_path / "classifier.safetensors"
    weights.write_bytes(tiny_classifier.read_bytes())
    weights.with_suffix(".json").write_text(tiny_classifier.with_suffix(".json").read_text())
    pipe = TwoStagePipeline.from_pretrained(lung, infection, backend="torch", classifier=weights)
    result = tune_infection(pipe, synthetic_root, "Val", image_thresholds=(0.3, 0.6))
    write_thresholds(weights, result, "Val")
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["image_threshold"] == result.best.image_threshold and card["threshold"] == result.best.threshold
    again = TwoStagePipeline.from_pretrained(lung, infection, backend="torch", classifier=weights)
    assert (again.infection_threshold, again.image_threshold, again.min_area) == (
        result.best.threshold, result.best.image_threshold, result.best.min_area)


def test_cli_predict_records_the_classifier(tiny_models, tiny_classifier, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from PIL import Image

    from cxrseg.cli import app
    from cxrseg.data.synthetic import phantom

    lung, infection = tiny_models
    Image.fromarray(phantom("COVID-19", 256, np.random.default_rng(1))[0]).save(tmp_path / "film.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "film.png"), "--out", str(out), "--lung-model",
                                      str(lung), "--infection-model", str(infection), "--backend", "torch",
                                      "--classifier", str(tiny_classifier), "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["models"]["classifier"]["weights"] == str(tiny_classifier)
    assert run["models"]["classifier"]["card"]["stage"] == "classifier"
    missing = CliRunner().invoke(app, ["predict", str(tmp_path / "film.png"), "--out", str(tmp_path / "o2"),
                                       "--classifier", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code != 0  # cxrseg's main() prints a CxrsegError as one line naming the file
    assert type(missing.exception).__name__ == "CxrsegError" and "nope.safetensors" in str(missing.exception)


def test_auto_is_the_shipped_classifier_beside_the_shipped_stage_2_only(tiny_models, tiny_classifier):
    """'auto' pairs the shipped classifier with the shipped stage 2 (its tuned thresholds are for that pair);
    with any other stage 2, or 'none', the head decides alone; a path is taken as given."""
    shipped = shipped_weights("classifier")
    assert resolve_classifier("auto", None) == shipped
    assert resolve_classifier("auto", shipped_weights("infection")) == shipped
    assert resolve_classifier("auto", tiny_models[1]) is None
    assert resolve_classifier("none", None) is None and resolve_classifier(None, None) is None
    assert resolve_classifier(tiny_classifier, tiny_models[1]) == tiny_classifier
    assert TwoStagePipeline.from_pretrained(*tiny_models, backend="torch").classifier is None


def test_shipped_pair_takes_its_decision_from_the_classifier_card():
    """The shipped pipeline's thresholds are the ones `cxrseg tune --classifier` stored in the classifier's card,
    plain and with TTA, and differ from the pipeline without it only through that card."""
    card = read_card(shipped_weights("classifier"))
    assert card["image_threshold"] is not None and "tta" in card
    pipe = TwoStagePipeline.from_pretrained(backend="torch")
    assert pipe.classifier is not None and pipe.classifier.weights == shipped_weights("classifier")
    assert (pipe.infection_threshold, pipe.image_threshold, pipe.min_area) == (
        card["threshold"], card["image_threshold"], card["min_area"])
    tta = TwoStagePipeline.from_pretrained(backend="torch", tta=True)
    assert (tta.infection_threshold, tta.image_threshold) == (card["tta"]["threshold"], card["tta"]["image_threshold"])
    alone = TwoStagePipeline.from_pretrained(backend="torch", classifier="none")
    head_card = read_card(shipped_weights("infection"))
    assert alone.classifier is None and alone.image_threshold == head_card["image_threshold"]
