"""fit(): the files it writes, resuming an interrupted run, transfer, and that it actually learns."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from cxrseg.data.dataset import SegmentationDataset
from cxrseg.data.synthetic import make_synthetic_covidqu
from cxrseg.errors import CxrsegError
from cxrseg.models.factory import ModelConfig
from cxrseg.models.store import load_model, read_card, weights_digest
from cxrseg.training import TrainConfig, fit

MINI = ModelConfig(channels=(4, 8, 16), num_res_units=1)


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    """2 Train and 1 Val image per class at 64x64: enough to run the loop, not to learn."""
    return make_synthetic_covidqu(tmp_path_factory.mktemp("mini"), {"Train": 2, "Val": 1}, size=64, seed=5)


def _cfg(root, out, **kw) -> TrainConfig:
    base = dict(stage="lung", data=root, out=out, epochs=2, batch_size=3, lr=5e-3, size=64, model=MINI, progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def two_epoch_run(mini_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run2")
    return out, fit(_cfg(mini_root, out))


def test_fit_writes_checkpoints_and_logs(two_epoch_run):
    out, result = two_epoch_run
    for name in ("best.safetensors", "best.json", "last.pt", "log.csv", "log.json"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left behind
    assert result.best_weights == out / "best.safetensors"
    assert [row["epoch"] for row in result.history] == [1, 2]
    log = json.loads((out / "log.json").read_text())
    assert [row["epoch"] for row in log] == [1, 2]
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for key in ("loss", "val_dice_mean", "val_iou_mean", "lr", "seconds"):
        assert key in rows[0]
    assert result.best_metric == max(r["val_dice_mean"] for r in log)
    assert log[result.best_epoch - 1]["val_dice_mean"] == result.best_metric


def test_best_checkpoint_loads_with_its_card(two_epoch_run):
    out, result = two_epoch_run
    model, card = load_model(result.best_weights)
    assert card["stage"] == "lung" and card["input_size"] == 64
    assert card["architecture"]["channels"] == [4, 8, 16]
    assert card["training"]["epoch"] == result.best_epoch
    assert card["metrics"]["val_dice_mean"] == pytest.approx(result.best_metric)
    with torch.inference_mode():
        assert model(torch.rand(1, 1, 64, 64)).shape == (1, 1, 64, 64)


def test_finished_run_is_not_trained_again(mini_root, two_epoch_run, monkeypatch):
    out, result = two_epoch_run
    calls = []
    original = SegmentationDataset.__getitem__
    monkeypatch.setattr(SegmentationDataset, "__getitem__", lambda self, i: calls.append(i) or original(self, i))
    again = fit(_cfg(mini_root, out))
    assert calls == []
    assert again.history == result.history and again.best_epoch == result.best_epoch


class _Killed(Exception):
    pass


def test_resume_continues_an_interrupted_run(mini_root, tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = SegmentationDataset.__getitem__
    seen = {"validated": False}

    def crash_in_epoch_2(self, i):
        if self.transform is None:  # the validation set: epoch 1 is complete once it is read
            seen["validated"] = True
        elif seen["validated"]:
            raise _Killed("killed during epoch 2")
        return original(self, i)

    monkeypatch.setattr(SegmentationDataset, "__getitem__", crash_in_epoch_2)
    with pytest.raises(_Killed):
        fit(_cfg(mini_root, out))
    first = json.loads((out / "log.json").read_text())
    assert [r["epoch"] for r in first] == [1]
    assert (out / "last.pt").is_file() and (out / "best.safetensors").is_file()

    counted = {"train": 0, "val": 0}

    def count(self, i):
        counted["val" if self.transform is None else "train"] += 1
        return original(self, i)

    monkeypatch.setattr(SegmentationDataset, "__getitem__", count)
    result = fit(_cfg(mini_root, out))
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.history[0] == first[0]  # epoch 1 is the interrupted run's, not a re-run
    assert counted["val"] == 3  # one pass over the 3 validation images: only epoch 2 ran
    assert 0 < counted["train"] <= 6  # at most one pass over the 6 training images
    log = json.loads((out / "log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2]
    with open(out / "log.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]


def test_resume_refuses_another_stage(mini_root, two_epoch_run):
    out, _ = two_epoch_run
    with pytest.raises(CxrsegError, match="last.pt"):
        fit(_cfg(mini_root, out, stage="infection", roi="ground_truth"))


def test_resume_with_another_epoch_count_is_a_clear_error_or_continues(mini_root, tmp_path):
    """Extending a finished 1-epoch run to 2 epochs either continues from epoch 2 or says why it cannot."""
    out = tmp_path / "run"
    first = fit(_cfg(mini_root, out, epochs=1))
    try:
        second = fit(_cfg(mini_root, out, epochs=2))
    except CxrsegError as e:
        assert "last.pt" in str(e) and "--epochs 1" in str(e)
    else:
        assert [r["epoch"] for r in second.history] == [1, 2]
        assert second.history[0] == first.history[0]


def test_unreadable_last_checkpoint(mini_root, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"torn")
    with pytest.raises(CxrsegError, match="last.pt.*unreadable"):
        fit(_cfg(mini_root, out, epochs=1))
    result = fit(_cfg(mini_root, out, epochs=1, resume=False))  # --no-resume starts over
    assert [r["epoch"] for r in result.history] == [1]


def test_transfer_copies_matching_tensors(mini_root, two_epoch_run, tmp_path):
    """Stage 2 with a classifier head starts from stage-1 weights; lr=0 keeps what was copied."""
    _, lung = two_epoch_run
    out = tmp_path / "inf"
    fit(
        _cfg(mini_root, out, stage="infection", roi="ground_truth", epochs=1, lr=0.0, init_from=lung.best_weights,
             model=ModelConfig(channels=(4, 8, 16), num_res_units=1, classifier=True))
    )
    src = load_file(str(lung.best_weights))
    dst = load_file(str(out / "best.safetensors"))
    shared = set(src) & set(dst)
    assert shared == set(src)  # every stage-1 tensor has its place in stage 2
    assert set(dst) - set(src) and all(k.startswith("head.") for k in set(dst) - set(src))
    for k in shared:
        assert torch.equal(src[k], dst[k]), k
    ancestry = json.loads((out / "best.json").read_text())["training"]["init_from"]  # the card tells the chain
    assert ancestry["weights"] == str(lung.best_weights) and ancestry["tensors_copied"] == len(src)
    assert ancestry["training"]["epoch"] == read_card(lung.best_weights)["training"]["epoch"]


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(CxrsegError, match="stage"):
        TrainConfig(stage="heart", data=tmp_path, out=tmp_path)
    with pytest.raises(CxrsegError, match="loss"):
        TrainConfig(stage="lung", data=tmp_path, out=tmp_path, loss="mse")
    with pytest.raises(CxrsegError, match="ROI"):
        TrainConfig(stage="infection", data=tmp_path, out=tmp_path, roi="magic")
    with pytest.raises(CxrsegError, match="epochs"):
        TrainConfig(stage="lung", data=tmp_path, out=tmp_path, epochs=0)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(CxrsegError, match="nowhere"):
        fit(_cfg(tmp_path / "nowhere", tmp_path / "out"))


def test_bad_start_weights_fail_before_the_data_is_loaded(mini_root, two_epoch_run, tmp_path, monkeypatch):
    """A weights file without its card is reported at once, not after minutes of loading images."""
    orphan = tmp_path / "orphan.safetensors"
    orphan.write_bytes(two_epoch_run[1].best_weights.read_bytes())

    def no_loading(*args, **kwargs):
        raise AssertionError("the data was loaded before the start weights were checked")

    monkeypatch.setattr("cxrseg.training.loop.load_split", no_loading)
    for kw in ({"init_from": orphan}, {"stage": "infection", "roi": "predicted", "lung_model": orphan}):
        with pytest.raises(CxrsegError, match="orphan.json: model card not found"):
            fit(_cfg(mini_root, tmp_path / "out", **kw))


def test_training_learns_the_lungs(tiny_models):
    """The session's tiny lung model (6 epochs on the synthetic set) segments validation lungs well."""
    lung, infection = tiny_models
    log = json.loads((lung.parent / "log.json").read_text())
    assert len(log) == 6
    assert log[-1]["val_dice_mean"] > 0.7
    assert read_card(lung)["metrics"]["val_dice_mean"] == max(r["val_dice_mean"] for r in log)
    assert log[-1]["loss"] < log[0]["loss"]  # training loss goes down
    inf_log = json.loads((infection.parent / "log.json").read_text())
    assert len(inf_log) == 6
    assert "val_dice_mean_covid" in inf_log[-1] and "val_sensitivity" in inf_log[-1]
    assert inf_log[-1]["cls_loss"] < inf_log[0]["cls_loss"]  # the image-level head learns too


def test_card_names_the_stage1_model_by_content_not_path(tiny_models):
    """A card travels with its weights: the ROI's stage-1 model is named by file name and SHA-256, not a local path."""
    lung, infection = tiny_models
    roi = read_card(infection)["training"]["roi"]
    assert roi == f"stage-1 predictions of {lung.name} (sha256 {weights_digest(lung)})"
    assert str(lung.parent) not in roi


def test_stage2_options_train_and_run_in_the_pipeline(mini_root, tiny_models, tmp_path):
    """The options behind the shipped stage 2 (lungs' box crop at its own size, X-ray + lung mask as two
    channels, equalised input, acquisition shifts, EMA, a time budget) train, land in the card, and the
    pipeline and the ONNX export build the same input from the card."""
    import numpy as np

    from cxrseg.inference.pipeline import TwoStagePipeline

    cfg = ModelConfig(channels=(8, 16, 32), classifier=True, input_norm="equalize", roi_input="image_and_mask",
                      roi_margin=0.08)
    result = fit(TrainConfig(stage="infection", data=mini_root, out=tmp_path / "s2", epochs=3, batch_size=4, lr=5e-3,
                             size=64, model=cfg, lung_model=tiny_models[0], shift_augment=True, ema=0.9,
                             time_budget_s=1e-6, progress=False))
    assert [row["planned_epochs"] for row in result.history] == [1]  # the budget cut the schedule to one epoch
    card = read_card(result.best_weights)
    assert card["input_size"] == 64 and card["architecture"]["in_channels"] == 2
    assert card["architecture"]["roi_margin"] == 0.08 and "two channels" in card["input"]
    assert "equalisation" in card["normalisation"]
    assert card["training"]["config"]["ema"] == 0.9 and card["training"]["config"]["shift_augment"] is True
    image = np.random.default_rng(0).random((150, 130)).astype(np.float32)
    segs = [TwoStagePipeline.from_pretrained(tiny_models[0], result.best_weights, backend=b).predict_one(image)
            for b in ("torch", "onnx")]
    for seg in segs:
        assert seg.infection.shape == (150, 130) and not (seg.infection & ~seg.lung).any()
    assert segs[0].infection_probability == pytest.approx(segs[1].infection_probability, abs=1e-3)
    np.testing.assert_array_equal(segs[0].lung, segs[1].lung)


def test_bf16_precision_is_recorded_and_bad_options_are_clear(tmp_path):
    with pytest.raises(CxrsegError, match="precision"):
        TrainConfig(stage="lung", data=tmp_path, out=tmp_path, precision="fp8")
    with pytest.raises(CxrsegError, match="ema"):
        TrainConfig(stage="lung", data=tmp_path, out=tmp_path, ema=1.5)
    with pytest.raises(CxrsegError, match="roi_input"):
        ModelConfig(roi_input="stacked")
    with pytest.raises(CxrsegError, match="normalisation"):
        ModelConfig(input_norm="zscore")


def test_time_budget_is_refitted_on_the_second_epoch():
    """A slow first epoch (warm-up) sets a cautious plan; the second epoch's pace sets the final one, capped."""
    from cxrseg.training.loop import epochs_within

    assert epochs_within(370, [22.9], 2000) == 16
    assert epochs_within(370, [22.9, 7.0], 2000) == 2 + int((370 - 29.9) // 7.0)  # 50
    assert epochs_within(370, [22.9, 7.0], 30) == 30  # never past --epochs
    assert epochs_within(10, [22.9, 7.0], 2000) == 2  # over budget already: stop after the epochs done


def test_an_interrupt_mid_write_leaves_no_temporary(tmp_path, monkeypatch):
    """SIGTERM becomes KeyboardInterrupt anywhere, also between a temporary file's creation and its guard: fit()
    clears what the interrupted write left before it re-raises (CI caught one such .log.csv temporary)."""
    import cxrseg.training.loop as loop

    out = tmp_path / "run"

    def interrupted(cfg, info):
        out.mkdir()
        (out / ".log.csv.x1y2z3.tmp.csv").write_text("half a log")
        (out / "notes.txt").write_text("not ours")
        raise KeyboardInterrupt("signal 15")

    monkeypatch.setattr(loop, "_fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(stage="lung", data=tmp_path, out=out, progress=False, device="cpu"))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
