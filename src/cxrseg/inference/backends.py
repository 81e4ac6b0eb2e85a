"""Run a model on a batch of (B, C, S, S) float32 inputs: PyTorch or onnxruntime behind one interface.

Precision is a property of the backend, never of the pipeline: :class:`TorchBackend` runs fp32 or bf16
(``torch.autocast`` under ``inference_mode``, outputs handed back as float32), :class:`OnnxBackend` runs fp32.
:func:`choose` resolves ``backend='auto'`` / ``precision='auto'`` to the fastest path that keeps the masks:
on a CPU with native bf16 (AVX-512 BF16 / AMX; ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) or a GPU
with bf16 that is PyTorch bf16, elsewhere onnxruntime fp32 on CPU (PyTorch fp32 on a GPU without bf16).
Measured on 2 cores of an AVX-512 BF16 CPU with the two-stage models: bf16 halves PyTorch's fp32 CPU time and
beats onnxruntime fp32, with the Val figures within 0.0012 of fp32. onnxruntime INT8 (static, QDQ,
per-channel, calibrated on Train images) was faster still but moved the masks (infection Dice against fp32
0.96), so it is not offered (``docs/predict_speed.md``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from cxrseg.errors import CxrsegError
from cxrseg.models.factory import SegNet, split_outputs

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16")


class Backend(Protocol):
    name: str  # 'torch', 'torch-bf16', 'onnx': what run.json, metrics and the server report
    precision: str  # 'fp32' or 'bf16'

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Segmentation logits (B, 1, S, S) and image logits (B,) or None."""
        ...


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise CxrsegError(f"unknown device {device!r}") from e


def _cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX-BF16 in the CPU flags (Linux); elsewhere trust oneDNN's answer."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """Does ``device`` run bf16 natively (CPU: oneDNN bf16 kernels, AVX-512 BF16 or AMX; GPU: bf16 support)?"""
    device = resolve_device(device) if isinstance(device, str) else device
    try:
        if device.type == "cuda":
            return bool(torch.cuda.is_bf16_supported())
        if device.type == "cpu":
            # oneDNN also says yes on AVX-512 CPUs without bf16 instructions, where bf16 is emulated and slower.
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and _cpu_has_native_bf16()
    except (AttributeError, RuntimeError):
        pass
    return False


def choose(backend: str = "auto", precision: str = "auto", device: str = "auto") -> tuple[str, str]:
    """(backend, precision) to run: 'auto' resolved, the combination checked (raises :class:`CxrsegError`).

    ``backend='auto'``: PyTorch bf16 where the device has native bf16 (unless ``precision='fp32'``), else
    onnxruntime fp32 on CPU when it is installed, else PyTorch fp32. A backend named explicitly runs fp32
    unless ``precision='bf16'`` asks otherwise: ``--backend torch`` alone is the fp32 reference path.
    bf16 is PyTorch's (onnxruntime has no bf16 kernels for these models on CPU).
    """
    if backend not in BACKENDS:
        raise CxrsegError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise CxrsegError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if backend == "onnx":
        if precision == "bf16":
            raise CxrsegError("--precision bf16 runs on the torch backend; onnx runs fp32")
        return "onnx", "fp32"
    dev = resolve_device(device)
    if backend == "torch":
        return "torch", "bf16" if precision == "bf16" else "fp32"
    if precision == "bf16" or (precision == "auto" and bf16_supported(dev)):
        return "torch", "bf16"
    return ("onnx" if dev.type == "cpu" and onnxruntime_available() else "torch"), "fp32"


def _fp32_forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module`` on fp32 input in fp32; under autocast its result goes on in autocast's dtype, as it would have."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return type(module).forward(module, x)
    dtype = torch.get_autocast_dtype(device)
    with torch.autocast(device, enabled=False):
        return type(module).forward(module, x.float()).to(dtype)


def keep_input_convs_fp32(model: torch.nn.Module) -> int:
    """Make the convolutions that read the model's input (``in_channels`` equal to the model's, at most two, and
    more channels out) run in fp32 under autocast; returns how many. The U-Net's last 1 -> 1 convolution is
    left in bf16: oneDNN's fp32 kernel for it was ten times slower than bf16's. Patches ``forward`` on those
    instances only, so the weights and ``state_dict`` stay as they are."""
    config = getattr(model, "config", None)
    n_in = getattr(config, "in_channels", None)
    if n_in is None or n_in > 2:
        return 0
    patched = 0
    for m in model.modules():
        if type(m) is torch.nn.Conv2d and m.in_channels == n_in and m.out_channels > n_in:
            m.forward = functools.partial(_fp32_forward, m)
            patched += 1
    return patched


class TorchBackend:
    """Eager PyTorch under ``inference_mode``, in fp32 or bf16.

    ``precision='bf16'``: ``torch.autocast(device_type, dtype=torch.bfloat16)`` (convolutions in bf16 with
    fp32 accumulation, the weights cast once per call), outputs returned as float32 like fp32's.
    ``fp32_input_layer`` (bf16 only, on by default): the convolutions that read the X-ray itself stay fp32.
    bf16 keeps 8 significant bits, the grey levels' own resolution, so rounding the image moved stage-1 lung
    borders by a pixel here and there; each such pixel on the lungs' box moves stage 2's crop, which moved
    small lesions (infection Dice against fp32 down to 0.94 on a Val film). In fp32 these few-channel
    convolutions cost a few percent.
    ``channels_last``: the model and its input in NHWC memory format (measured slower here for these U-Nets,
    whose instance norms and transposed convolutions prefer NCHW; kept as an option for other CPUs and GPUs).
    The backend owns ``model``: it is moved to the device and (bf16) its input convolutions patched.
    """

    def __init__(
        self,
        model: SegNet,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        channels_last: bool = False,
        fp32_input_layer: bool = True,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise CxrsegError(f"unknown precision {precision!r} for the torch backend; use fp32 or bf16")
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.precision, self.channels_last = precision, channels_last
        self.name = "torch" if precision == "fp32" else f"torch-{precision}"
        self.model = model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if precision == "bf16" and fp32_input_layer:
            keep_input_convs_fp32(self.model)

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            seg, cls = split_outputs(self.model(t))
        seg = seg.float().contiguous().cpu().numpy()  # NCHW again whatever the memory format inside
        return seg, None if cls is None else cls.float().cpu().numpy()


class OnnxBackend:
    """onnxruntime on CPU, fp32, with the session's threads set to the machine's cores.

    Its threads sleep rather than spin when idle: the two stages are two sessions taking turns, and a spinning
    pool of one kept the cores from the other (batch 1 on 2 cores: 70 -> 33 ms per image for both stages).
    """

    name = "onnx"
    precision = "fp32"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise CxrsegError("the onnx backend needs onnxruntime: pip install onnxruntime") from e
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise CxrsegError(f"{path}: unreadable ONNX model ({type(e).__name__}: {e})") from e
        self.input_name = self.session.get_inputs()[0].name
        self.n_outputs = len(self.session.get_outputs())

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})
        return out[0], (out[1] if self.n_outputs > 1 else None)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def run_batched(backend: Backend, x: np.ndarray, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply ``backend`` to (N, 1, S, S) in batches; returns sigmoid probabilities, not logits."""
    segs, clss = [], []
    for i in range(0, len(x), batch_size):
        seg, cls = backend(x[i : i + batch_size])
        segs.append(seg)
        if cls is not None:
            clss.append(cls)
    seg = _sigmoid(np.concatenate(segs)) if segs else np.zeros((0, *x.shape[1:]), np.float32)
    return seg, (_sigmoid(np.concatenate(clss)) if clss else None)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(a, -60, 60)))).astype(np.float32)
