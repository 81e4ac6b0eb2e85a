"""Finding COVID-QU-Ex on disk: pairing, problems, summaries, selection."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from cxrseg.data.covidqu import (
    CLASSES,
    INFECTION_PART,
    find_dataset,
    require_samples,
    resolve_part,
    summary_markdown,
)
from cxrseg.data.synthetic import make_synthetic_covidqu
from cxrseg.errors import CxrsegError


@pytest.fixture
def small_root(tmp_path):
    """A fresh, disposable dataset: 2 Train and 1 Val image per class, 32x32."""
    return make_synthetic_covidqu(tmp_path / "covidqu", {"Train": 2, "Val": 1}, size=32, seed=3)


def _cls(root, split, label):
    return root / INFECTION_PART / split / label


def test_pairs_every_image_with_its_masks(synthetic_root):
    index = find_dataset(synthetic_root)
    assert index.part == "infection"
    assert index.root == synthetic_root / INFECTION_PART
    assert index.problems == []  # Test split is absent but was not asked for
    assert len(index.samples) == (8 + 3) * 3
    for s in index.samples:
        assert s.image.stem == s.lung.stem == s.infection.stem
        assert s.image.parent.name == "images"
        assert s.lung.parent.name == "lung masks"
        assert s.infection.parent.name == "infection masks"
        assert s.image.parent.parent.name == s.label
        assert s.image.parent.parent.parent.name == s.split
    assert index.counts[("Train", "COVID-19")] == {"images": 8, "lung masks": 8, "infection masks": 8}
    assert index.counts[("Val", "Normal")]["images"] == 3


def test_root_may_be_the_part_folder_itself(synthetic_root):
    base, part = resolve_part(synthetic_root / INFECTION_PART)
    assert (base, part) == (synthetic_root / INFECTION_PART, "infection")
    assert len(find_dataset(synthetic_root / INFECTION_PART).samples) == 33


def test_lung_part_is_chosen_when_asked(tmp_path):
    root = make_synthetic_covidqu(tmp_path / "both", {"Train": 1}, size=32, lung_part=True)
    index = find_dataset(root, part="lung")
    assert index.part == "lung"
    assert len(index.samples) == 3
    assert all(s.infection is None for s in index.samples)


def test_missing_lung_mask_is_reported_and_sample_dropped(small_root):
    lung = _cls(small_root, "Train", "Normal") / "lung masks" / "Normal_train_0.png"
    lung.unlink()
    index = find_dataset(small_root)
    image = _cls(small_root, "Train", "Normal") / "images" / "Normal_train_0.png"
    assert any(str(image) in p and "no lung mask" in p for p in index.problems)
    assert image not in [s.image for s in index.samples]
    assert len(index.samples) == 9 - 1


def test_missing_infection_mask_is_reported(small_root):
    (_cls(small_root, "Val", "COVID-19") / "infection masks" / "covid_val_0.png").unlink()
    index = find_dataset(small_root)
    assert any("covid_val_0.png" in p and "no infection mask" in p for p in index.problems)
    assert len(index.samples) == 8


def test_mask_without_image_is_reported(small_root):
    (_cls(small_root, "Train", "COVID-19") / "images" / "covid_train_1.png").unlink()
    index = find_dataset(small_root)
    lung = _cls(small_root, "Train", "COVID-19") / "lung masks" / "covid_train_1.png"
    inf = _cls(small_root, "Train", "COVID-19") / "infection masks" / "covid_train_1.png"
    assert f"{lung}: lung mask without an image" in index.problems
    assert f"{inf}: infection mask without an image" in index.problems
    assert len(index.samples) == 8


def test_missing_class_folder_is_reported(small_root):
    shutil.rmtree(_cls(small_root, "Val", "Non-COVID"))
    index = find_dataset(small_root)
    assert any("Non-COVID" in p and "class folder missing" in p for p in index.problems)
    assert not [s for s in index.samples if s.split == "Val" and s.label == "Non-COVID"]
    assert len(index.samples) == 8


def test_missing_requested_split_is_reported(small_root):
    index = find_dataset(small_root, splits=("Test",))
    assert any("Test" in p and "split folder missing" in p for p in index.problems)
    with pytest.raises(CxrsegError, match="no usable"):
        require_samples(index, ("Test",))


def test_missing_root_and_wrong_folder_are_clear_errors(tmp_path):
    with pytest.raises(CxrsegError, match="nowhere.*not found"):
        find_dataset(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CxrsegError, match="file.txt"):
        find_dataset(tmp_path / "file.txt")
    (tmp_path / "unrelated").mkdir()
    with pytest.raises(CxrsegError, match="unrelated"):
        find_dataset(tmp_path / "unrelated")
    with pytest.raises(CxrsegError, match="part"):
        find_dataset(tmp_path / "unrelated", part="bogus")


def test_non_image_files_are_ignored(small_root):
    (_cls(small_root, "Train", "Normal") / "images" / "Thumbs.db").write_bytes(b"junk")
    (_cls(small_root, "Train", "Normal") / "images" / "README.txt").write_text("hello")
    index = find_dataset(small_root)
    assert index.problems == []
    assert len(index.samples) == 9


def test_selecting_splits_and_classes(synthetic_root):
    index = find_dataset(synthetic_root)
    val = index.select(("Val",))
    assert len(val) == 9 and {s.split for s in val} == {"Val"}
    covid_train = index.select(("Train",), ("COVID-19",))
    assert len(covid_train) == 8 and {(s.split, s.label) for s in covid_train} == {("Train", "COVID-19")}
    only = find_dataset(synthetic_root, splits=("Val",), classes=("Normal", "Non-COVID"))
    assert {(s.split, s.label) for s in only.samples} == {("Val", "Normal"), ("Val", "Non-COVID")}
    assert len(only.samples) == 6
    assert only.problems == []


def test_summary_markdown_counts_and_infection_share(synthetic_root):
    text = summary_markdown(find_dataset(synthetic_root))
    # Synthetic COVID-19 images always carry infection; Non-COVID and Normal never do.
    assert "| Train | COVID-19 | 8 | 8 | 8 | 8 (100.0%) |" in text
    assert "| Train | Non-COVID | 8 | 8 | 8 | 0 (0.0%) |" in text
    assert "| Val | Normal | 3 | 3 | 3 | 0 (0.0%) |" in text
    assert "| **all** | | 33 | 33 | 33 | 11 (33.3%) |" in text
    assert "Usable samples: 33" in text
    assert "Problems: none" in text


def test_summary_markdown_lists_problems(small_root):
    (_cls(small_root, "Train", "Normal") / "lung masks" / "Normal_train_0.png").unlink()
    empty_lung = _cls(small_root, "Train", "COVID-19") / "lung masks" / "covid_train_0.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(empty_lung)
    wrong_size = _cls(small_root, "Val", "Normal") / "infection masks" / "Normal_val_0.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(wrong_size)
    text = summary_markdown(find_dataset(small_root))
    assert "Problems (3):" in text
    assert "Normal_train_0.png: no lung mask" in text
    assert f"{empty_lung}: lung mask is empty" in text
    assert str(wrong_size) in text and "16x16" in text
    assert "Usable samples: 8" in text


def test_every_class_is_known(synthetic_root):
    assert {s.label for s in find_dataset(synthetic_root).samples} == set(CLASSES)
