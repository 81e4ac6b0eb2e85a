"""scripts/screenshots.py without a browser: the fixed, class-stratified Val subset, the inputs it copies, and the
PNG size cap (the browser part runs when the README's screenshots are retaken)."""

from __future__ import annotations

import io

import numpy as np
from _scripts import load_script
from PIL import Image

from cxrseg.examples import films

shots = load_script("scripts/screenshots.py")


def test_the_val_subset_is_fixed_and_covers_every_class(synthetic_root):
    picked = shots.val_images(synthetic_root, k=6)
    assert picked == shots.val_images(synthetic_root, k=6)  # the same files every time
    assert len(picked) == 6 and all(p.parent.name == "images" and p.parents[2].name == "Val" for p in picked)
    assert {p.parents[1].name for p in picked} == {"COVID-19", "Non-COVID", "Normal"}


def test_inputs_are_the_example_films_then_the_val_subset(synthetic_root, tmp_path):
    copied = shots.gather_inputs(tmp_path / "xrays", synthetic_root)
    assert [p.name for p in copied[:2]] == [f.name for f in films()]
    assert len(copied) == 2 + min(shots.VAL_IMAGES, 9)  # the synthetic Val has 9 images: all of them
    assert all(p.parent == tmp_path / "xrays" and p.is_file() for p in copied)
    assert [p.name for p in shots.gather_inputs(tmp_path / "only", None)] == [f.name for f in films()]


def test_a_png_over_the_cap_is_written_with_256_colours(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    small = shots.write_png(buffer.getvalue(), tmp_path / "capped.png", max_kb=100)
    assert Image.open(small).mode == "P" and Image.open(small).size == (400, 300)
    kept = shots.write_png(buffer.getvalue(), tmp_path / "kept.png", max_kb=10_000)
    np.testing.assert_array_equal(np.asarray(Image.open(kept).convert("RGB")), noise)  # lossless under the cap
