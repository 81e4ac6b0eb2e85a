"""The command line: each verb through typer's CliRunner, user errors through main() and a real subprocess."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrseg.cli import app, main
from cxrseg.data.covidqu import find_dataset
from cxrseg.errors import CxrsegError

runner = CliRunner()


def _run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Call the real entry point in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["cxrseg", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), out, err


def _subprocess(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "cxrseg.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def images(synthetic_root, tmp_path):
    folder = tmp_path / "xrays"
    folder.mkdir()
    for s in find_dataset(synthetic_root).select(("Val",))[::4]:  # 3 images
        shutil.copy(s.image, folder / s.image.name)
    return folder


# -- data -----------------------------------------------------------------------------------------------


def test_data_prints_the_table(synthetic_root):
    result = runner.invoke(app, ["data", str(synthetic_root)])
    assert result.exit_code == 0, result.output
    assert "| Train | COVID-19 | 8 | 8 | 8 | 8 (100.0%) |" in result.stdout
    assert "Usable samples: 33" in result.stdout


def test_data_in_a_real_process(synthetic_root, tmp_path):
    ok = _subprocess("data", synthetic_root)
    assert ok.returncode == 0, ok.stderr
    assert "| Val | Normal | 3 | 3 | 3 | 0 (0.0%) |" in ok.stdout

    missing = tmp_path / "no such folder"
    bad = _subprocess("data", missing)
    assert bad.returncode == 2
    line = _one_error_line(bad.stderr)
    assert str(missing) in line and "not found" in line
    assert "Traceback" not in bad.stdout + bad.stderr


def test_data_missing_folder_through_main(monkeypatch, capsys, tmp_path):
    code, out, err = _run_main(monkeypatch, capsys, "data", tmp_path / "gone")
    assert code == 2
    assert str(tmp_path / "gone") in _one_error_line(err)
    assert "Traceback" not in out + err


def test_data_missing_folder_raises_cxrseg_error_in_the_app(tmp_path):
    result = runner.invoke(app, ["data", str(tmp_path / "gone")])
    assert isinstance(result.exception, CxrsegError)
    assert str(tmp_path / "gone") in str(result.exception)


def test_data_on_an_empty_folder(monkeypatch, capsys, tmp_path):
    (tmp_path / "Infection Segmentation Data").mkdir()
    code, _, err = _run_main(monkeypatch, capsys, "data", tmp_path)
    assert code == 2 and "error:" in err


# -- predict --------------------------------------------------------------------------------------------


def test_predict_writes_outputs(tiny_models, images, tmp_path):
    lung, infection = tiny_models
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(images), "--out", str(out), "--lung-model", str(lung),
                                 "--infection-model", str(infection), "--backend", "torch"])
    assert result.exit_code == 0, result.output
    assert "3 segmented" in result.stdout
    for f in images.iterdir():
        assert np.asarray(Image.open(out / f"{f.stem}_lung.png")).shape == (128, 128)
        assert (out / f"{f.stem}_infection.png").is_file() and (out / f"{f.stem}_overlay.png").is_file()
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3


def test_predict_exits_1_naming_a_bad_file(tiny_models, images, tmp_path):
    lung, infection = tiny_models
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(images), "--out", str(out), "--lung-model", str(lung),
                                 "--infection-model", str(infection), "--backend", "torch"])
    assert result.exit_code == 1
    assert "broken.png" in result.output
    assert "3 segmented" in result.stdout and "1 failed" in result.stdout
    with open(out / "failed.csv", newline="") as fh:
        assert [r["file"] for r in csv.DictReader(fh)] == [str(images / "broken.png")]
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3


def test_predict_with_unreadable_checkpoint_exits_2(monkeypatch, capsys, tiny_models, images, tmp_path):
    lung, infection = tiny_models
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    shutil.copyfile(lung.with_suffix(".json"), bad.with_suffix(".json"))
    code, out, err = _run_main(monkeypatch, capsys, "predict", images, "--out", tmp_path / "out",
                               "--lung-model", bad, "--infection-model", infection, "--backend", "torch")
    assert code == 2
    line = _one_error_line(err)
    assert str(bad) in line and "unreadable checkpoint" in line
    assert "Traceback" not in out + err


def test_predict_with_missing_card_exits_2(monkeypatch, capsys, tiny_models, images, tmp_path):
    lung, infection = tiny_models
    lonely = tmp_path / "lonely.safetensors"
    shutil.copyfile(lung, lonely)  # weights without their model card
    code, _, err = _run_main(monkeypatch, capsys, "predict", images, "--lung-model", lonely,
                             "--infection-model", infection, "--backend", "torch", "--out", tmp_path / "o")
    assert code == 2
    assert "lonely.json" in _one_error_line(err)


def test_predict_missing_input_exits_2(monkeypatch, capsys, tiny_models, tmp_path):
    lung, infection = tiny_models
    code, _, err = _run_main(monkeypatch, capsys, "predict", tmp_path / "nothing.png", "--lung-model", lung,
                             "--infection-model", infection, "--backend", "torch", "--out", tmp_path / "o")
    assert code == 2
    assert "nothing.png" in _one_error_line(err)


# -- evaluate, export, train -------------------------------------------------------------------------------


def test_evaluate_writes_metrics(tiny_models, synthetic_root, tmp_path):
    lung, infection = tiny_models
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "--data", str(synthetic_root), "--split", "Val", "--out", str(out),
                                 "--lung-model", str(lung), "--infection-model", str(infection),
                                 "--backend", "torch", "--max-images", "3"])
    assert result.exit_code == 0, result.output
    assert "## Evaluation on Val (3 images)" in result.stdout
    for name in ("metrics.json", "metrics.md", "per_image.csv"):
        assert (out / name).is_file(), name


def test_export_onnx_writes_two_models(tiny_models, tmp_path):
    import onnxruntime as ort

    lung, infection = tiny_models
    out = tmp_path / "onnx"
    result = runner.invoke(app, ["export", "--format", "onnx", "--out", str(out), "--lung-model", str(lung),
                                 "--infection-model", str(infection)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["infection.json", "infection.onnx", "lung.json", "lung.onnx"]
    x = np.zeros((2, 1, 128, 128), np.float32)
    for stage, n_outputs in (("lung", 1), ("infection", 2)):
        session = ort.InferenceSession(str(out / f"{stage}.onnx"), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {session.get_inputs()[0].name: x})
        assert len(outputs) == n_outputs and outputs[0].shape == (2, 1, 128, 128)


def test_export_unknown_format_exits_2(tiny_models, tmp_path):
    result = runner.invoke(app, ["export", "--format", "tflite", "--out", str(tmp_path / "x"),
                                 "--lung-model", str(tiny_models[0]), "--infection-model", str(tiny_models[1])])
    assert result.exit_code == 2
    assert "tflite" in result.output


def test_train_one_epoch(synthetic_root, tmp_path):
    out = tmp_path / "lung"
    result = runner.invoke(app, ["train", "lung", "--data", str(synthetic_root), "--out", str(out), "--epochs", "1",
                                 "--channels", "8,16,32", "--size", "128", "--batch-size", "4",
                                 "--max-train", "6", "--max-val", "3"])
    assert result.exit_code == 0, result.output
    assert "best validation Dice" in result.stdout
    from cxrseg.models.store import read_card

    card = read_card(out / "best.safetensors")
    assert card["architecture"]["channels"] == [8, 16, 32] and card["input_size"] == 128
    assert card["training"]["command"].startswith("cxrseg ")
    assert (out / "log.csv").is_file() and (out / "last.pt").is_file()


def test_train_bad_channels_exits_2(synthetic_root, tmp_path):
    result = runner.invoke(app, ["train", "lung", "--data", str(synthetic_root), "--out", str(tmp_path / "o"),
                                 "--channels", "8,x"])
    assert result.exit_code == 2
    assert "--channels" in result.output


def test_info_summarises_the_cards_and_full_prints_them_whole(tiny_models):
    lung, infection = tiny_models
    args = ["info", "--lung-model", str(lung), "--infection-model", str(infection)]
    short = runner.invoke(app, args)
    assert short.exit_code == 0, short.output
    assert f"# infection: {infection} (sha256 " in short.stdout
    assert "network:   monai.networks.nets.UNet" in short.stdout and "image-level head" in short.stdout
    assert "software" not in short.stdout  # the summary leaves the versions to --full
    full = runner.invoke(app, [*args, "--full"])
    assert full.exit_code == 0, full.output
    assert '"software"' in full.stdout and len(full.stdout.splitlines()) > len(short.stdout.splitlines())


def test_tune_with_tta_writes_the_cards_tta_block(own_models, synthetic_root):
    lung, infection = own_models
    before = json.loads(infection.with_suffix(".json").read_text())
    result = runner.invoke(app, ["tune", "--data", str(synthetic_root), "--lung-model", str(lung),
                                 "--infection-model", str(infection), "--tta"])
    assert result.exit_code == 0, result.output
    assert "(its 'tta' block)" in result.output and "chosen: Thresholds(" in result.output
    after = json.loads(infection.with_suffix(".json").read_text())
    assert "with flip TTA" in after["tta"]["thresholds_tuned_on"]
    assert {k: after[k] for k in ("threshold", "image_threshold", "min_area")} == {
        k: before.get(k) for k in ("threshold", "image_threshold", "min_area")
    }


def test_tune_accurate_writes_the_cards_accurate_block_and_predict_uses_it(own_models, synthetic_root, tmp_path):
    lung, infection = own_models
    result = runner.invoke(app, ["tune", "--data", str(synthetic_root), "--lung-model", str(lung),
                                 "--infection-model", str(infection), "--accurate", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "(its 'accurate' block)" in result.output
    card = json.loads(infection.with_suffix(".json").read_text())
    assert "accurate mode" in card["accurate"]["thresholds_tuned_on"] and "tta" not in card
    image = next((synthetic_root / "Infection Segmentation Data" / "Val" / "COVID-19" / "images").iterdir())
    run = runner.invoke(app, ["predict", str(image), "--lung-model", str(lung), "--infection-model", str(infection),
                              "--accurate", "--out", str(tmp_path / "o"), "--quiet"])
    assert run.exit_code == 0, run.output
    info = json.loads((tmp_path / "o" / "run.json").read_text())
    assert info["accurate"] and info["tta"]
    assert info["decision"]["image_threshold"] == card["accurate"]["image_threshold"]


def test_predict_covid_status_positive_and_bad_value(tiny_models, synthetic_root, tmp_path):
    image = next((synthetic_root / "Infection Segmentation Data" / "Val" / "COVID-19" / "images").iterdir())
    args = ["predict", str(image), "--lung-model", str(tiny_models[0]), "--infection-model", str(tiny_models[1])]
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "bad"), "--covid-status", "maybe"])
    assert bad.exit_code == 2 and "--covid-status" in bad.output
    assert not (tmp_path / "bad").exists()
    ok = runner.invoke(app, [*args, "--out", str(tmp_path / "ok"), "--covid-status", "positive"])
    assert ok.exit_code == 0, ok.output
    import csv

    row = next(csv.DictReader(open(tmp_path / "ok" / "results.csv")))
    assert row["covid_status"] == "positive" and row["covid_like"] == "confirmed"
    assert row["opacity_pct"] == row["infected_pct"]
