"""Predict many files: stream through decoding, write masks/overlays/results.csv as it goes, resume, shard.

For each input ``STEM.ext`` the output folder gets ``STEM_lung.png``, ``STEM_infection.png`` (0/255 as read,
stored in 2 bits, at the input's own size), ``STEM_overlay.png``, with ``dicom_seg=True`` a DICOM SEG ``STEM_seg.dcm`` for each
DICOM input, and one row in ``results.csv`` (the files are made by :mod:`cxrseg.inference.writers`). Every
image file is written atomically; ``results.csv`` grows one flushed row at a time, so a crash keeps every
finished row and ``resume=True`` skips them. A file that cannot be read is listed in ``failed.csv`` and never stops the rest.

Files are decoded by ``workers`` DataLoader worker processes (in input order, a few images ahead of the
model), so reading and decoding large PNG/DICOM files overlaps with inference; ``workers=0`` decodes in
this process. Memory stays flat however many files there are: nothing is kept per image but its CSV row.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# PyTorch's OpenMP threads (libgomp) spin for a while at every barrier before they sleep. Here the model shares
# the cores with the decoding processes and the writing thread, and on a busy machine with other processes: a
# spinning thread burns the time slice its partner needs. With 2 threads on 2 loaded cores, `cxrseg predict`
# on 128 Val films took 45 s (31 s CPU) spinning and 14 s (8 s CPU) passive. libgomp reads this once, when
# torch is first imported, so it only takes effect if nothing imported torch before this module (as in the
# CLI); an OMP_WAIT_POLICY already set is left alone.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cxrseg.data.io import IMAGE_SUFFIXES, XRay, read_xray  # noqa: E402 - after the OpenMP setting
from cxrseg.errors import CxrsegError, InputFileError  # noqa: E402
from cxrseg.inference.pipeline import ModelPass, TwoStagePipeline  # noqa: E402
from cxrseg.inference.result import CSV_FIELDS, Segmentation  # noqa: E402
from cxrseg.inference.writers import NoDicomSeg, dicom_seg_algorithms, write_dicom_seg, write_outputs  # noqa: E402

RESULTS, FAILED = "results.csv", "failed.csv"


@dataclass
class BatchReport:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    dicom_segs: int = 0  # STEM_seg.dcm files written (dicom_seg=True)
    notes: list[str] = field(default_factory=list)  # why some inputs got no DICOM SEG
    doubtful: list[str] = field(default_factory=list)  # files whose lungs stage 1 found with low confidence


def collect_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand folders (recursively, image suffixes only, sorted) and keep files as given."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise CxrsegError(f"{p}: no such file or folder")
    if not files:
        raise CxrsegError("no input images found (PNG, JPEG, TIFF, BMP or DICOM)")
    return files


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if not text:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as e:
        raise CxrsegError(f"--shard must look like i/n (e.g. 0/4), not {text!r}") from e
    if not 0 <= i < n:
        raise CxrsegError(f"--shard {text}: need 0 <= i < n")
    return i, n


def output_stems(files: list[Path]) -> dict[Path, str]:
    """A unique output stem per input: the file's stem; when stems repeat, prefixed by as few parent folders as
    tell them apart (``a_x``, ``b_x``; ``site1_images_x``, ``site2_images_x``), with the suffix added when the
    folders alone do not (``x_png``, ``x_dcm``), and numbered as a last resort. Pass every input, before
    sharding, so that shards writing into one folder agree."""
    files = list(dict.fromkeys(files))  # the same path twice is one input
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(f.stem, []).append(f)
    out: dict[Path, str] = {}
    for stem, group in groups.items():
        if len(group) == 1:
            out[group[0]] = stem
            continue
        folders = [f.absolute().parent.parts[1:] for f in group]
        deepest = max(len(p) for p in folders)
        for with_suffix in (False, True):
            for depth in range(0 if with_suffix else 1, deepest + 1):
                names = [
                    "_".join([*p[len(p) - depth :], stem] + ([f.suffix.lstrip(".")] if with_suffix else []))
                    for p, f in zip(folders, group)
                ]
                if len(set(names)) == len(names):
                    break
            else:
                continue
            break
        out.update(zip(group, names))
    taken: set[str] = set()
    for f in files:  # a prefixed name may still equal another file's own stem
        name, k = out[f], 1
        while out[f] in taken:
            k += 1
            out[f] = f"{name}_{k}"
        taken.add(out[f])
    return out


def _done_files(csv_path: Path, fields: tuple[str, ...] = CSV_FIELDS) -> set[str]:
    """Files already in results.csv; a torn last line (a kill mid-write) is cut off first.

    A file written with other columns (an older cxrseg) is refused before anything is appended to it: rows of
    two layouts under one header would be misread by every later reader.
    """
    if not csv_path.exists():
        return set()
    data = csv_path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(csv_path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is not None and tuple(reader.fieldnames) != tuple(fields):
            raise CxrsegError(
                f"{csv_path}: written with other columns (by another cxrseg version), so --resume cannot add to it; "
                "use a new --out folder, or run without --resume to start this folder again"
            )
        return {row["file"] for row in reader}


class _AppendCsv:
    """A CSV that gains flushed, fsynced rows; the header is written once."""

    def __init__(self, path: Path, fields: tuple[str, ...]) -> None:
        new = not path.exists() or path.stat().st_size == 0
        self.f = open(path, "a", newline="", encoding="utf-8")
        self.w = csv.DictWriter(self.f, fieldnames=fields)
        if new:
            self.w.writeheader()

    def write(self, rows: list[dict]) -> None:
        self.w.writerows(rows)
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def default_workers() -> int:
    """Decoding processes used by default: min(2, CPU count)."""
    return min(2, os.cpu_count() or 1)


def _decode(f: Path, max_pixels: int) -> tuple[XRay | None, str | None]:
    """(X-ray, None) or (None, why): a bad file is a result, never an exception (it would stop the loader)."""
    try:
        return read_xray(f, max_pixels=max_pixels), None
    except InputFileError as e:
        return None, e.problem
    except Exception as e:  # noqa: BLE001 - a decoder bug or MemoryError must not end the whole run
        return None, f"cannot decode ({type(e).__name__}: {e})"


class _DecodeFiles:
    """Map-style dataset for the DataLoader: item i is (i, X-ray or None, problem or None)."""

    def __init__(self, files: list[Path], max_pixels: int) -> None:
        self.files, self.max_pixels = files, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, XRay | None, str | None]:
        return (i, *_decode(self.files[i], self.max_pixels))


def _as_is(item):
    return item


def _decoded(files: list[Path], max_pixels: int, workers: int = 0) -> Iterator[tuple[Path, XRay | None, str | None]]:
    """(file, X-ray or None, problem or None) for every file, in order; decoded in ``workers`` processes."""
    workers = min(workers, len(files))
    if workers <= 0:
        for f in files:
            yield (f, *_decode(f, max_pixels))
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _DecodeFiles(files, max_pixels),
        batch_size=None,  # one file per item; the pipeline makes its own batches
        collate_fn=_as_is,  # keep the XRay as it is (numpy), no tensor conversion
        num_workers=workers,
        prefetch_factor=2,  # at most 2 * workers decoded images wait in memory
    )
    for i, xray, problem in loader:
        yield files[i], xray, problem


def predict_files(
    pipeline: TwoStagePipeline,
    inputs: Iterable[str | Path],
    out: str | Path,
    resume: bool = False,
    shard: str | None = None,
    progress: Callable | None = None,
    on_failure: Callable[[str, str], None] | None = None,
    max_pixels: int = 8192 * 8192,
    workers: int | None = None,
    dicom_seg: bool = False,
    on_note: Callable[[str], None] | None = None,
) -> BatchReport:
    """Segment every input file into ``out``; returns counts and the failures with their reasons.

    ``workers``: decoding processes (default :func:`default_workers`; 0 decodes in this process).
    ``dicom_seg``: also write ``STEM_seg.dcm`` for every DICOM input. A non-DICOM input gets nothing extra,
    said once through ``on_note``; a DICOM input that cannot be referenced (e.g. no StudyInstanceUID) is
    said per file. Either way its other outputs and CSV row are written as usual. The SEG's algorithm versions
    carry the digests of the weights the pipeline loaded.
    """
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise CxrsegError(f"workers must be 0 or more, not {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = collect_inputs(inputs)
    stems = output_stems(files)  # over all inputs: shards sharing an output folder must not reuse a name
    i, n = parse_shard(shard)
    files = files[i::n]
    results = out / (RESULTS if n == 1 else f"results.shard{i}of{n}.csv")
    failed_path = out / (FAILED if n == 1 else f"failed.shard{i}of{n}.csv")
    if not resume:
        results.unlink(missing_ok=True)
    failed_path.unlink(missing_ok=True)  # failures are never "done": a resumed run retries them and lists them anew
    done = _done_files(results) if resume else set()
    report = BatchReport(skipped=sum(str(f) in done for f in files))
    todo = [f for f in files if str(f) not in done]
    writer = _AppendCsv(results, CSV_FIELDS)
    failures: _AppendCsv | None = None
    bar = progress(total=len(todo)) if progress else None
    # One background thread finishes a batch (masks at each film's size, clean-up, figures: numpy and SciPy on one
    # core) and writes its files and then its CSV rows, while the models take the next batch on the other threads.
    # Waiting for it before handing over the next batch keeps at most one batch in flight, and a row still only
    # appears once its files are complete.
    saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxrseg-write")
    pending: Future | None = None
    algorithms = dicom_seg_algorithms(pipeline) if dicom_seg else None
    said_not_dicom = False

    def note(message: str) -> None:
        report.notes.append(message)
        if on_note:
            on_note(message)

    def save_dicom_seg(f: Path, x: XRay, seg: Segmentation) -> None:
        nonlocal said_not_dicom
        try:
            write_dicom_seg(out / f"{stems[f]}_seg.dcm", x, seg, algorithms)
            report.dicom_segs += 1
        except NoDicomSeg as e:
            if not e.not_dicom:
                note(str(e))
            elif not said_not_dicom:
                said_not_dicom = True
                note(f"--dicom-seg: {f} is not DICOM; a DICOM SEG is written for DICOM inputs only "
                     "(other non-DICOM inputs are not listed)")

    def save(items: list[tuple[Path, XRay]], done: ModelPass) -> int:
        segs = pipeline.finish([x for _, x in items], done)
        for (f, x), seg in zip(items, segs):
            if seg.lungs_doubtful:
                report.doubtful.append(str(f))
            write_outputs(out, stems[f], x, seg)
            if algorithms is not None:
                save_dicom_seg(f, x, seg)
        writer.write([{**seg.row(), "file": str(f)} for (f, _), seg in zip(items, segs)])
        return len(items)

    def wait_saved() -> None:
        nonlocal pending
        if pending is not None:
            n, pending = pending.result(), None
            report.done += n
            if bar is not None:
                bar.update(n)

    try:
        batch: list[tuple[Path, XRay]] = []

        def flush() -> None:
            nonlocal pending
            if not batch:
                return
            done = pipeline.model_pass([x for _, x in batch])
            wait_saved()
            pending = saver.submit(save, list(batch), done)
            batch.clear()

        for f, xray, problem in _decoded(todo, max_pixels, workers):
            if xray is None:
                if failures is None:
                    failures = _AppendCsv(failed_path, ("file", "problem"))
                failures.write([{"file": str(f), "problem": problem}])
                report.failed.append((str(f), problem))
                if on_failure:
                    on_failure(str(f), problem)
                if bar is not None:
                    bar.update(1)
                continue
            batch.append((f, xray))
            if len(batch) >= pipeline.batch_size:
                flush()
        flush()
        wait_saved()
    finally:
        saver.shutdown(wait=True)  # an interrupted run still finishes the batch being written
        writer.close()
        if failures is not None:
            failures.close()
        if bar is not None:
            bar.close()
    return report
