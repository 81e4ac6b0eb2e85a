"""Speed of the two-stage pipeline on this machine's CPU: PyTorch eager vs onnxruntime, batch 1 and 8.

    python benchmarks/predict_speed.py [--threads 2] [--folder-images 1000]

Prints a Markdown table: ms per image for the model work (both stages, resize and post-processing
included, file I/O excluded), the models' GFLOPs per image, the compute floor (GFLOPs / the measured
fp32 matmul GFLOP/s of this machine, measured in the same run), and measured / floor. Then times
``predict_files`` over a folder of synthetic 256x256 PNGs end to end (decode, both stages, three PNGs and a
CSV row written per image).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from cxrseg.data.io import XRay
from cxrseg.data.synthetic import phantom
from cxrseg.inference.batch import predict_files
from cxrseg.inference.pipeline import TwoStagePipeline
from cxrseg.models.store import load_model, read_card, shipped_weights


def matmul_gflops(n: int = 1024, reps: int = 20) -> float:
    """Best fp32 matmul throughput of torch on this machine with the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def model_gflops(weights: Path, size: int) -> float:
    model, _ = load_model(weights)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 1, size, size))
    return counter.get_total_flops() / 1e9


def time_pipeline(pipe: TwoStagePipeline, xrays: list[XRay], batch: int, repeats: int) -> float:
    """Median ms per image of pipe.predict over ``repeats`` passes through ``xrays`` in batches."""
    pipe.batch_size = batch
    pipe.predict(xrays[:batch])  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(xrays), batch):
            pipe.predict(xrays[i : i + batch])
        times.append((time.perf_counter() - t) / len(xrays) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description="two-stage pipeline speed on CPU")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--images", type=int, default=32, help="images per timing pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folder-images", type=int, default=1000, help="0 to skip the folder run")
    ap.add_argument("--lung", type=Path, default=None)
    ap.add_argument("--infection", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lung = a.lung or shipped_weights("lung")
    infection = a.infection or shipped_weights("infection")
    size = int(read_card(lung).get("input_size", 256))
    rng = np.random.default_rng(0)
    xrays = [XRay(phantom(lbl, size, rng)[0].astype(np.float32) / 255, f"p{i}") for i, lbl in enumerate(["COVID-19", "Normal"] * (a.images // 2))]

    gflops = model_gflops(lung, size) + model_gflops(infection, size)
    peak = matmul_gflops()
    floor_ms = gflops / peak * 1000
    print(f"threads: {a.threads}; fp32 matmul: {peak:.1f} GFLOP/s; models: {gflops:.2f} GFLOPs per image (both stages)")
    print(f"compute floor: {floor_ms:.1f} ms per image\n")
    print("| backend | batch | ms / image | images / s | floor ms | measured / floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for backend in ("torch", "onnx"):
        pipe = TwoStagePipeline.from_pretrained(lung, infection, backend=backend, threads=a.threads)
        for batch in (1, 8):
            ms = time_pipeline(pipe, xrays, batch, a.repeats)
            print(f"| {backend} | {batch} | {ms:.1f} | {1000 / ms:.1f} | {floor_ms:.1f} | {ms / floor_ms:.2f}x |")

    if a.folder_images:
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "in", Path(tmp) / "out"
            src.mkdir()
            for i in range(a.folder_images):
                Image.fromarray(phantom(["COVID-19", "Non-COVID", "Normal"][i % 3], 256, rng)[0]).save(src / f"x{i:05d}.png")
            pipe = TwoStagePipeline.from_pretrained(lung, infection, backend="auto", threads=a.threads)
            t = time.perf_counter()
            report = predict_files(pipe, [src], out)
            dt = time.perf_counter() - t
        print(f"\nfolder of {a.folder_images} PNGs, backend {pipe.backend_name}, batch {pipe.batch_size}: "
              f"{dt:.1f} s total, {dt / a.folder_images * 1000:.1f} ms per image ({report.done} done, {len(report.failed)} failed)")


if __name__ == "__main__":
    main()
