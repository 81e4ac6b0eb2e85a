"""Speed of two-stage prediction on this machine's CPU: every backend and precision, the compute floor, and the
whole ``cxrseg predict`` process on a folder against a plain PyTorch-eager baseline, in one run.

    python benchmarks/predict_speed.py --data ../shared/data/COVID-QU-Ex [--threads 2] [--folder-images 400]
        [--lung-model W --infection-model W] [--int8] [--accurate] [--out docs/predict_speed.md]

1. **Model work** (``TwoStagePipeline.predict``: resize, both stages, post-processing; no file I/O), ms per image
   at batch 1 and 8, for PyTorch fp32 / fp32 channels-last / bf16 / bf16 channels-last and onnxruntime fp32
   (``--int8``: also onnxruntime INT8, static QDQ quantisation calibrated on Train images, with its Dice
   against fp32). Each row against the compute floor of its precision: the models' FLOPs per image over the
   fp32 (or bf16) matmul GFLOP/s this machine reaches in the same run.
2. **Whole process on a folder** of N Val PNGs (256 x 256), each command timed as a subprocess (start-up,
   imports, model load, decoding, both stages, every output file): ``cxrseg predict`` as it ships (``auto``),
   its fp32 reference paths, and ``benchmarks/baseline_predict.py`` (PIL decode, the same two models in plain
   PyTorch eager fp32 at batch 8, threshold, two mask PNGs a film). Rounds alternate the commands, so load from
   other processes falls on all alike; the ratio to the baseline is taken within each round.
3. **Start-up**: ``cxrseg predict`` on one image, and ``python -X importtime`` of what it imports.

Without ``--data`` the images are synthetic phantoms and there is no folder run. The load average (``uptime``)
is printed with the results: the figures are wall-clock times and mean little without it.
"""

from __future__ import annotations

import argparse
import copy
import os

# As in `cxrseg predict` (cxrseg.inference.batch): PyTorch's OpenMP threads sleep rather than spin while idle, set
# before torch is imported. The baseline runs as a plain script would, with the default; the table also shows it
# with this setting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from cxrseg.data.io import XRay, read_xray
from cxrseg.data.synthetic import phantom
from cxrseg.inference.backends import TorchBackend, bf16_supported, choose, onnxruntime_available
from cxrseg.inference.decision import FilmClassifier, resolve_classifier
from cxrseg.inference.pipeline import TwoStagePipeline, onnx_path_for
from cxrseg.models.store import card_path, load_model, read_card, shipped_weights
from int8_quant import int8_pipeline  # beside this script

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} CPUs"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 1024, reps: int = 20) -> float:
    """Best matmul throughput of torch on this machine with the current thread count, in ``dtype``."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def model_gflops(weights: Path) -> float:
    """FLOPs of one forward pass at the card's input size and channels, in GFLOPs."""
    model, card = load_model(weights)
    size = int(card.get("input_size", 256))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, model.config.in_channels, size, size))
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


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2 * int((a & b).sum()) / total


def agreement(ref: list, out: list) -> str:
    """Per-image mean Dice (lung, infection) of ``out`` against ``ref`` (lists of Segmentation)."""
    lung = np.mean([dice(r.lung, o.lung) for r, o in zip(ref, out)])
    inf = np.mean([dice(r.infection, o.infection) for r, o in zip(ref, out)])
    return f"{lung:.4f} / {inf:.4f}"


def val_images(data: Path, split: str, n: int) -> list[Path]:
    """``n`` images of ``split``, the three classes interleaved (COVID-19, Non-COVID, Normal, ...)."""
    base = data / "Infection Segmentation Data" / split
    if not base.is_dir():
        base = data / split
    groups = [sorted((base / c / "images").glob("*.png")) for c in ("COVID-19", "Non-COVID", "Normal")]
    interleaved = [f for group in zip(*groups) for f in group]
    if len(interleaved) < n:
        raise SystemExit(f"{base}: {len(interleaved)} interleaved images, fewer than {n}")
    return interleaved[:n]


# -- the classifier beside stage 2's head -------------------------------------------------------------------
def film_classifier(film: Path | None, precision: str) -> FilmClassifier | None:
    """The whole-film classifier beside stage 2's head as the pipeline runs it (PyTorch, bf16 where the stages are)."""
    return FilmClassifier(film, "cpu", "bf16" if precision == "bf16" else "fp32") if film else None


# -- whole process -------------------------------------------------------------------------------------------
def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the child and its children) of one command, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_ms(module: str) -> float:
    """Cumulative import time of ``module`` in a fresh interpreter (``python -X importtime``), ms."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True)
    for line in done.stderr.splitlines()[::-1]:
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1000
    return float("nan")


def heaviest_imports(module: str, top: int = 6) -> list[tuple[str, float]]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            name = parts[2]
            if name.count(".") == 0 and not name.startswith("_"):  # top-level packages only
                rows.append((name, int(parts[1]) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def folder_run(a, lung: Path, infection: Path, film: Path | None, emit) -> None:
    files = val_images(a.data, a.split, a.folder_images)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        # The weights and cards copied with an .onnx beside them, as shipped models are: weights without one would
        # charge an ONNX export to every onnx run.
        staged = []
        for stage, w in (("lung", lung), ("infection", infection)):
            target = Path(tmp) / "models" / f"{stage}.safetensors"
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(w, target)
            shutil.copyfile(card_path(w), target.with_suffix(".json"))
            if onnxruntime_available():
                shutil.copyfile(onnx_path_for(w), target.with_suffix(".onnx"))
            staged.append(target)
        # Staged copies are not "the shipped stage 2", so the classifier is named explicitly (or turned off).
        models = ["--lung-model", str(staged[0]), "--infection-model", str(staged[1])]
        models_cx = [*models, "--classifier", str(film or "none")]
        src = Path(tmp) / "in"
        src.mkdir()
        for f in files:
            (src / f.name).symlink_to(f.resolve())
        one = Path(tmp) / "one"
        one.mkdir()
        (one / files[0].name).symlink_to(files[0].resolve())
        cxrseg = str(BIN / "cxrseg")
        commands = {
            "baseline (plain PyTorch eager fp32, batch 8)": [sys.executable, str(ROOT / "benchmarks" / "baseline_predict.py"), str(src),
                                                             "--out", f"{tmp}/o-base", *models],
            "cxrseg predict (auto)": [cxrseg, "predict", str(src), "--out", f"{tmp}/o-auto", "-q", *models_cx],
            "cxrseg predict --backend torch --precision fp32": [cxrseg, "predict", str(src), "--out", f"{tmp}/o-t32", "-q",
                                                                 "--backend", "torch", "--precision", "fp32", *models_cx],
        }
        if onnxruntime_available():
            commands["cxrseg predict --backend onnx (fp32)"] = [cxrseg, "predict", str(src), "--out", f"{tmp}/o-onnx", "-q",
                                                               "--backend", "onnx", *models_cx]
        if a.accurate:
            commands["cxrseg predict --accurate (shipped models)"] = [cxrseg, "predict", str(src), "--out", f"{tmp}/o-acc",
                                                                     "-q", "--accurate"]
        if a.baseline_overlay:
            commands["baseline + plain overlay PNG"] = [*commands["baseline (plain PyTorch eager fp32, batch 8)"], "--overlay"]
        passive = {**env, "OMP_WAIT_POLICY": "PASSIVE"}
        plain = {k: v for k, v in env.items() if k != "OMP_WAIT_POLICY"}  # the OpenMP default: spin, then sleep
        envs = {name: plain for name in commands}
        commands["baseline with OMP_WAIT_POLICY=PASSIVE"] = commands["baseline (plain PyTorch eager fp32, batch 8)"]
        envs["baseline with OMP_WAIT_POLICY=PASSIVE"] = passive
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        baseline_key = next(iter(commands))
        ratios = []
        for r in range(a.folder_repeats):
            emit(f"round {r + 1}: {load_average()}")
            for name, cmd in commands.items():
                results[name].append(timed(cmd, envs[name]))
            ratios.append(results["cxrseg predict (auto)"][-1][0] / results[baseline_key][-1][0])
        start_1 = timed([cxrseg, "predict", str(one), "--out", f"{tmp}/o-one", "-q", *models_cx], plain)
        auto = TwoStagePipeline.from_pretrained(lung, infection)

    n = a.folder_images
    emit("")
    emit(f"### Whole process: a folder of {n} Val PNGs (256 x 256), {a.threads} threads, {a.folder_repeats} round(s)")
    emit("")
    emit(f"`cxrseg predict` default here: backend {auto.backend_name}. Every command starts with OMP_NUM_THREADS={a.threads} "
         "and OpenMP's default wait policy (spin, then sleep); `cxrseg predict` makes its threads sleep at once "
         "(OMP_WAIT_POLICY=PASSIVE, set before torch loads). Each cell: wall seconds (CPU seconds of the process and "
         "its children); ms / image = median wall / N, start-up included.")
    emit("")
    emit("| command | " + " | ".join(f"round {r + 1}" for r in range(a.folder_repeats)) + " | ms / image | vs baseline |")
    emit("|---|" + "---:|" * a.folder_repeats + "---:|---:|")
    base = statistics.median(w for w, _ in results[baseline_key])
    for name, runs in results.items():
        med = statistics.median(w for w, _ in runs)
        cells = " | ".join(f"{w:.1f} s ({c:.1f})" for w, c in runs)
        emit(f"| {name} | {cells} | {med / n * 1000:.1f} | {med / base:.2f}x |")
    emit("")
    emit(f"`cxrseg predict` (auto) / baseline within each round: {', '.join(f'{r:.2f}x' for r in ratios)}.")
    emit(f"Start-up: `cxrseg predict` on one image took {start_1[0]:.1f} s wall ({start_1[1]:.1f} s CPU): imports, "
         f"models, one image, its files.")


def main() -> None:
    ap = argparse.ArgumentParser(description="two-stage prediction speed on CPU")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--data", type=Path, default=None, help="COVID-QU-Ex folder: real Val images, Train for INT8 calibration")
    ap.add_argument("--split", default="Val")
    ap.add_argument("--images", type=int, default=32, help="images per timing pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folder-images", type=int, default=400, help="0 to skip the whole-process folder run")
    ap.add_argument("--folder-repeats", type=int, default=2)
    ap.add_argument("--baseline-overlay", action="store_true", help="also time the baseline writing a plain overlay")
    ap.add_argument("--int8", action="store_true", help="also onnxruntime INT8 (static, calibrated on Train images)")
    ap.add_argument("--channels-last", action="store_true", help="also the channels-last rows")
    ap.add_argument("--accurate", action="store_true", help="also the accurate mode (shipped models), model work and folder")
    ap.add_argument("--lung-model", "--lung", dest="lung", type=Path, default=None)
    ap.add_argument("--infection-model", "--infection", dest="infection", type=Path, default=None)
    ap.add_argument("--classifier", default="auto",
                    help="whole-film classifier beside the head: auto (shipped, with the shipped stage 2), none, or weights")
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    lung = a.lung or shipped_weights("lung")
    infection = a.infection or shipped_weights("infection")
    cards = read_card(lung), read_card(infection)
    film = resolve_classifier(a.classifier, a.infection)  # every row decides as cxrseg predict does (the baseline: head)
    if a.data:
        xrays = [read_xray(f) for f in val_images(a.data, a.split, a.images)]
        what = f"{a.images} {a.split} images (COVID-QU-Ex, 256 x 256, the three classes interleaved)"
    else:
        rng = np.random.default_rng(0)
        labels = ["COVID-19", "Non-COVID", "Normal"]
        xrays = [XRay(phantom(labels[i % 3], 256, rng)[0].astype(np.float32) / 255, f"p{i}") for i in range(a.images)]
        what = f"{a.images} synthetic phantoms (256 x 256)"

    gflops = model_gflops(lung) + model_gflops(infection)
    peak32 = matmul_gflops(torch.float32)
    peak16 = matmul_gflops(torch.bfloat16) if bf16_supported("cpu") else float("nan")
    floor = {"fp32": gflops / peak32 * 1000, "bf16": gflops / peak16 * 1000, "int8": float("nan")}
    default = choose("auto", "auto", "cpu")
    emit(f"# Prediction speed, {a.threads} threads ({time.strftime('%Y-%m-%d %H:%M')})")
    emit("")
    emit("`python benchmarks/predict_speed.py " + " ".join(sys.argv[1:]) + "`")
    emit("")
    emit(f"- machine: {cpu_name()}, {os.cpu_count()} CPUs, native bf16: {bf16_supported('cpu')}; "
         f"torch {torch.__version__}" + (f", onnxruntime {__import__('onnxruntime').__version__}" if onnxruntime_available() else ""))
    emit(f"- {load_average()} at the start (other processes share the CPUs: wall times carry their load)")
    for stage, w, card in (("stage 1", lung, cards[0]), ("stage 2", infection, cards[1])):
        arch = card.get("architecture", {})
        emit(f"- {stage}: `{w}` ({card.get('name')}, U-Net {','.join(map(str, arch.get('channels', [])))} at "
             f"{card.get('input_size')} px, {arch.get('in_channels', 1)} input channel(s), input {arch.get('input_norm', 'none')}"
             + (f", lungs' box + {arch['roi_margin']:.0%}" if arch.get("roi_margin") is not None else "") + ")")
    emit(f"- both models: {gflops:.2f} GFLOPs per image; matmul here: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s; "
         f"compute floor {floor['fp32']:.1f} ms per image in fp32, {floor['bf16']:.1f} ms in bf16")
    emit(f"- `--backend auto --precision auto` resolves here to: {default[0]} {default[1]}")
    emit(f"- image-level decision in every cxrseg row: " + (f"stage 2's head + the whole-film classifier `{film}` "
         "(PyTorch, bf16 beside bf16 stages, else fp32; not in the GFLOPs and floor above, which count the two "
         "U-Nets); the plain baseline has no classifier" if film else "stage 2's head alone"))
    emit("")
    emit(f"### Model work (`TwoStagePipeline.predict` on {what}; no file I/O)")
    emit("")
    emit("| backend | precision | batch | ms / image | images / s | floor ms | measured / floor | Dice vs fp32 (lung / infection) |")
    emit("|---|---|---:|---:|---:|---:|---:|---|")
    ref_pipe = TwoStagePipeline.from_pretrained(lung, infection, backend="torch", precision="fp32",
                                                classifier=film or "none")
    ref_pipe.batch_size = 8
    reference = ref_pipe.predict(xrays)

    def model_work_rows(pipe: TwoStagePipeline, label: str, floor_ms: float | None = None) -> None:
        """Two table rows, batch 1 and 8 (the second with its masks' agreement with the fp32 reference)."""
        for batch in (1, 8):
            ms = time_pipeline(pipe, xrays, batch, a.repeats)
            pipe.batch_size = 8
            agree = agreement(reference, pipe.predict(xrays)) if batch == 8 else ""
            against = f"{floor_ms:.1f} | {ms / floor_ms:.2f}x" if floor_ms else " | "
            emit(f"| {label} | {batch} | {ms:.1f} | {1000 / ms:.1f} | {against} | {agree} |")

    variants: list[tuple[str, str, bool]] = [("torch", "fp32", False), ("torch", "bf16", False)]
    if a.channels_last:
        variants[1:1] = [("torch", "fp32", True)]
        variants.append(("torch", "bf16", True))
    if onnxruntime_available():
        variants.append(("onnx", "fp32", False))
    for backend, precision, cl in variants:
        if backend == "torch":
            stages = [TorchBackend(copy.deepcopy(load_model(w)[0]), "cpu", precision=precision, channels_last=cl)
                      for w in (lung, infection)]
            pipe = TwoStagePipeline(*stages, *cards, classifier=film_classifier(film, precision))
        else:
            pipe = TwoStagePipeline.from_pretrained(lung, infection, backend="onnx", threads=a.threads,
                                                    classifier=film or "none")
        label = f"{backend}{' channels-last' if cl else ''}"
        model_work_rows(pipe, f"{label} | {precision}", floor[precision])
    if a.int8:
        if not (a.data and onnxruntime_available()):
            emit("| onnx | int8 | | needs --data and onnxruntime | | | | |")
        else:
            calibration = [read_xray(f) for f in val_images(a.data, "Train", 32)]
            with tempfile.TemporaryDirectory() as tmp:
                pipe = int8_pipeline(lung, infection, film_classifier(film, "fp32"), calibration, a.threads, Path(tmp))
                model_work_rows(pipe, "onnx | int8 (static, 32 Train images)")

    if a.accurate:  # the slower mode (shipped models: its second stage-1 model and decision come with them)
        pipe = TwoStagePipeline.from_pretrained(backend="auto", accurate=True)
        model_work_rows(pipe, f"--accurate: {pipe.backend_name}, flip TTA, 2 stage-1 models | {pipe.lung_backend.precision}")

    if a.data and a.folder_images:
        folder_run(a, lung, infection, film, emit)

    emit("")
    emit("### Start-up imports (`python -X importtime`, cumulative)")
    emit("")
    emit(f"`import cxrseg.inference.batch` (what `cxrseg predict` loads): {import_ms('cxrseg.inference.batch'):.0f} ms; "
         "heaviest packages: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in heaviest_imports("cxrseg.inference.batch")))
    emit("")
    emit(f"Finished: {load_average()}.")
    if a.out:
        a.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
