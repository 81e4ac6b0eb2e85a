"""benchmarks/shift.py: a row per acquisition shift after the unshifted one, fixed per-image seeds, the aim's marks."""

from __future__ import annotations

import numpy as np
import pytest

from cxrseg.data.shifts import BENCHMARK_SHIFTS, FRAMING_SHIFTS, framing

HEADER = ("| shift | lung Dice | infection Dice, COVID-19 | infection Dice, all images (Tahir et al.) "
          "| negatives flagged % | Δ COVID-19 Dice | Δ negatives flagged (points) | aim |")


def _rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = lines.index(HEADER)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_end_to_end_all_shifts(benchmark_module, synthetic_root, tiny_models, tmp_path, capsys):
    shift = benchmark_module("shift")
    out = tmp_path / "docs" / "shift.md"
    text = shift.main(["--data", str(synthetic_root), "--split", "Val", "--lung-model", str(tiny_models[0]),
                       "--infection-model", str(tiny_models[1]), "--backend", "torch", "--size", "128",
                       "--out", str(out)])
    captured = capsys.readouterr()
    assert out.read_text() == text == captured.out
    rows = _rows(text)
    assert [r[0] for r in rows] == [shift.UNSHIFTED, *BENCHMARK_SHIFTS, *FRAMING_SHIFTS]
    assert len(rows[0]) == 8 and rows[0][5:] == ["", "", ""]  # the reference row has no deltas and no mark
    for r in rows:
        lung, covid, every, flagged = (float(v) for v in r[1:5])
        assert 0 <= lung <= 1 and 0 <= covid <= 1 and 0 <= every <= 1 and 0 <= flagged <= 100
    for r in rows[1:]:
        assert r[7] in ("ok", "**BREAKS**")
        assert np.isclose(float(r[5]), float(r[2]) - float(rows[0][2]), atol=2e-4)
    assert "9 images (3 COVID-19, 3 Non-COVID, 3 Normal)" in text
    assert captured.err.count("\n") >= len(rows)  # a progress line per row


def test_subset_and_chosen_shifts(benchmark_module, synthetic_root, tiny_models, capsys):
    shift = benchmark_module("shift")
    text = shift.main(["--data", str(synthetic_root), "--lung-model", str(tiny_models[0]), "--infection-model",
                       str(tiny_models[1]), "--backend", "torch", "--size", "128", "--max-images", "6",
                       "--shifts", "gamma 0.6, burnt-in text"])
    assert [r[0] for r in _rows(text)] == [shift.UNSHIFTED, "gamma 0.6", "burnt-in text"]
    assert "6 images" in text and "class-stratified subset of the 9" in text
    with pytest.raises(SystemExit, match="unknown shift"):
        shift.parse_shifts("gamma 0.6,sepia")


def test_fixed_seed_per_image(benchmark_module):
    shift = benchmark_module("shift")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (3, 32, 32)).astype(np.float32)
    noise = BENCHMARK_SHIFTS["noise 0.04"]
    a = shift.apply_shift(noise, images, ["a", "b", "c"])
    b = shift.apply_shift(noise, images[[2, 0]], ["c", "a"])  # another subset, another order: same film, same noise
    assert np.array_equal(a[2], b[0]) and np.array_equal(a[0], b[1])
    assert not np.array_equal(a[0] - images[0], a[1] - images[1])
    assert shift.apply_shift(None, images, ["a", "b", "c"]) is images
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1


def test_breaks_aim(benchmark_module):
    shift = benchmark_module("shift")
    base = {"covid_dice": 0.70, "negatives_flagged_pct": 9.0}
    assert not shift.breaks_aim({"covid_dice": 0.66, "negatives_flagged_pct": 13.9}, base)
    assert shift.breaks_aim({"covid_dice": 0.64, "negatives_flagged_pct": 9.0}, base)
    assert shift.breaks_aim({"covid_dice": 0.70, "negatives_flagged_pct": 14.1}, base)
    assert not shift.breaks_aim({"covid_dice": None, "negatives_flagged_pct": None}, base)


def test_framing_rows_frame_the_ground_truth_too(benchmark_module):
    """A tighter field of view moves the anatomy: its row is scored against masks framed the same way."""
    shift = benchmark_module("shift")
    masks = np.zeros((2, 64, 64), bool)
    masks[:, 20:44, 10:30] = True
    assert shift.framed(masks, "gamma 0.6") is masks
    name, zoom = next(iter(FRAMING_SHIFTS.items()))
    out = shift.framed(masks, name)
    np.testing.assert_array_equal(out[0], framing(masks[0], zoom, nearest=True))
    assert out.sum() > masks.sum()  # enlarged about the centre
    image = masks[0].astype(np.float32)
    np.testing.assert_array_equal(shift.apply_shift(shift.parse_shifts(name)[name], image[None], ["a"])[0] > 0.5, out[0])
