"""Memory of bulk prediction: does the process grow with the number of images? (It should not.)

    python benchmarks/predict_memory.py [--n 3000] [--every 250] [--workers 2] [--lung L --infection I]

Writes N synthetic 256x256 X-ray PNGs (``cxrseg.data.synthetic.phantom``) into a temporary folder, runs
``predict_files`` over them with the given models (default: the shipped ones) and samples the resident set
size (RSS) of this process, and of its decoding workers, every ``--every`` images. Prints a Markdown table
(images done, RSS MB, workers' RSS MB) and the least-squares slope of RSS against images over the second
half of the run, in MB per 1000 images: about 0 means nothing accumulates per image.

RSS comes from psutil when it is installed, else from /proc (Linux); no dependency is added for this.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cxrseg.data.synthetic import phantom
from cxrseg.inference.batch import default_workers, predict_files
from cxrseg.inference.pipeline import TwoStagePipeline

try:
    import psutil
except ImportError:  # fall back to /proc
    psutil = None


def _proc_rss_mb(pid: int | str) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return 0.0


def _child_pids() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").glob("*/children"):
        try:
            pids += [int(p) for p in task.read_text().split()]
        except OSError:
            pass
    return pids


def rss_mb() -> tuple[float, float]:
    """(RSS of this process, summed RSS of its child processes), in MB."""
    if psutil is not None:
        me = psutil.Process()
        kids = 0.0
        for c in me.children(recursive=True):
            try:
                kids += c.memory_info().rss
            except psutil.Error:
                pass
        return me.memory_info().rss / 2**20, kids / 2**20
    return _proc_rss_mb("self"), sum(_proc_rss_mb(p) for p in _child_pids())


class Sampler:
    """A progress object for ``predict_files``: records (images done, RSS, workers' RSS) every ``every`` images."""

    def __init__(self, total: int, every: int) -> None:
        self.total, self.every, self.done = total, every, 0
        self.rows: list[tuple[int, float, float]] = [(0, *rss_mb())]
        self.next_at = every

    def update(self, n: int) -> None:
        self.done += n
        if self.done >= self.next_at or self.done == self.total:
            self.rows.append((self.done, *rss_mb()))
            while self.next_at <= self.done:
                self.next_at += self.every

    def close(self) -> None:
        pass


def make_images(folder: Path, n: int, size: int = 256, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    labels = ("COVID-19", "Non-COVID", "Normal")
    for i in range(n):
        img, _, _ = phantom(labels[i % 3], size, rng)
        Image.fromarray(img).save(folder / f"cxr_{i:05d}.png", compress_level=1)


def slope_per_1000(rows: list[tuple[int, float, float]], column: int = 1) -> float:
    """Least-squares slope of RSS (MB) against images over the second half of the run, per 1000 images."""
    half = rows[-1][0] / 2
    pts = [(r[0], r[column]) for r in rows if r[0] >= half and r[column] > 0]  # 0: no workers (yet, or any more)
    if len(pts) < 2:
        return float("nan")
    x, y = np.array(pts, float).T
    return float(np.polyfit(x, y, 1)[0] * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="images to generate and segment")
    ap.add_argument("--every", type=int, default=0, help="sample RSS every this many images (default n/12)")
    ap.add_argument("--workers", type=int, default=default_workers(), help="decoding processes (0: in-process)")
    ap.add_argument("--lung", type=Path, default=None, help="stage-1 weights (default: shipped)")
    ap.add_argument("--infection", type=Path, default=None, help="stage-2 weights (default: shipped)")
    ap.add_argument("--backend", default="auto", help="torch, onnx or auto")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp folder)")
    args = ap.parse_args()
    every = args.every or max(1, args.n // 12)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    pipe = TwoStagePipeline.from_pretrained(
        args.lung, args.infection, backend=args.backend, tta=args.tta, batch_size=args.batch_size, threads=args.threads
    )
    work = args.keep or Path(tempfile.mkdtemp(prefix="cxrseg-mem-"))
    images, out = work / "images", work / "out"
    images.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        make_images(images, args.n)
        made = time.perf_counter() - t
        sampler: Sampler | None = None

        def progress(total: int) -> Sampler:
            nonlocal sampler
            sampler = Sampler(total, every)
            return sampler

        t = time.perf_counter()
        report = predict_files(pipe, [images], out, progress=progress, workers=args.workers)
        seconds = time.perf_counter() - t
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"{args.n} synthetic 256x256 PNGs (made in {made:.0f} s); backend {pipe.backend_name}, model size "
          f"{pipe.size}, batch {args.batch_size}, workers {args.workers}, tta {args.tta}, "
          f"RSS via {'psutil' if psutil else '/proc'}")
    print(f"{report.done} segmented, {len(report.failed)} failed in {seconds:.0f} s ({report.done / seconds:.1f} images/s)\n")
    print("| images done | RSS MB | workers' RSS MB |")
    print("|---:|---:|---:|")
    for done, rss, kids in sampler.rows:
        print(f"| {done} | {rss:.1f} | {f'{kids:.1f}' if kids else '-'} |")
    workers_slope = slope_per_1000(sampler.rows, 2)
    print(f"\nRSS slope over the second half: {slope_per_1000(sampler.rows):+.2f} MB per 1000 images"
          + ("" if np.isnan(workers_slope) else f" (workers: {workers_slope:+.2f})"))


if __name__ == "__main__":
    main()
