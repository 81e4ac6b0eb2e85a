"""DDP for real: two gloo ranks on CPU via torchrun train one epoch; rank 0 alone writes, validation is gathered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cxrseg.data.synthetic import make_synthetic_covidqu
from cxrseg.models.store import load_model

EXPECTED_FILES = {"best.json", "best.safetensors", "last.pt", "log.csv", "log.json"}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """6 Train and 3 Val phantoms (2 and 1 per class): an epoch takes well under a second."""
    return make_synthetic_covidqu(tmp_path_factory.mktemp("small"), {"Train": 2, "Val": 1}, size=128, seed=3)


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_torchrun_two_ranks_train_one_epoch(small_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "cxrseg.cli", "train", "lung", "--data", str(small_root), "--out", str(out),
        "--epochs", "1", "--channels", "8,16,32", "--size", "128", "--batch-size", "2", "--threads", "1",
        "--device", "cpu",  # gloo even on a GPU machine (two ranks cannot share one GPU with nccl)
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # One set of files, written by rank 0 only; nothing half-written left behind.
    names = {p.name for p in out.iterdir()}
    assert names == EXPECTED_FILES, names
    assert proc.stdout.count("epoch 1/1:") == 1  # the epoch summary comes from rank 0 alone

    history = json.loads((out / "log.json").read_text())
    assert [row["epoch"] for row in history] == [1]
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 0 and len(state["rng"]) == 2  # one RNG state per rank

    model, card = load_model(out / "best.safetensors")
    assert card["stage"] == "lung" and tuple(card["architecture"]["channels"]) == (8, 16, 32)
    assert model(torch.zeros(1, 1, 128, 128)).shape[-2:] == (128, 128)

    # Validation was gathered over both ranks' shards: re-validating the saved model on the whole
    # Val split in one process gives the logged figure (half the images would give another).
    from torch.utils.data import DataLoader

    from cxrseg.data.dataset import SegmentationDataset
    from cxrseg.training import TrainConfig
    from cxrseg.training.distributed import DistInfo
    from cxrseg.training.data import load_split
    from cxrseg.training.loop import _validate

    cfg = TrainConfig(stage="lung", data=small_root, out=out, epochs=1, size=128, progress=False)
    val = SegmentationDataset(load_split(cfg, "Val", None, False), "lung")
    figures = _validate(model, DataLoader(val, batch_size=4), cfg, torch.device("cpu"), DistInfo())
    assert figures["val_dice_mean"] == pytest.approx(history[0]["val_dice_mean"], abs=1e-5)
    assert history[0]["val_dice_mean"] == pytest.approx(card["metrics"]["val_dice_mean"])
