"""Bulk prediction decodes in DataLoader worker processes: same results, order, failures, resume and shards."""

from __future__ import annotations

import csv
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrseg.data.synthetic import phantom
from cxrseg.inference import batch
from cxrseg.inference.batch import predict_files


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """9 phantoms of different sizes and formats, plus an empty file and a corrupt PNG."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(7)
    labels = ["COVID-19", "Non-COVID", "Normal"]
    for i in range(9):
        img, _, _ = phantom(labels[i % 3], 128, rng)
        size = (128 + 24 * i, 128 + 16 * (i % 4))  # (width, height): masks must come back at these sizes
        Image.fromarray(img).resize(size).save(root / f"img{i:02d}.{'png' if i % 2 else 'jpg'}")
    (root / "empty.png").write_bytes(b"")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return root


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _masks(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*_infection.png")) + sorted(out.glob("*_lung.png"))}


@pytest.fixture(scope="module")
def reference(pipeline, inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out0")
    report = predict_files(pipeline, [inputs], out, workers=0)
    assert report.done == 9 and len(report.failed) == 2
    return out


def test_workers_give_the_same_results_as_in_process(pipeline, inputs, reference, tmp_path) -> None:
    report = predict_files(pipeline, [inputs], tmp_path, workers=2)
    assert (report.done, report.skipped, len(report.failed)) == (9, 0, 2)
    assert (tmp_path / "results.csv").read_text() == (reference / "results.csv").read_text()
    assert (tmp_path / "failed.csv").read_text() == (reference / "failed.csv").read_text()
    assert _masks(tmp_path) == _masks(reference)
    rows = _read(tmp_path / "results.csv")
    assert [Path(r["file"]).name for r in rows] == [f"img{i:02d}.{'png' if i % 2 else 'jpg'}" for i in range(9)]
    failed = {Path(r["file"]).name: r["problem"] for r in _read(tmp_path / "failed.csv")}
    assert set(failed) == {"empty.png", "broken.png"} and failed["empty.png"] == "file is empty"


def test_resume_after_a_torn_row_with_workers(pipeline, inputs, reference, tmp_path) -> None:
    lines = (reference / "results.csv").read_text().splitlines(keepends=True)
    (tmp_path / "results.csv").write_text("".join(lines[:4]) + lines[4][:20])  # header, 3 rows, half a row
    report = predict_files(pipeline, [inputs], tmp_path, resume=True, workers=2)
    assert (report.done, report.skipped) == (6, 3)
    assert (tmp_path / "results.csv").read_text() == (reference / "results.csv").read_text()


def test_shards_with_workers_cover_the_run(pipeline, inputs, reference, tmp_path) -> None:
    for i in range(3):
        predict_files(pipeline, [inputs], tmp_path, shard=f"{i}/3", workers=2)
    merged = [r for i in range(3) for r in _read(tmp_path / f"results.shard{i}of3.csv")]
    expected = _read(reference / "results.csv")
    key = lambda r: r["file"]  # noqa: E731
    assert sorted(merged, key=key) == sorted(expected, key=key)
    failed = [r for i in range(3) if (tmp_path / f"failed.shard{i}of3.csv").exists()
              for r in _read(tmp_path / f"failed.shard{i}of3.csv")]
    assert len(failed) == 2


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the patch reaches workers only by fork")
def test_unexpected_decoder_error_is_a_failure_record(pipeline, inputs, tmp_path, monkeypatch) -> None:
    real = batch.read_xray

    def flaky(path, max_pixels):
        if Path(path).name == "img03.png":
            raise RuntimeError("decoder bug")
        return real(path, max_pixels=max_pixels)

    monkeypatch.setattr(batch, "read_xray", flaky)
    report = predict_files(pipeline, [inputs], tmp_path, workers=2)
    assert report.done == 8
    assert (str(inputs / "img03.png"), "cannot decode (RuntimeError: decoder bug)") in report.failed


def test_negative_workers_refused(pipeline, inputs, tmp_path) -> None:
    from cxrseg.errors import CxrsegError

    with pytest.raises(CxrsegError, match="workers"):
        predict_files(pipeline, [inputs], tmp_path, workers=-1)
