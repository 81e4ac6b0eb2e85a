"""Training-step and inference speed of a U-Net on the CPU: fp32 against bf16 autocast, channels-last or not.

    python benchmarks/train_speed.py                        # the shipped 16-256 U-Net at 256, batch 8, 2 threads
    python benchmarks/train_speed.py --channels 24,48,96,192,384 --size 192 --in-channels 2 --classifier \\
        --loss bce_dice_per_image                           # e.g. a wider stage 2 on a cropped, two-channel ROI

A training step is what ``cxrseg.training.loop.fit`` does per batch: forward (under
``torch.autocast("cpu", dtype=torch.bfloat16)`` for bf16), the loss on fp32 logits (segmentation loss from
``build_loss``, plus image-level BCE when the model has a classifier head), backward, and an AdamW step on
fp32 parameters. Inference is a forward pass under ``torch.inference_mode()`` (and the same autocast). The four
variants are timed in turns (one step of each per round) so that a background load hits them alike; the table
gives the median over the rounds, per image: wall-clock milliseconds, and the process's CPU milliseconds (all its
threads; on a quiet machine about threads x wall, and less inflated than wall time when other processes compete
for the cores). The CPU's bf16-relevant flags come from /proc/cpuinfo.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import torch

from cxrseg.models.factory import ModelConfig, build_model, split_outputs
from cxrseg.training.losses import build_loss

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_info() -> tuple[str, dict[str, bool]]:
    """(model name, {flag: present}) from /proc/cpuinfo (empty on systems without it)."""
    name, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return name, {f: f in flags for f in FLAGS}


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def cpu_pressure() -> str:
    """The share of the last 60 s in which some runnable task waited for a CPU (Linux PSI), or '?'."""
    try:
        with open("/proc/pressure/cpu") as f:
            some = dict(kv.split("=") for kv in f.readline().split()[1:])
        return f"{float(some['avg60']):.0f}% of the last 60 s had a task waiting for a CPU"
    except (OSError, KeyError, ValueError):
        return "?"


@dataclass
class Variant:
    precision: str  # "fp32" or "bf16"
    channels_last: bool
    model: torch.nn.Module = field(repr=False, default=None)
    optimizer: torch.optim.Optimizer = field(repr=False, default=None)
    train_s: list[float] = field(default_factory=list)  # wall seconds per step
    infer_s: list[float] = field(default_factory=list)
    train_cpu: list[float] = field(default_factory=list)  # process CPU seconds per step (all threads)
    infer_cpu: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.precision}, {'channels-last' if self.channels_last else 'contiguous (NCHW)'}"

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")


def make_batch(batch: int, in_channels: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Images in [0, 1], masks with a disc in every other image, and the image-level labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, in_channels, size, size, generator=g)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 3) ** 2) < (size / 6) ** 2).float()
    y = torch.stack([disc if i % 2 == 0 else torch.zeros_like(disc) for i in range(batch)])[:, None]
    return x, y, (torch.arange(batch) % 2 == 0).float()


def build_variants(config: ModelConfig, lr: float) -> list[Variant]:
    variants = []
    for precision in ("fp32", "bf16"):
        for channels_last in (False, True):
            torch.manual_seed(0)
            model = build_model(config)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.AdamW(model.parameters(), lr=lr)
            variants.append(Variant(precision, channels_last, model, opt))
    return variants


def train_step(v: Variant, x, y, has, seg_loss, cls_loss) -> tuple[float, float]:
    """One step as in fit(); returns its (wall, process CPU) seconds."""
    if v.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t0, c0 = time.perf_counter(), time.process_time()
    with v.autocast():
        seg, cls = split_outputs(v.model(x))
    loss = seg_loss(seg.float(), y)  # the loss, like the optimizer state, in fp32
    if cls is not None:
        loss = loss + cls_loss(cls.float(), has)
    v.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    v.optimizer.step()
    return time.perf_counter() - t0, time.process_time() - c0


def infer_step(v: Variant, x) -> tuple[float, float]:
    if v.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode(), v.autocast():
        split_outputs(v.model(x))
    return time.perf_counter() - t0, time.process_time() - c0


def check_fp32_state(v: Variant) -> None:
    """bf16 autocast must leave the parameters and AdamW's moments in fp32."""
    bad = [n for n, p in v.model.named_parameters() if p.dtype != torch.float32]
    bad += [k for s in v.optimizer.state.values() for k, t in s.items() if torch.is_tensor(t) and t.is_floating_point()
            and t.dtype != torch.float32]
    if bad:
        raise AssertionError(f"{v.name}: not fp32: {bad[:5]}")


def run(args) -> list[Variant]:
    torch.set_num_threads(args.threads)
    config = ModelConfig(channels=args.channels, num_res_units=args.res_units, classifier=args.classifier,
                         in_channels=args.in_channels)
    variants = build_variants(config, args.lr)
    x, y, has = make_batch(args.batch, args.in_channels, args.size)
    seg_loss, cls_loss = build_loss(args.loss), torch.nn.BCEWithLogitsLoss()
    for v in variants:
        v.model.train()
        for _ in range(args.warmup):
            train_step(v, x, y, has, seg_loss, cls_loss)
    for _ in range(args.steps):  # in turns, so that a background load falls on every variant alike
        for v in variants:
            wall, cpu = train_step(v, x, y, has, seg_loss, cls_loss)
            v.train_s.append(wall)
            v.train_cpu.append(cpu)
    for v in variants:
        check_fp32_state(v)
        v.model.eval()
        for _ in range(args.warmup):
            infer_step(v, x)
    for _ in range(args.steps):
        for v in variants:
            wall, cpu = infer_step(v, x)
            v.infer_s.append(wall)
            v.infer_cpu.append(cpu)
    return variants


def table(variants: list[Variant], batch: int) -> str:
    def ms(v: Variant, attr: str) -> float:
        return 1000 * statistics.median(getattr(v, attr)) / batch

    base = variants[0]
    lines = [
        "| precision, memory format | train step, ms/image | CPU ms/image | vs fp32 NCHW (wall / CPU) "
        "| inference, ms/image | CPU ms/image | vs fp32 NCHW (wall / CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in variants:
        cells = []
        for wall, cpu in (("train_s", "train_cpu"), ("infer_s", "infer_cpu")):
            w, c = ms(v, wall), ms(v, cpu)
            cells.append(f"{w:.1f} | {c:.1f} | {ms(base, wall) / w:.2f}x / {ms(base, cpu) / c:.2f}x")
        lines.append(f"| {v.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fastest_table(variants: list[Variant], batch: int) -> str:
    """The fastest timed step of each variant (wall): the one least disturbed by other processes."""
    def ms(v: Variant, attr: str) -> float:
        return 1000 * min(getattr(v, attr)) / batch

    base = variants[0]
    lines = ["| precision, memory format | train step, ms/image (fastest) | vs fp32 NCHW "
             "| inference, ms/image (fastest) | vs fp32 NCHW |", "|---|---:|---:|---:|---:|"]
    for v in variants:
        t, i = ms(v, "train_s"), ms(v, "infer_s")
        t0, i0 = ms(base, "train_s"), ms(base, "infer_s")
        lines.append(f"| {v.name} | {t:.1f} | {t0 / t:.2f}x | {i:.1f} | {i0 / i:.2f}x |")
    return "\n".join(lines)


def _channels(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.replace("-", ",").split(",") if c)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=_channels, default=(16, 32, 64, 128, 256), help="e.g. 16,32,64,128,256")
    ap.add_argument("--res-units", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--classifier", action="store_true", help="with the image-level head (stage 2)")
    ap.add_argument("--loss", default="bce_dice", help="segmentation loss, as cxrseg train --loss")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant (the median is reported)")
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args(argv)

    name, flags = cpu_info()
    params = sum(p.numel() for p in build_model(ModelConfig(channels=args.channels, num_res_units=args.res_units,
                                                            classifier=args.classifier,
                                                            in_channels=args.in_channels)).parameters())
    print(f"CPU: {name}; {os.cpu_count()} logical CPUs; torch {torch.__version__}, {args.threads} threads")
    print("CPU flags: " + ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in flags.items()))
    try:
        probe = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        probe = False
    print(f"torch.ops.mkldnn._is_mkldnn_bf16_supported(): {probe} (what --precision auto follows; it is true on any "
          "CPU with AVX-512 BW/VL/DQ, so it does not by itself mean native bf16: avx512_bf16 or amx_bf16 does)")
    print(f"model: U-Net channels {'-'.join(map(str, args.channels))}, {args.res_units} residual units, "
          f"{args.in_channels} input channel(s), {'with' if args.classifier else 'no'} image-level head, "
          f"{params / 1e6:.2f} M parameters; input {args.size}x{args.size}, batch {args.batch}, loss {args.loss}")
    print(f"{args.warmup} warm-up steps, then the median of {args.steps} timed steps per variant; "
          f"load average before: {load_average()}; CPU pressure: {cpu_pressure()}")
    variants = run(args)
    print(f"load average after: {load_average()}; CPU pressure: {cpu_pressure()}\n")
    print(f"Median of {args.steps} steps:\n")
    print(table(variants, args.batch))
    print(f"\nFastest of {args.steps} steps (wall):\n")
    print(fastest_table(variants, args.batch))
    print("\nParameters and AdamW state stayed fp32 in every variant (checked after the timed steps).")


if __name__ == "__main__":
    main()
