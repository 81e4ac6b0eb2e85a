"""ONNX export: the graph onnxruntime gets computes what the PyTorch model computes."""

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from cxrseg.export import export_onnx, prelu_as_leaky_relu
from cxrseg.models.factory import ModelConfig, build_model
from cxrseg.models.store import default_card, save_model


def _model(classifier: bool) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(channels=(4, 8, 16), classifier=classifier)).eval()
    for m in model.modules():  # slopes other than MONAI's initial 0.25, so a lost slope would show
        if isinstance(m, nn.PReLU):
            m.weight.data.uniform_(0.05, 0.6)
    return model


def test_prelu_swap_keeps_the_function():
    model = _model(classifier=True)
    n_prelu = sum(isinstance(m, nn.PReLU) for m in model.modules())
    x = torch.randn(2, 1, 32, 32)
    with torch.inference_mode():
        before = model(x)
    assert prelu_as_leaky_relu(model) == n_prelu > 0
    assert not any(isinstance(m, nn.PReLU) for m in model.modules())
    with torch.inference_mode():
        after = model(x)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b)


def test_exported_graph_has_no_prelu_and_matches_torch(tmp_path):
    model = _model(classifier=True)
    weights = tmp_path / "m.safetensors"
    save_model(weights, model, default_card("infection", model.config, 32))
    path = export_onnx(weights, tmp_path / "m.onnx")
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert "PRelu" not in ops and "LeakyRelu" in ops
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    seg, logit = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    with torch.inference_mode():
        ref_seg, ref_logit = model(torch.from_numpy(x))
    np.testing.assert_allclose(seg, ref_seg.numpy(), atol=1e-4)
    np.testing.assert_allclose(logit, ref_logit.numpy(), atol=1e-4)


def test_missing_onnx_is_exported_once_into_the_cache(tmp_path, monkeypatch):
    from cxrseg.inference.pipeline import onnx_path_for
    from cxrseg.models.store import weights_digest

    model = _model(classifier=False)
    weights = tmp_path / "w" / "lung.safetensors"
    weights.parent.mkdir()
    save_model(weights, model, default_card("lung", model.config, 32))
    monkeypatch.setenv("CXRSEG_CACHE", str(tmp_path / "cache"))
    first = onnx_path_for(weights)
    assert first == tmp_path / "cache" / "onnx" / f"lung-{weights_digest(weights)}.onnx" and first.is_file()
    stamp = first.stat().st_mtime_ns
    assert onnx_path_for(weights) == first and first.stat().st_mtime_ns == stamp  # reused, not exported again
    beside = weights.with_suffix(".onnx")
    beside.write_bytes(first.read_bytes())
    assert onnx_path_for(weights) == beside  # a file beside the weights wins
