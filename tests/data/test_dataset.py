"""In-memory arrays and the training Dataset: shapes, bad masks, paired augmentation, the infection ROI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cxrseg.data.covidqu import Sample, find_dataset
from cxrseg.data.dataset import ArrayBundle, SegmentationDataset, load_arrays
from cxrseg.errors import InputFileError


@pytest.fixture(scope="module")
def val_bundle(synthetic_root):
    return load_arrays(find_dataset(synthetic_root).select(("Val",)), size=64)


def test_load_arrays_shapes_and_dtypes(synthetic_root, val_bundle):
    b = val_bundle
    assert len(b) == 9
    assert b.images.shape == (9, 64, 64) and b.images.dtype == np.uint8
    assert b.lungs.shape == (9, 64, 64) and b.lungs.dtype == bool
    assert b.infections.shape == (9, 64, 64) and b.infections.dtype == bool
    assert len(b.labels) == len(b.names) == 9
    assert set(b.labels) == {"COVID-19", "Non-COVID", "Normal"}
    assert all(b.lungs.reshape(9, -1).any(axis=1))  # every image has lungs
    # infection only in COVID-19 phantoms, and never outside the lungs (beyond resize rounding)
    positive = b.has_infection()
    assert list(positive) == [label == "COVID-19" for label in b.labels]
    assert (b.infections & ~b.lungs).sum() <= 0.05 * b.infections.sum()


def test_load_arrays_keeps_the_native_size(synthetic_root):
    samples = find_dataset(synthetic_root).select(("Val",), ("Normal",))
    b = load_arrays(samples, size=128)
    np.testing.assert_array_equal(b.images[0], np.asarray(Image.open(samples[0].image)))
    np.testing.assert_array_equal(b.lungs[0], np.asarray(Image.open(samples[0].lung)) > 0)


def test_lung_part_has_no_infection_arrays(tmp_path):
    from cxrseg.data.synthetic import make_synthetic_covidqu

    root = make_synthetic_covidqu(tmp_path / "c", {"Train": 1}, size=32, lung_part=True)
    b = load_arrays(find_dataset(root, part="lung").samples, size=32)
    assert b.infections is None
    assert not b.has_infection().any()
    with pytest.raises(ValueError, match="infection"):
        SegmentationDataset(b, target="infection")


def _sample(tmp_path, image_shape, lung_shape, inf_shape=None) -> Sample:
    img = tmp_path / "images" / "x.png"
    lung = tmp_path / "lung masks" / "x.png"
    for p in (img, lung):
        p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(image_shape, 100, np.uint8)).save(img)
    Image.fromarray(np.full(lung_shape, 255, np.uint8)).save(lung)
    inf = None
    if inf_shape is not None:
        inf = tmp_path / "infection masks" / "x.png"
        inf.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros(inf_shape, np.uint8)).save(inf)
    return Sample(img, lung, inf, "Train", "Normal")


def test_mask_size_mismatch_names_the_mask(tmp_path):
    s = _sample(tmp_path, (40, 40), (40, 30))
    with pytest.raises(InputFileError) as err:
        load_arrays([s], size=32)
    assert err.value.path == s.lung
    assert str(s.lung) in str(err.value) and "30x40" in str(err.value)


def test_infection_mask_size_mismatch_names_the_mask(tmp_path):
    s = _sample(tmp_path, (40, 40), (40, 40), inf_shape=(20, 20))
    with pytest.raises(InputFileError) as err:
        load_arrays([s], size=32)
    assert err.value.path == s.infection


def test_unreadable_image_names_the_image(tmp_path):
    s = _sample(tmp_path, (40, 40), (40, 40))
    s.image.write_bytes(b"not a png")
    with pytest.raises(InputFileError, match="x.png"):
        load_arrays([s], size=32)


def test_dataset_items_are_unit_range_tensors(val_bundle):
    for target in ("lung", "infection"):
        ds = SegmentationDataset(val_bundle, target=target, augment=True, seed=1)
        assert len(ds) == 9
        for i in range(len(ds)):
            item = ds[i]
            assert item["image"].shape == item["mask"].shape == item["roi"].shape == (1, 64, 64)
            assert item["image"].dtype == torch.float32
            assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
            assert set(torch.unique(item["mask"]).tolist()) <= {0.0, 1.0}
            assert item["has_infection"].item() == float(val_bundle.labels[i] == "COVID-19")


def test_without_augmentation_items_are_the_arrays(val_bundle):
    ds = SegmentationDataset(val_bundle, target="lung", augment=False)
    item = ds[4]
    np.testing.assert_allclose(item["image"][0].numpy(), val_bundle.images[4] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(item["mask"][0].numpy() > 0.5, val_bundle.lungs[4])


def _self_describing_bundle(n: int = 12, size: int = 64) -> ArrayBundle:
    """Images equal to their masks (255 inside, 0 outside), with asymmetric shapes so flips and shifts show."""
    rng = np.random.default_rng(0)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        y, x = rng.integers(8, size // 2, 2)
        masks[i, y : y + rng.integers(10, 24), x : x + rng.integers(6, 20)] = True
        masks[i, 4:10, 4:30] = True  # a bar near the top-left corner
    return ArrayBundle(masks.astype(np.uint8) * 255, masks, masks.copy(), ["COVID-19"] * n, [str(i) for i in range(n)])


def test_augmentation_moves_image_and_mask_together():
    bundle = _self_describing_bundle()
    ds = SegmentationDataset(bundle, target="lung", augment=True, seed=3)
    moved = 0
    for epoch in range(3):
        for i in range(len(ds)):
            item = ds[i]
            img, mask = item["image"][0].numpy() > 0.5, item["mask"][0].numpy() > 0.5
            if not mask.any():
                continue
            iou = (img & mask).sum() / (img | mask).sum()
            assert iou > 0.9, f"image and mask disagree after augmentation (IoU {iou:.3f})"
            moved += not np.array_equal(mask, bundle.lungs[i])
    assert moved >= 10  # augmentation did change the geometry, so the agreement above means something


def test_infection_target_input_is_the_lung_roi(val_bundle):
    ds = SegmentationDataset(val_bundle, target="infection", augment=True, seed=2)
    for i in range(len(ds)):
        item = ds[i]
        outside = item["roi"][0] == 0
        assert outside.any() and (~outside).any()
        assert torch.all(item["image"][0][outside] == 0)
        assert item["image"][0][~outside].mean() > 0.05  # the lung itself is still visible
    plain = SegmentationDataset(val_bundle, target="infection", augment=False)
    item = plain[0]
    expected = val_bundle.images[0] / 255.0 * val_bundle.lungs[0]
    np.testing.assert_allclose(item["image"][0].numpy(), expected, atol=1e-6)


def test_infection_target_uses_given_roi(val_bundle):
    roi = np.zeros_like(val_bundle.lungs)
    roi[:, :, :32] = True  # left half only
    ds = SegmentationDataset(val_bundle, target="infection", roi=roi, augment=False)
    item = ds[0]
    assert torch.all(item["image"][0, :, 32:] == 0)
    np.testing.assert_array_equal(item["roi"][0].numpy() > 0.5, roi[0])
    np.testing.assert_array_equal(item["mask"][0].numpy() > 0.5, val_bundle.infections[0])


def test_bad_target_is_refused(val_bundle):
    with pytest.raises(ValueError):
        SegmentationDataset(val_bundle, target="heart")
