"""Training survives being killed: SIGKILL mid-run then the same command resumes; SIGTERM ends cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cxrseg.data.synthetic import make_synthetic_covidqu
from cxrseg.models.factory import ModelConfig
from cxrseg.models.store import load_model
from cxrseg.training import TrainConfig, fit

EPOCHS = 6


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """6 Train and 3 Val phantoms (2 and 1 per class): an epoch takes well under a second."""
    return make_synthetic_covidqu(tmp_path_factory.mktemp("small"), {"Train": 2, "Val": 1}, size=128, seed=3)


def _cmd(data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "cxrseg.cli", "train", "lung", "--data", str(data), "--out", str(out),
        "--epochs", str(EPOCHS), "--channels", "8,16,32", "--size", "128", "--batch-size", "2",
        "--threads", "1", "--device", "cpu",
    ]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def _epochs_logged(out: Path) -> int:
    try:
        return len(json.loads((out / "log.json").read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _start_and_wait_for_epoch(cmd: list[str], out: Path, cwd: Path) -> subprocess.Popen:
    """Start training and return once log.json shows a finished epoch (the process still running).
    Its output goes to files (cwd/stdout.txt, cwd/stderr.txt): a pipe nobody reads could fill and block it."""
    with open(cwd / "stdout.txt", "w") as so, open(cwd / "stderr.txt", "w") as se:
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, text=True, env=_env(), cwd=cwd)
    deadline = time.monotonic() + 180
    while _epochs_logged(out) < 1:
        if proc.poll() is not None:
            pytest.fail(f"training exited early ({proc.returncode}): {(cwd / 'stderr.txt').read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no epoch finished within 180 s")
        time.sleep(0.02)
    return proc


def _temporaries(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_sigkill_then_same_command_resumes(small_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = _cmd(small_root, out)
    proc = _start_and_wait_for_epoch(cmd, out, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed; raise EPOCHS"

    before = json.loads((out / "log.json").read_text())
    saved = torch.load(out / "last.pt", map_location="cpu", weights_only=False)["epoch"] + 1  # epochs in last.pt
    assert 1 <= len(before) <= saved < EPOCHS  # last.pt is written before the log, so it may be one ahead
    # What a kill in the middle of a checkpoint write leaves behind: the next run must clear it.
    (out / ".last.pt.k1ll3d.tmp.pt").write_bytes(b"half a checkpoint")

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"resumed from {out / 'last.pt'}: continuing at epoch {saved + 1}/{EPOCHS}" in again.stdout
    assert f"epoch 1/{EPOCHS}:" not in again.stdout  # it did not start over

    after = json.loads((out / "log.json").read_text())
    assert [row["epoch"] for row in after] == list(range(1, EPOCHS + 1))
    assert after[: len(before)] == before  # the epochs before the kill are kept, not re-run
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == EPOCHS - 1
    model, card = load_model(out / "best.safetensors")
    assert card["training"]["epoch"] == state["best_epoch"]
    assert model(torch.zeros(1, 1, 128, 128)).shape == (1, 1, 128, 128)
    assert _temporaries(out) == []


def test_sigterm_ends_cleanly(small_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start_and_wait_for_epoch(_cmd(small_root, out), out, tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130, err[-2000:]  # handled like Ctrl-C: KeyboardInterrupt, exit status 130
    assert "Traceback" not in err
    assert _temporaries(out) == []
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert len(json.loads((out / "log.json").read_text())) in (state["epoch"], state["epoch"] + 1)
    load_model(out / "best.safetensors")


def test_sigterm_during_checkpoint_write_keeps_previous(small_root: Path, tmp_path: Path, monkeypatch) -> None:
    """SIGTERM arriving while last.pt is being written: the half-written temporary is removed and the
    previous complete checkpoint stays (in-process, so the signal lands at a known moment)."""
    import cxrseg.training.loop as loop

    real_save = torch.save
    calls = []

    def save_then_sigterm(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 1:
            return real_save(obj, f, *args, **kwargs)
        Path(f).write_bytes(b"partial")  # half a checkpoint on disk, then the signal
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        pytest.fail("SIGTERM was not turned into an interrupt")

    monkeypatch.setattr(loop.torch, "save", save_then_sigterm)
    out = tmp_path / "run"
    cfg = TrainConfig(stage="lung", data=small_root, out=out, epochs=3, batch_size=2, size=128,
                      model=ModelConfig(channels=(8, 16, 32)), device="cpu", progress=False)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg)
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored
    assert _temporaries(out) == []
    monkeypatch.setattr(loop.torch, "save", real_save)
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=False)["epoch"] == 0
