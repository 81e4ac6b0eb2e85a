"""predict_files: per-image outputs, results.csv, failures, resume after a crash, shards, duplicate names."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from cxrseg.data.covidqu import find_dataset
from cxrseg.errors import CxrsegError
from cxrseg.inference.batch import predict_files
from cxrseg.inference.result import CSV_FIELDS


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def inputs(synthetic_root, tmp_path):
    """A folder of 4 X-rays: three 128x128 Val images and one non-square 96x160 image."""
    folder = tmp_path / "in"
    folder.mkdir()
    samples = find_dataset(synthetic_root).select(("Val",))
    for s in samples[::3]:  # one of each class
        shutil.copy(s.image, folder / s.image.name)
    img = Image.open(samples[1].image).resize((160, 96))
    img.save(folder / "wide.png")
    return folder


def test_outputs_per_image_and_results_csv(pipeline, inputs, tmp_path):
    out = tmp_path / "out"
    report = predict_files(pipeline, [inputs], out)
    files = sorted(inputs.iterdir())
    assert report.done == 4 and report.skipped == 0 and report.failed == []
    for f in files:
        h, w = np.asarray(Image.open(f)).shape
        for kind in ("lung", "infection"):
            mask = Image.open(out / f"{f.stem}_{kind}.png")
            a = np.asarray(mask)
            assert mask.mode == "L" and a.dtype == np.uint8 and a.shape == (h, w)
            assert set(np.unique(a)) <= {0, 255}
        assert np.asarray(Image.open(out / f"{f.stem}_lung.png")).any()
        overlay = Image.open(out / f"{f.stem}_overlay.png")
        assert overlay.mode == "RGB" and overlay.size == (w, h)
        assert not (out / f"{f.stem}_uncertainty.png").exists()  # only with TTA
    rows = _rows(out / "results.csv")
    with open(out / "results.csv", newline="") as fh:
        assert tuple(next(csv.reader(fh))) == CSV_FIELDS
    assert sorted(r["file"] for r in rows) == sorted(str(f) for f in files)
    for r in rows:
        lung = np.asarray(Image.open(out / f"{r['file'].rsplit('/', 1)[1].rsplit('.', 1)[0]}_lung.png")) > 0
        assert int(r["lung_area_px"]) == int(lung.sum())
        assert (int(r["height"]), int(r["width"])) == lung.shape
        assert int(r["total_grade"]) == int(r["right_grade"]) + int(r["left_grade"])
        assert 0.0 <= float(r["infection_probability"]) <= 1.0
    assert not (out / "failed.csv").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def test_infection_png_matches_the_lung(pipeline, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "image_threshold", None)
    out = tmp_path / "out"
    predict_files(pipeline, [inputs], out)
    total = 0
    for f in inputs.iterdir():
        lung = np.asarray(Image.open(out / f"{f.stem}_lung.png")) > 0
        inf = np.asarray(Image.open(out / f"{f.stem}_infection.png")) > 0
        assert not (inf & ~lung).any()
        total += int(inf.sum())
    assert total > 0


def test_uncertainty_png_with_tta(pipeline, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "tta", True)
    out = tmp_path / "out"
    predict_files(pipeline, [inputs / "wide.png"], out)
    unc = Image.open(out / "wide_uncertainty.png")
    assert unc.size == (160, 96)
    assert _rows(out / "results.csv")[0]["uncertainty"] != ""


def test_a_corrupt_file_is_listed_and_the_rest_processed(pipeline, inputs, tmp_path):
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (inputs / "notes.jpg").write_text("not an image")
    out = tmp_path / "out"
    failures = []
    report = predict_files(pipeline, [inputs], out, on_failure=lambda f, why: failures.append(f))
    assert report.done == 4
    assert sorted(f for f, _ in report.failed) == sorted([str(inputs / "broken.png"), str(inputs / "notes.jpg")])
    assert sorted(failures) == sorted(f for f, _ in report.failed)
    failed = _rows(out / "failed.csv")
    assert sorted(r["file"] for r in failed) == sorted(f for f, _ in report.failed)
    assert all(r["problem"] for r in failed)
    assert len(_rows(out / "results.csv")) == 4
    assert not (out / "broken_lung.png").exists()


def test_resume_skips_done_rows_and_repairs_a_torn_line(pipeline, inputs, tmp_path):
    out = tmp_path / "out"
    predict_files(pipeline, [inputs], out)
    results = out / "results.csv"
    full = _rows(results)
    data = results.read_bytes()
    last_start = data.rstrip(b"\r\n").rfind(b"\n") + 1
    results.write_bytes(data[: last_start + 12])  # killed while writing the last row
    torn_file = full[-1]["file"]

    report = predict_files(pipeline, [inputs], out, resume=True)
    assert report.skipped == 3 and report.done == 1 and report.failed == []
    rows = _rows(results)
    assert [r["file"] for r in rows] == [r["file"] for r in full]  # the torn row was redone, once
    assert rows[-1]["file"] == torn_file and rows[-1] == full[-1]
    assert all(len(r) == len(CSV_FIELDS) and None not in r.values() for r in rows)

    again = predict_files(pipeline, [inputs], out, resume=True)
    assert (again.done, again.skipped) == (0, 4)
    assert len(_rows(results)) == 4


def test_resume_refuses_a_results_csv_with_other_columns(pipeline, inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    old = "file,lung_area_px,infected_pct\nsomewhere/a.png,100,1.0\n"  # an older cxrseg's layout
    (out / "results.csv").write_text(old)
    with pytest.raises(CxrsegError, match="other columns"):
        predict_files(pipeline, [inputs], out, resume=True)
    assert (out / "results.csv").read_text() == old  # nothing appended, nothing lost
    assert predict_files(pipeline, [inputs], out).done == 4  # without --resume the folder starts again


def test_resume_retries_failures_and_failed_csv_stays_true(pipeline, inputs, synthetic_root, tmp_path):
    bad = inputs / "broken.png"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out"
    assert len(predict_files(pipeline, [inputs], out).failed) == 1
    # resumed with the file still broken: listed once, not once per attempt
    again = predict_files(pipeline, [inputs], out, resume=True)
    assert (again.done, again.skipped, len(again.failed)) == (0, 4, 1)
    assert [r["file"] for r in _rows(out / "failed.csv")] == [str(bad)]
    # the file repaired, then resumed: it is segmented and no longer listed as failed
    shutil.copy(find_dataset(synthetic_root).select(("Val",))[0].image, bad)
    fixed = predict_files(pipeline, [inputs], out, resume=True)
    assert (fixed.done, fixed.skipped, fixed.failed) == (1, 4, [])
    assert (out / "broken_lung.png").is_file()
    assert not (out / "failed.csv").exists() or _rows(out / "failed.csv") == []
    assert len(_rows(out / "results.csv")) == 5


def test_without_resume_results_start_over(pipeline, inputs, tmp_path):
    out = tmp_path / "out"
    predict_files(pipeline, [inputs], out)
    report = predict_files(pipeline, [inputs], out)
    assert (report.done, report.skipped) == (4, 0)
    assert len(_rows(out / "results.csv")) == 4


def test_shards_split_the_files_disjointly(pipeline, inputs, tmp_path):
    out = tmp_path / "out"
    seen = []
    for i in range(3):
        report = predict_files(pipeline, [inputs], out, shard=f"{i}/3")
        rows = _rows(out / f"results.shard{i}of3.csv")
        assert report.done == len(rows)
        seen.append({r["file"] for r in rows})
    assert sum(len(s) for s in seen) == 4
    assert set().union(*seen) == {str(f) for f in inputs.iterdir()}
    assert not (out / "results.csv").exists()
    for i, part in enumerate(seen):
        assert part, f"shard {i} got no file"


@pytest.mark.parametrize("bad", ["3/3", "-1/2", "1", "a/b", "1/0"])
def test_bad_shard_is_a_clear_error(pipeline, inputs, tmp_path, bad):
    with pytest.raises(CxrsegError, match="shard"):
        predict_files(pipeline, [inputs], tmp_path / "out", shard=bad)


def _two_x_pngs(samples, a, b) -> None:
    """a/x.png and b/x.png: two different X-rays (128x128 and 100x140) with the same file name."""
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    shutil.copy(samples[0].image, a / "x.png")
    Image.open(samples[3].image).resize((100, 140)).save(b / "x.png")  # another image, another size


def test_duplicate_stems_from_two_folders_do_not_overwrite(pipeline, synthetic_root, tmp_path):
    samples = find_dataset(synthetic_root).select(("Val",))
    a, b = tmp_path / "a", tmp_path / "b"
    _two_x_pngs(samples, a, b)
    out = tmp_path / "out"
    report = predict_files(pipeline, [a, b], out)
    assert report.done == 2
    lungs = sorted(out.glob("*_lung.png"))
    assert len(lungs) == 2
    sizes = sorted(Image.open(p).size for p in lungs)
    assert sizes == [(100, 140), (128, 128)]
    assert len(list(out.glob("*_overlay.png"))) == 2


def test_duplicate_stems_in_folders_of_the_same_name(pipeline, synthetic_root, tmp_path):
    """hospital1/images/x.png and hospital2/images/x.png: both parents are called 'images'."""
    samples = find_dataset(synthetic_root).select(("Val",))
    a, b = tmp_path / "hospital1" / "images", tmp_path / "hospital2" / "images"
    _two_x_pngs(samples, a, b)
    Image.open(samples[3].image).resize((90, 90)).save(b / "x.jpg")  # same stem, same folder, other format
    out = tmp_path / "out"
    assert predict_files(pipeline, [tmp_path / "hospital1", tmp_path / "hospital2"], out).done == 3
    sizes = sorted(Image.open(p).size for p in out.glob("*_lung.png"))
    assert sizes == [(90, 90), (100, 140), (128, 128)]


def test_duplicate_stems_across_shards_do_not_overwrite(pipeline, synthetic_root, tmp_path):
    samples = find_dataset(synthetic_root).select(("Val",))
    a, b = tmp_path / "a", tmp_path / "b"
    _two_x_pngs(samples, a, b)
    out = tmp_path / "out"
    for i in range(2):  # each shard holds one of the two x.png
        assert predict_files(pipeline, [a, b], out, shard=f"{i}/2").done == 1
    sizes = sorted(Image.open(p).size for p in out.glob("*_lung.png"))
    assert sizes == [(100, 140), (128, 128)]


def test_missing_input_and_empty_folder(pipeline, tmp_path):
    with pytest.raises(CxrsegError, match="nothing.png"):
        predict_files(pipeline, [tmp_path / "nothing.png"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CxrsegError, match="no input images"):
        predict_files(pipeline, [tmp_path / "empty"], tmp_path / "out")


def test_a_failed_write_stops_the_run_and_lists_only_complete_images(pipeline, inputs, tmp_path, monkeypatch):
    """Outputs are written on a background thread; its error reaches the caller, and results.csv holds a row
    only for images whose files were all written (so --resume redoes the rest)."""
    from cxrseg.inference import batch

    monkeypatch.setattr(pipeline, "batch_size", 1)
    real, calls = batch.write_outputs, []

    def disk_full_on_the_third(out, stem, xray, seg):
        calls.append(stem)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(out, stem, xray, seg)

    monkeypatch.setattr(batch, "write_outputs", disk_full_on_the_third)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space left"):
        predict_files(pipeline, [inputs], out, workers=0)
    written = [r["file"].rsplit("/", 1)[1].rsplit(".", 1)[0] for r in _rows(out / "results.csv")]
    assert written == calls[:2]
    assert all((out / f"{stem}_overlay.png").exists() for stem in written)
    assert not (out / f"{calls[2]}_overlay.png").exists()
    monkeypatch.setattr(batch, "write_outputs", real)
    report = predict_files(pipeline, [inputs], out, resume=True, workers=0)
    assert report.skipped == 2 and report.done == 2
