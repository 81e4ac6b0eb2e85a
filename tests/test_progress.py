"""Progress for logs: plain lines every ~10% or 30 s when stderr is not a terminal, a tqdm bar when it is."""

from __future__ import annotations

import io

from cxrseg.progress import LineProgress, ProgressReporter, duration, is_terminal


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    text = stream.getvalue()
    assert "\r" not in text, "a log must never get carriage-return redraws"
    assert text.endswith("\n")
    return text.splitlines()


def test_a_line_every_ten_percent_and_none_in_between():
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(200, "predict", "img", stream, clock=clock)
    for _ in range(200):
        clock.now += 0.05
        bar.update(1)
    bar.close()
    out = lines(stream)
    assert out[0] == "predict: 200 img to do"
    assert [line.split()[1] for line in out[1:]] == [f"{n}/200" for n in range(20, 201, 20)]
    assert "(10%)" in out[1] and "elapsed 0:00:01" in out[1] and "20.00 img/s" in out[1] and "left" in out[1]
    assert "(100%)" in out[-1] and "left" not in out[-1]


def test_a_line_after_30_seconds_even_between_steps():
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(1000, "predict", "img", stream, clock=clock)
    for _ in range(5):
        clock.now += 31
        bar.update(1)
    out = lines(stream)
    assert [line.split()[1] for line in out[1:]] == ["1/1000", "2/1000", "3/1000", "4/1000", "5/1000"]
    assert "about " in out[-1]


def test_close_prints_where_the_run_stopped_once():
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(100, "predict", "img", stream, clock=clock)
    bar.update(3)  # an interrupted run: below the first 10%
    bar.close()
    bar.close()
    out = lines(stream)
    assert len(out) == 2 and out[1].startswith("predict: 3/100 img (3%)")


def test_batched_updates_and_small_totals():
    stream = io.StringIO()
    bar = LineProgress(3, "predict", "img", stream, clock=FakeClock())
    bar.update(2)
    bar.update(1)
    bar.close()
    assert [line.split()[1] for line in lines(stream)[1:]] == ["2/3", "3/3"]
    stream = io.StringIO()
    LineProgress(0, "predict", "img", stream).close()
    assert lines(stream) == ["predict: 0 img to do"]


def test_reporter_off_a_terminal_prints_lines_and_each_skipped_file_on_its_own():
    stream = io.StringIO()
    progress = ProgressReporter("predict", unit="img", stream=stream)
    progress.skipped("early.png", "not an image")  # before the display exists
    bar = progress.start(total=20)
    assert isinstance(bar, LineProgress)
    for i in range(20):
        if i in (4, 13):
            progress.skipped(f"bad{i}.png", "truncated PNG")
        bar.update(1)
    bar.close()
    out = lines(stream)
    assert out[0] == "skipped early.png: not an image"
    assert "skipped bad4.png: truncated PNG" in out and "skipped bad13.png: truncated PNG" in out
    assert len([line for line in out if line.startswith("predict: ") and "/20" in line]) == 10


def test_quiet_prints_nothing():
    stream = io.StringIO()
    progress = ProgressReporter("predict", unit="img", stream=stream, quiet=True)
    bar = progress.start(total=10)
    bar.update(10)
    progress.skipped("bad.png", "not an image")
    bar.close()
    assert stream.getvalue() == ""


def test_on_a_terminal_it_is_a_tqdm_bar():
    stream = Terminal()
    assert is_terminal(stream) and not is_terminal(io.StringIO())
    progress = ProgressReporter("predict", unit="img", stream=stream)
    bar = progress.start(total=5)
    bar.update(5)
    progress.skipped("bad.png", "not an image")
    bar.close()
    text = stream.getvalue()
    assert "\r" in text and "5/5" in text and "skipped bad.png: not an image\n" in text


def test_duration():
    assert duration(0) == "0:00:00" and duration(61.4) == "0:01:01" and duration(3 * 3600 + 5) == "3:00:05"


# -- through `cxrseg predict` (CliRunner's stderr is not a terminal, like a log file) --------------------------
def predict_args(tiny_models, synthetic_root, tmp_path, *extra: str) -> list[str]:
    import shutil

    from cxrseg.data.covidqu import find_dataset

    folder = tmp_path / "xrays"
    folder.mkdir()
    for s in find_dataset(synthetic_root).select(("Val",))[::3]:  # 3 images
        shutil.copy(s.image, folder / s.image.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    lung, infection = tiny_models
    return ["predict", str(folder), "--out", str(tmp_path / "out"), "--lung-model", str(lung),
            "--infection-model", str(infection), "--backend", "torch", "--workers", "0", *extra]


def test_predict_logs_plain_lines_when_stderr_is_not_a_terminal(tiny_models, synthetic_root, tmp_path):
    from typer.testing import CliRunner

    from cxrseg.cli import app

    result = CliRunner().invoke(app, predict_args(tiny_models, synthetic_root, tmp_path))
    assert result.exit_code == 1, result.output
    assert "\r" not in result.stderr
    err = result.stderr.splitlines()
    assert "predict: 4 img to do" in err
    assert any(line.startswith("predict: 4/4 img (100%)") for line in err), err
    skipped = [line for line in err if line.startswith("skipped ")]
    assert len(skipped) == 1 and "broken.png" in skipped[0]
    assert "3 segmented, 0 already done, 1 failed" in result.stdout


def test_predict_quiet_prints_only_the_summary(tiny_models, synthetic_root, tmp_path):
    from typer.testing import CliRunner

    from cxrseg.cli import app

    result = CliRunner().invoke(app, predict_args(tiny_models, synthetic_root, tmp_path, "--quiet"))
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [f"3 segmented, 0 already done, 1 failed -> {tmp_path / 'out'}"]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"1 file(s) could not be read; see {tmp_path / 'out'}/failed*.csv"
    # the tiny models may be unsure of the phantoms' lungs: that count is part of the summary too
    assert len(lines) <= 2 and all(" film(s) with doubtful lungs " in line for line in lines[:-1])


def test_iterate_yields_everything_and_prints_plain_lines_with_the_postfix():
    import io

    from cxrseg.progress import ProgressReporter

    stream = io.StringIO()
    rep = ProgressReporter("train epoch 1/3", unit="batch", stream=stream)
    seen = []
    for i in rep.iterate(range(20)):
        seen.append(i)
        rep.display.set_postfix(f"loss={1 / (i + 1):.4f}")
    assert seen == list(range(20))
    text = stream.getvalue()
    assert "\r" not in text and text.startswith("train epoch 1/3: 20 batch to do\n")
    assert "20/20 batch (100%)" in text and text.rstrip().endswith("loss=0.0500")
    quiet = io.StringIO()
    assert list(ProgressReporter("x", stream=quiet, quiet=True).iterate([1, 2])) == [1, 2] and quiet.getvalue() == ""


def test_evaluate_and_tune_quiet_print_no_progress(tiny_models, synthetic_root, tmp_path):
    from typer.testing import CliRunner

    from cxrseg.cli import app

    lung, infection = (str(p) for p in tiny_models)
    models = ["--lung-model", lung, "--infection-model", infection, "--backend", "torch"]
    for args, label in (
        (["evaluate", "--data", str(synthetic_root), "--out", str(tmp_path / "eval"), "--classifier", "none", *models],
         "evaluate Val"),
        (["tune", "--data", str(synthetic_root), "--no-write", *models], "tune"),
    ):
        loud, quiet = (CliRunner().invoke(app, args + extra) for extra in ([], ["--quiet"]))
        assert loud.exit_code == quiet.exit_code == 0, loud.output + quiet.output
        assert label in loud.stderr and quiet.stderr.strip() == ""  # progress goes, the results stay
        assert quiet.stdout == loud.stdout
