"""Training precision: which autocast dtype each --precision gives, and that bf16 keeps fp32 weights and state."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from cxrseg.data.synthetic import make_synthetic_covidqu
from cxrseg.errors import CxrsegError
from cxrseg.inference import backends
from cxrseg.models.factory import ModelConfig
from cxrseg.training import TrainConfig, fit
from cxrseg.training import loop as loop_module
from cxrseg.training.loop import autocast_dtype

CPU = torch.device("cpu")


def _native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and backends._cpu_has_native_bf16()
    except (AttributeError, RuntimeError):
        return False


def test_fp32_means_no_autocast_and_bf16_means_bfloat16():
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16


def test_auto_follows_the_cpus_native_bf16_support():
    assert autocast_dtype("auto", CPU) == (torch.bfloat16 if _native_bf16() else None)


@pytest.mark.parametrize("supported", [True, False])
def test_auto_on_either_kind_of_cpu(monkeypatch, supported):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: supported)
    monkeypatch.setattr(backends, "_cpu_has_native_bf16", lambda: True)
    assert autocast_dtype("auto", CPU) == (torch.bfloat16 if supported else None)
    assert autocast_dtype("fp32", CPU) is None and autocast_dtype("bf16", CPU) is torch.bfloat16


def test_auto_is_fp32_where_onednn_would_only_emulate_bf16(monkeypatch):
    """oneDNN says yes on any AVX-512 CPU; without AVX-512 BF16 / AMX bf16 is emulated and slower than fp32."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(backends, "_cpu_has_native_bf16", lambda: False)
    assert autocast_dtype("auto", CPU) is None


def test_auto_falls_back_to_fp32_when_the_probe_fails(monkeypatch):
    def broken():
        raise RuntimeError("no oneDNN")

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", broken)
    assert autocast_dtype("auto", CPU) is None


def test_unknown_precision_is_refused(tmp_path):
    with pytest.raises(CxrsegError, match="precision"):
        TrainConfig(stage="lung", data=tmp_path, out=tmp_path / "o", precision="fp16")


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    return make_synthetic_covidqu(tmp_path_factory.mktemp("mini-precision"), {"Train": 2, "Val": 1}, size=64, seed=7)


def _float_tensors(obj, path="") -> dict[str, torch.Tensor]:
    """Every floating-point tensor in a nested dict/list, by its path."""
    if torch.is_tensor(obj):
        return {path: obj} if obj.is_floating_point() else {}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    out = {}
    for k, v in items:
        out.update(_float_tensors(v, f"{path}/{k}"))
    return out


@pytest.mark.parametrize("stage", ["lung", "infection"])
def test_bf16_fit_runs_under_autocast_and_keeps_fp32_parameters_and_optimizer_state(mini_root, tmp_path, monkeypatch,
                                                                                    stage):
    seen = []  # dtype of the segmentation logits of every forward pass, training and validation
    real_split = loop_module.split_outputs

    def recording_split(out):
        seg, cls = real_split(out)
        seen.append(seg.dtype)
        return seg, cls

    monkeypatch.setattr(loop_module, "split_outputs", recording_split)
    model = ModelConfig(channels=(4, 8, 16), num_res_units=1, classifier=stage == "infection")
    cfg = TrainConfig(stage=stage, data=mini_root, out=tmp_path / "run", epochs=2, batch_size=3, lr=5e-3, size=64,
                      model=model, progress=False, precision="bf16", roi="ground_truth", device="cpu")
    result = fit(cfg)
    assert seen and set(seen) == {torch.bfloat16}  # the forward passes really ran in bf16
    state = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    params = _float_tensors(state["model"])
    moments = _float_tensors(state["optimizer"]["state"])
    assert params and moments  # AdamW's exp_avg / exp_avg_sq exist after the steps
    assert {t.dtype for t in params.values()} == {torch.float32}
    assert {t.dtype for t in moments.values()} == {torch.float32}
    assert {t.dtype for t in load_file(result.best_weights).values() if t.is_floating_point()} == {torch.float32}
    assert all(torch.isfinite(t).all() for t in params.values())
    assert all(isinstance(r["loss"], float) and r["loss"] == r["loss"] for r in result.history)  # no NaN loss


def test_fp32_fit_has_no_bf16_anywhere(mini_root, tmp_path, monkeypatch):
    seen = []
    real_split = loop_module.split_outputs

    def recording_split(out):
        seg, cls = real_split(out)
        seen.append(seg.dtype)
        return seg, cls

    monkeypatch.setattr(loop_module, "split_outputs", recording_split)
    cfg = TrainConfig(stage="lung", data=mini_root, out=tmp_path / "run", epochs=1, batch_size=3, size=64,
                      model=ModelConfig(channels=(4, 8, 16), num_res_units=1), progress=False, precision="fp32",
                      device="cpu")
    fit(cfg)
    assert seen and set(seen) == {torch.float32}
