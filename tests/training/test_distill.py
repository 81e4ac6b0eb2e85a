"""Distillation: the teacher's soft target, which teachers it accepts, and a run that trains with one."""

from __future__ import annotations

import json

import pytest
import torch

from cxrseg.data.synthetic import make_synthetic_covidqu
from cxrseg.errors import CxrsegError
from cxrseg.models.factory import ModelConfig, build_model
from cxrseg.models.store import default_card, read_card, save_model
from cxrseg.training import TrainConfig, fit
from cxrseg.training.batch_augment import equalize_batch
from cxrseg.training.distill import Teacher, distill_loss

CPU = torch.device("cpu")


def _saved(tmp_path, name: str, stage: str, config: ModelConfig, size: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(config)
    path = tmp_path / f"{name}.safetensors"
    save_model(path, model, default_card(stage, config, size))
    return path, model.eval()


def test_teacher_is_the_mean_probability_of_its_models(tmp_path):
    cfg = ModelConfig(channels=(4, 8))
    (a, ma), (b, mb) = _saved(tmp_path, "a", "lung", cfg, seed=1), _saved(tmp_path, "b", "lung", cfg, seed=2)
    x = torch.rand(2, 1, 32, 32)
    soft = Teacher([a, b], cfg, 32, CPU)(x)
    with torch.no_grad():
        expected = (torch.sigmoid(ma(x)) + torch.sigmoid(mb(x))) / 2
    assert soft.shape == (2, 1, 32, 32) and not soft.requires_grad
    torch.testing.assert_close(soft, expected, atol=1e-5, rtol=0)


def test_a_stage1_teacher_brings_its_own_normalisation(tmp_path):
    """The lung stage's input is the plain X-ray, so a teacher trained on equalised films equalises it itself."""
    path, model = _saved(tmp_path, "eq", "lung", ModelConfig(channels=(4, 8), input_norm="equalize"))
    x = torch.rand(2, 1, 32, 32)
    soft = Teacher([path], ModelConfig(channels=(4, 8)), 32, CPU, stage="lung")(x)
    with torch.no_grad():
        torch.testing.assert_close(soft, torch.sigmoid(model(equalize_batch(x))), atol=1e-5, rtol=0)


def test_a_teacher_with_the_students_normalisation_reads_the_batch_as_it_is(tmp_path):
    """A stage-2 batch is already equalised (and has two channels): the teacher must not equalise it again."""
    cfg = ModelConfig(channels=(4, 8), classifier=True, roi_input="image_and_mask", input_norm="equalize")
    path, model = _saved(tmp_path, "s2", "infection", cfg)
    x = torch.rand(2, 2, 32, 32)
    soft = Teacher([path], cfg, 32, CPU, stage="infection")(x)
    with torch.no_grad():
        seg, _ = model(x)
    torch.testing.assert_close(soft, torch.sigmoid(seg), atol=1e-5, rtol=0)


def test_a_teacher_that_reads_another_input_is_refused_by_name(tmp_path):
    student = ModelConfig(channels=(4, 8), classifier=True, roi_input="image_and_mask")
    other, _ = _saved(tmp_path, "masked", "infection", ModelConfig(channels=(4, 8), classifier=True))
    with pytest.raises(CxrsegError, match=r"masked\.safetensors.*roi_input"):
        Teacher([other], student, 32, CPU)
    eq, _ = _saved(tmp_path, "eq", "infection",
                   ModelConfig(channels=(4, 8), classifier=True, roi_input="image_and_mask", input_norm="equalize"))
    with pytest.raises(CxrsegError, match="input_norm"):  # stage 2's input is more than the X-ray: no own norm
        Teacher([eq], student, 32, CPU, stage="infection")
    big, _ = _saved(tmp_path, "big", "infection", student, size=64)
    with pytest.raises(CxrsegError, match="64 px"):
        Teacher([big], student, 32, CPU)


def test_distill_loss_pulls_the_student_to_the_teacher():
    target = torch.tensor([0.2, 0.9])
    at_target = torch.logit(target).requires_grad_()
    distill_loss(at_target, target).backward()
    torch.testing.assert_close(at_target.grad, torch.zeros(2), atol=1e-6, rtol=0)
    low = torch.zeros(2, requires_grad=True)  # p = 0.5: pushed down towards 0.2, up towards 0.9
    distill_loss(low, target).backward()
    assert low.grad[0] > 0 > low.grad[1]


def test_a_run_with_a_teacher_logs_the_distillation_and_names_it_in_the_card(tmp_path):
    root = make_synthetic_covidqu(tmp_path / "data", {"Train": 2, "Val": 1}, size=32, seed=3)
    cfg = ModelConfig(channels=(4, 8))
    teacher, _ = _saved(tmp_path, "teacher", "lung", cfg)
    result = fit(TrainConfig(stage="lung", data=root, out=tmp_path / "run", epochs=1, batch_size=3, size=32,
                             model=cfg, distill_from=(teacher,), distill_weight=0.5, progress=False))
    row = json.loads((tmp_path / "run" / "log.json").read_text())[0]
    assert row["distill_loss"] > 0
    assert row["loss"] == pytest.approx(row["seg_loss"] + 0.5 * row["distill_loss"], rel=1e-4)
    config = read_card(result.best_weights)["training"]["config"]
    assert config["distill_from"] == [str(teacher)] and config["distill_weight"] == 0.5
    with pytest.raises(CxrsegError, match="distill_weight"):
        TrainConfig(stage="lung", data=root, out=tmp_path, distill_weight=-1)
