"""Backends and precision: how 'auto' resolves, bf16 against the fp32 reference (tiny and shipped models), the
--precision option, and the PNG encoding of the mask and overlay files."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cxrseg.data.io import XRay, read_mask, read_xray
from cxrseg.data.synthetic import phantom
from cxrseg.errors import CxrsegError
from cxrseg.inference import backends
from cxrseg.inference.backends import TorchBackend, bf16_supported, choose, onnxruntime_available
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.inference.writers import encode_mask_png, encode_png, save_png
from cxrseg.models.store import load_model


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2 * int((a & b).sum()) / total


# -- how 'auto' resolves -------------------------------------------------------------------------------------
def test_auto_is_bf16_torch_where_the_cpu_has_bf16(monkeypatch):
    monkeypatch.setattr(backends, "bf16_supported", lambda device="cpu": True)
    assert choose("auto", "auto", "cpu") == ("torch", "bf16")
    assert choose("auto", "bf16", "cpu") == ("torch", "bf16")


@pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed")
def test_auto_is_fp32_onnx_elsewhere_and_for_fp32(monkeypatch):
    monkeypatch.setattr(backends, "bf16_supported", lambda device="cpu": False)
    assert choose("auto", "auto", "cpu") == ("onnx", "fp32")
    monkeypatch.setattr(backends, "bf16_supported", lambda device="cpu": True)
    assert choose("auto", "fp32", "cpu") == ("onnx", "fp32")


def test_a_named_backend_is_fp32_unless_bf16_is_asked_for():
    assert choose("torch", "auto") == ("torch", "fp32")  # --backend torch alone: the fp32 reference
    assert choose("torch", "fp32") == ("torch", "fp32")
    assert choose("torch", "bf16") == ("torch", "bf16")
    assert choose("onnx", "auto") == choose("onnx", "fp32") == ("onnx", "fp32")


def test_bad_combinations_say_why():
    with pytest.raises(CxrsegError, match="bf16 runs on the torch backend"):
        choose("onnx", "bf16")
    with pytest.raises(CxrsegError, match="unknown precision 'fp8'"):
        choose("auto", "fp8")
    with pytest.raises(CxrsegError, match="unknown backend"):
        choose("tensorflow", "auto")
    with pytest.raises(CxrsegError, match="precision"):
        TorchBackend(torch.nn.Identity(), "cpu", precision="int8")


def test_bf16_support_is_a_yes_or_no():
    assert bf16_supported("cpu") in (True, False)


# -- bf16 against fp32 on the tiny models ----------------------------------------------------------------------
def test_torch_bf16_returns_float32_close_to_fp32(tiny_models):
    model, _ = load_model(tiny_models[1])  # the one with an image-level head
    x = np.random.default_rng(0).random((3, 1, 128, 128), dtype=np.float32)
    fp32 = TorchBackend(model, "cpu", precision="fp32")
    seg32, cls32 = fp32(x)
    bf16 = TorchBackend(model, "cpu", precision="bf16")
    seg16, cls16 = bf16(x)
    assert (fp32.name, bf16.name, bf16.precision) == ("torch", "torch-bf16", "bf16")
    assert seg16.dtype == cls16.dtype == np.float32 and seg16.shape == seg32.shape and cls16.shape == cls32.shape
    assert np.abs(seg16 - seg32).max() < 0.1 * (np.abs(seg32).max() + 1)
    lc = TorchBackend(model, "cpu", precision="bf16", channels_last=True)
    seg_cl, _ = lc(x)
    assert seg_cl.flags["C_CONTIGUOUS"] and np.abs(seg_cl - seg16).max() < 0.1 * (np.abs(seg32).max() + 1)


def test_from_pretrained_takes_the_precision(tiny_models, synthetic_root):
    ref = TwoStagePipeline.from_pretrained(*tiny_models, backend="torch", precision="fp32")
    fast = TwoStagePipeline.from_pretrained(*tiny_models, backend="torch", precision="bf16")
    assert (ref.backend_name, fast.backend_name) == ("torch", "torch-bf16")
    xs = [read_xray(p) for p in sorted((synthetic_root / "Infection Segmentation Data" / "Val").rglob("images/*.png"))]
    for a, b in zip(ref.predict(xs), fast.predict(xs)):
        assert dice(a.lung, b.lung) >= 0.98
    with pytest.raises(CxrsegError, match="precision"):
        TwoStagePipeline.from_pretrained(*tiny_models, backend="onnx", precision="bf16")


def test_precision_option_of_predict(tiny_models, synthetic_root, tmp_path):
    from cxrseg.cli import app

    lung, infection = (str(p) for p in tiny_models)
    images = synthetic_root / "Infection Segmentation Data" / "Val" / "COVID-19" / "images"
    common = ["predict", str(images), "--lung-model", lung, "--infection-model", infection, "--workers", "0", "-q"]
    result = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "bf16"), "--backend", "torch",
                                      "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["backend"] == "torch-bf16"
    result = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "x"), "--backend", "onnx", "--precision", "bf16"])
    assert result.exit_code != 0 and "bf16 runs on the torch backend" in str(result.exception or result.output)


# -- accuracy must not move: the shipped models, fast default against the fp32 reference ----------------------
def _shipped_or_skip():
    from cxrseg.models.store import shipped_weights

    try:
        return shipped_weights("lung"), shipped_weights("infection")
    except Exception:  # noqa: BLE001 - a checkout before the first trained models landed
        pytest.skip("no shipped models in this checkout")


@pytest.fixture(scope="module")
def shipped_inputs() -> tuple[list[XRay], list[XRay]]:
    """(the two real example films, taken down from 2000 to 1024 px a side; three synthetic phantoms)."""
    from cxrseg.examples import films

    real = []
    for f in films():
        x = read_xray(f.path)
        img = Image.fromarray(np.round(x.pixels * 255).astype(np.uint8)).resize((1024, 1024), Image.BILINEAR)
        real.append(XRay(np.asarray(img).astype(np.float32) / 255, x.source))
    rng = np.random.default_rng(7)
    phantoms = [XRay(phantom(label, 256, rng)[0].astype(np.float32) / 255, f"phantom-{label}")
                for label in ("COVID-19", "Non-COVID", "COVID-19")]
    return real, phantoms


def test_fast_default_matches_the_fp32_reference_on_the_shipped_models(shipped_inputs):
    """Dice >= 0.99 between the default path and PyTorch fp32: per film for both masks (the two real films and
    their mirror images), per phantom for the lungs, and >= 0.985 over the phantoms' infection pixels together.

    The phantoms stand in for data CI does not have. On real films the agreement is the issue's 0.99: 311 Val
    films gave infection Dice 0.9963 pooled, 0.9972 per film, no decision changed
    (``benchmarks/precision_agreement.py``, docs/precision_agreement.md). On the cartoons, whose lesions stage 2
    was never trained on (one of them 1,100 pixels), session 7's stage 2 agrees to 0.989 pooled: a handful of
    border pixels, which bf16 moves in both stages about equally (0.992 with either stage alone in bf16)."""
    _shipped_or_skip()
    real, phantoms = shipped_inputs
    real = real + [XRay(np.ascontiguousarray(x.pixels[:, ::-1]), f"{x.source} (mirrored)") for x in real]
    reference = TwoStagePipeline.from_pretrained(backend="torch", precision="fp32")
    candidates = [TwoStagePipeline.from_pretrained()]  # what `cxrseg predict` runs here
    if candidates[0].backend_name != "torch-bf16":  # a CPU without native bf16: check bf16 itself too
        candidates.append(TwoStagePipeline.from_pretrained(backend="torch", precision="bf16"))
    ref = reference.predict(real + phantoms)
    for pipe in candidates:
        out = pipe.predict(real + phantoms)
        for r, f in zip(ref, out):
            assert dice(r.lung, f.lung) >= 0.99, (pipe.backend_name, r.source)
            if r.infection_probability is not None:
                assert f.infection_probability == pytest.approx(r.infection_probability, abs=0.02)
        for r, f in zip(ref[: len(real)], out[: len(real)]):
            assert dice(r.infection, f.infection) >= 0.99, (pipe.backend_name, r.source)
        pooled = dice(np.concatenate([r.infection.ravel() for r in ref[len(real):]]),
                      np.concatenate([f.infection.ravel() for f in out[len(real):]]))
        assert pooled >= 0.985, pipe.backend_name


# -- PNG encoding of the output files --------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (13, 11), (300, 257)])
def test_mask_pngs_read_back_as_0_255_mode_l(shape, tmp_path):
    mask = np.random.default_rng(sum(shape)).random(shape) > 0.5
    data = encode_mask_png(mask)
    img = Image.open(io.BytesIO(data))
    a = np.asarray(img)
    assert img.mode == "L" and a.dtype == np.uint8 and a.shape == shape
    assert set(np.unique(a)) <= {0, 255} and np.array_equal(a > 0, mask)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("L")), mask.astype(np.uint8) * 255)
    save_png(tmp_path / "m.png", mask)
    assert np.array_equal(read_mask(tmp_path / "m.png"), mask)
    assert len(data) < 400 + mask.size // 4  # 2 bits a pixel at most, before compression


def test_grey_and_rgb_pngs_are_lossless(tmp_path):
    rng = np.random.default_rng(1)
    for a, mode in ((rng.integers(0, 256, (31, 17), dtype=np.uint8), "L"), (rng.integers(0, 256, (9, 40, 3), dtype=np.uint8), "RGB")):
        img = Image.open(io.BytesIO(encode_png(a)))
        assert img.mode == mode and np.array_equal(np.asarray(img), a)
        save_png(tmp_path / f"{mode}.png", a)
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{mode}.png")), a)
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2, 4), np.uint8))


# -- the plain baseline the speed benchmark times against ------------------------------------------------------
def test_baseline_script_writes_the_same_kind_of_masks(tiny_models, synthetic_root, tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "baseline_predict.py"
    spec = importlib.util.spec_from_file_location("baseline_predict", script)
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    images = synthetic_root / "Infection Segmentation Data" / "Val" / "COVID-19" / "images"
    baseline.main([str(images), "--out", str(tmp_path), "--lung-model", str(tiny_models[0]),
                   "--infection-model", str(tiny_models[1]), "--batch-size", "2", "--overlay"])
    ref = TwoStagePipeline.from_pretrained(*tiny_models, backend="torch", precision="fp32")
    for f in sorted(images.glob("*.png")):
        lung = read_mask(tmp_path / f"{f.stem}_lung.png")
        assert lung.shape == np.asarray(Image.open(f)).shape and (tmp_path / f"{f.stem}_overlay.png").is_file()
        assert dice(lung, ref.predict_one(f).lung) > 0.9  # no post-processing in the baseline, else the same
