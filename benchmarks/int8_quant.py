"""onnxruntime INT8 for the two stages (static, calibrated): a row of benchmarks/predict_speed.py, kept apart.

The stages are quantised (QDQ, per-channel int8 weights, uint8 activations) on the inputs each one gets from a few
Train films, run through the fp32 pipeline once to record them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrseg.data.io import XRay
from cxrseg.inference.backends import OnnxBackend
from cxrseg.inference.decision import FilmClassifier
from cxrseg.inference.pipeline import TwoStagePipeline, onnx_path_for
from cxrseg.models.store import read_card


class _Recorder:
    """A backend that passes through to ``inner`` and keeps its inputs (calibration data for a stage)."""

    def __init__(self, inner) -> None:
        self.inner, self.inputs, self.name, self.precision = inner, [], inner.name, inner.precision

    def __call__(self, x):
        self.inputs.append(np.array(x, np.float32))
        return self.inner(x)


def int8_pipeline(lung: Path, infection: Path, classifier: FilmClassifier | None, calibration: list[XRay],
                  threads: int, tmp: Path) -> TwoStagePipeline:
    """Both stages quantised by onnxruntime (QDQ, per-channel int8 weights, uint8 activations), calibrated on the
    inputs each stage gets from ``calibration`` images; ``classifier`` (if any) beside them as given."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ref = TwoStagePipeline.from_pretrained(lung, infection, backend="torch", precision="fp32", classifier="none")
    ref.lung_backend, ref.infection_backend = _Recorder(ref.lung_backend), _Recorder(ref.infection_backend)
    ref.predict(calibration)

    class Reader(CalibrationDataReader):
        def __init__(self, batches):
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"image": x}

    stages = []
    for weights, recorder in ((lung, ref.lung_backend), (infection, ref.infection_backend)):
        pre, q = tmp / f"{weights.parent.name}-{weights.stem}.pre.onnx", tmp / f"{weights.parent.name}-{weights.stem}.int8.onnx"
        quant_pre_process(str(onnx_path_for(weights)), str(pre))
        quantize_static(str(pre), str(q), Reader(recorder.inputs), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        backend = OnnxBackend(q, threads=threads)
        backend.name, backend.precision = "onnx-int8", "int8"
        stages.append(backend)
    return TwoStagePipeline(*stages, read_card(lung), read_card(infection), classifier=classifier)
