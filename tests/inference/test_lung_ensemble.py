"""Several stage-1 models averaged (the accurate mode's stage 1), and the accurate mode's own decision."""

from __future__ import annotations

import numpy as np
import pytest

from cxrseg.data.covidqu import find_dataset
from cxrseg.data.io import read_xray
from cxrseg.data.normalize import normalize_input
from cxrseg.evaluation.tune import Thresholds, TuneResult, write_thresholds
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.inference.writers import dicom_seg_algorithms
from cxrseg.models.store import read_card, weights_digest
from cxrseg.report.runinfo import run_info


@pytest.fixture(scope="module")
def images(synthetic_root) -> np.ndarray:
    samples = find_dataset(synthetic_root).select(("Val",))[:4]
    return np.stack([read_xray(s.image).pixels for s in samples]).astype(np.float32)


class Recorder:
    """A stage-1 backend that records its inputs and shifts the wrapped model's logits by ``shift``."""

    def __init__(self, inner, shift: float = 0.0) -> None:
        self.inner, self.shift, self.name, self.seen = inner, shift, inner.name, []

    def __call__(self, x):
        self.seen.append(x.copy())
        seg, cls = self.inner(x)
        return seg + self.shift, cls


def test_stage_1_probabilities_are_the_members_mean_each_with_its_own_input(pipeline, images):
    first, second = Recorder(pipeline.lung_backend), Recorder(pipeline.lung_backend, shift=-2.0)
    equalized = {**pipeline.lung_card, "architecture": {**pipeline.lung_card["architecture"], "input_norm": "equalize"}}
    both = TwoStagePipeline([first, second], pipeline.infection_backend, [pipeline.lung_card, equalized],
                            pipeline.infection_card)
    alone = [TwoStagePipeline(b, pipeline.infection_backend, c, pipeline.infection_card)
             for b, c in ((Recorder(pipeline.lung_backend), pipeline.lung_card),
                          (Recorder(pipeline.lung_backend, -2.0), equalized))]
    prob, lung = both.lungs(images)
    np.testing.assert_allclose(prob, (alone[0].lungs(images)[0] + alone[1].lungs(images)[0]) / 2, atol=1e-6)
    np.testing.assert_allclose(second.seen[0][:, 0], normalize_input(images, "equalize"), atol=1e-6)
    np.testing.assert_allclose(first.seen[0][:, 0], normalize_input(images, pipeline.lung_config.input_norm), atol=1e-6)
    assert lung.shape == images.shape and lung.any()
    assert both.lung_backend is first and both.lung_card is pipeline.lung_card  # the first is the primary


def test_one_card_per_stage_1_model_is_required(pipeline):
    from cxrseg.errors import CxrsegError

    with pytest.raises(CxrsegError, match="one card per model"):
        TwoStagePipeline([pipeline.lung_backend] * 2, pipeline.infection_backend, [pipeline.lung_card],
                         pipeline.infection_card)


def test_several_lung_models_are_named_in_run_json_and_the_seg(tiny_models):
    lung, infection = tiny_models
    pipe = TwoStagePipeline.from_pretrained([lung, lung], infection, backend="torch")
    assert list(pipe.weights) == ["lung", "lung-2", "infection"] and len(pipe.lung_members) == 2
    assert list(pipe.cards) == list(pipe.weights) and pipe.cards["lung-2"] is pipe.lung_members[1].card
    info = run_info(pipe, pipe.weights)
    assert info["models"]["lung-2"]["card"]["stage"] == "lung"
    assert info["models"]["lung-2"]["sha256"] == weights_digest(lung)
    seg_lung, _ = dicom_seg_algorithms(pipe)
    parameters = str(seg_lung[0].AlgorithmParameters)  # highdicom: "name=value,name=value"
    assert f"lung-2_sha256={weights_digest(lung)}" in parameters


def test_the_accurate_mode_reads_its_own_decision_and_runs_tta(own_models, tiny_models, images):
    lung, infection = own_models
    plain = TwoStagePipeline.from_pretrained(lung, infection, backend="torch")
    assert plain.decision_block is None and not plain.accurate
    assert TwoStagePipeline.from_pretrained(lung, infection, backend="torch", tta=True).decision_block == "tta"
    write_thresholds(infection, TuneResult(Thresholds(0.45, 0.3, 5), 0.0, [], [], 0.05, 0.0), "Val", block="tta")
    no_block_yet = TwoStagePipeline.from_pretrained(lung, infection, backend="torch", accurate=True)
    assert (no_block_yet.infection_threshold, no_block_yet.min_area) == (0.45, 5)  # falls back to the TTA decision
    write_thresholds(infection, TuneResult(Thresholds(0.35, 0.2, 9), 0.0, [], [], 0.05, 0.0), "Val", block="accurate")
    card = read_card(infection)
    assert card["accurate"]["min_area"] == 9 and "accurate mode" in card["accurate"]["thresholds_tuned_on"]
    accurate = TwoStagePipeline.from_pretrained([lung, tiny_models[0]], infection, backend="torch", accurate=True)
    assert accurate.tta and accurate.decision_block == "accurate"
    assert (accurate.infection_threshold, accurate.image_threshold, accurate.min_area) == (0.35, 0.2, 9)
    assert (plain.infection_threshold, plain.min_area) != (0.35, 9)
    out = accurate.run_model_size(images)
    assert out.uncertainty is not None and out.lung.shape == images.shape
