"""Batch augmentation on the device: the same normalisation, crop and shifts as the per-sample path, and fit() with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrseg.data.dataset import ArrayBundle, InputSpec
from cxrseg.data.normalize import equalize
from cxrseg.data.roi import crop_resize, lung_box
from cxrseg.data.shifts import jpeg
from cxrseg.data.synthetic import make_synthetic_covidqu
from cxrseg.errors import CxrsegError
from cxrseg.models.factory import ModelConfig
from cxrseg.training import TrainConfig, fit
from cxrseg.training.batch_augment import (
    N_SHIFT_KINDS,
    BatchAugment,
    DeviceBatches,
    black_borders,
    equalize_batch,
    gaussian_blur,
    jpeg_like,
)


def _films(n: int = 6, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smooth grey films with two dark 'lungs' (a box each) and a bright 'lesion' inside the first."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    images, lungs, lesions = [], [], []
    for _ in range(n):
        lung = np.zeros((size, size), bool)
        top, bottom = rng.integers(8, 16), rng.integers(44, 56)
        lung[top:bottom, 8:28] = lung[top:bottom, 36:56] = True
        lesion = np.zeros_like(lung)
        lesion[top + 4 : top + 14, 12:22] = True
        img = 0.6 + 0.2 * yy - 0.35 * lung + 0.25 * lesion + 0.03 * rng.standard_normal((size, size)) * xx
        images.append(np.clip(img * 255, 0, 255).astype(np.uint8))
        lungs.append(lung)
        lesions.append(lesion)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(lesions)), torch.from_numpy(np.stack(lungs))


def test_equalize_batch_is_the_inference_normalisation():
    x = torch.rand(3, 1, 40, 50)
    want = np.stack([equalize(im) for im in x[:, 0].numpy()])
    np.testing.assert_allclose(equalize_batch(x)[:, 0].numpy(), want, atol=1e-6)


def test_jpeg_like_matches_pillow():
    images, _, _ = _films(3)
    x = images[:, None].float() / 255
    for quality in (20, 60):
        ours = jpeg_like(x, torch.full((3,), float(quality)))[:, 0].numpy()
        pil = np.stack([jpeg(im, quality) for im in x[:, 0].numpy()])
        assert np.abs(ours - pil).mean() < 0.2 * np.abs(pil - x[:, 0].numpy()).mean()


def test_blur_and_borders():
    x = torch.rand(2, 1, 32, 32)
    blurred = gaussian_blur(x, torch.tensor([0.5, 2.0]))
    assert blurred.shape == x.shape
    assert blurred[1].std() < blurred[0].std() < x[0].std()  # stronger sigma, smoother
    out = black_borders(torch.ones(1, 1, 20, 20), torch.tensor([[0.1, 0.0, 0.2, 0.0]]))
    assert out[0, 0, :2].sum() == 0 and out[0, 0, :, :4].sum() == 0 and out[0, 0, 2:, 4:].min() == 1


def test_without_randomness_the_crop_is_the_per_sample_one():
    """Flip, affine, jitter and shifts off: stage 2's input equals crop_resize of the equalised film and lungs."""
    images, lesions, lungs = _films()
    spec = InputSpec(norm="equalize", roi_input="image_and_mask", roi_margin=0.08, size=48)
    out = BatchAugment(spec, "infection", flip_prob=0, affine_prob=0, jitter_prob=0)(images, lesions, lungs)
    for i in range(len(images)):
        box = lung_box(lungs[i].numpy(), 0.08)
        x = torch.from_numpy(equalize(images[i].numpy().astype(np.float32) / 255))[None]
        image = crop_resize(x, box, 48)[0]
        lung = crop_resize(lungs[i][None].float(), box, 48, "nearest")[0]
        assert (out["image"][i, 0] - image).abs().mean() < 1e-3
        assert (out["image"][i, 1] != lung).float().mean() < 0.002
        assert torch.equal(out["roi"][i, 0], out["image"][i, 1])


@pytest.mark.parametrize("kind", range(N_SHIFT_KINDS))
def test_each_shift_changes_the_film_and_keeps_its_range(kind):
    images, _, _ = _films(4)
    aug = BatchAugment(InputSpec(), shifts=True)
    aug.reseed(kind, torch.device("cpu"))
    x = images[:, None].float() / 255
    y = aug._shift(kind, x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert (y - x).abs().max() > 0.02


def test_augmented_batches_keep_masks_binary_and_inside_the_lungs():
    images, lesions, lungs = _films(8)
    spec = InputSpec(norm="equalize", roi_input="masked", roi_margin=0.08, size=32)
    out = BatchAugment(spec, "infection", shifts=True, seed=3)(images, lesions, lungs)
    assert out["image"].shape == (8, 1, 32, 32) and out["mask"].shape == out["roi"].shape == (8, 1, 32, 32)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0} and set(out["roi"].unique().tolist()) <= {0.0, 1.0}
    assert (out["image"] * (1 - out["roi"])).abs().max() == 0  # 'masked': nothing outside the lungs
    assert out["mask"].sum() > 0


def test_device_batches_shuffle_by_epoch_and_shard_by_rank():
    images, lesions, lungs = _films(10)
    bundle = ArrayBundle(images.numpy(), lungs.numpy(), lesions.numpy(), ["COVID-19"] * 10, [str(i) for i in range(10)])
    spec = InputSpec(size=32)

    def seen(rank: int, epoch: int) -> list[int]:
        b = DeviceBatches(bundle, "lung", None, spec, 2, torch.device("cpu"), seed=1, rank=rank, world_size=2)
        b.set_epoch(epoch)
        return b._indices().tolist()

    assert sorted(seen(0, 0) + seen(1, 0)) == list(range(10))  # the ranks split one permutation
    assert seen(0, 0) != seen(0, 1)
    batches = DeviceBatches(bundle, "lung", None, spec, 4, torch.device("cpu"), seed=1)
    items = list(batches)
    assert len(items) == len(batches) == 2  # 10 images, batch 4: the last partial batch is dropped
    assert items[0]["image"].shape == (4, 1, 32, 32) and items[0]["has_infection"].tolist() == [1.0] * 4
    first = [it["image"] for it in batches]
    assert all(torch.equal(a, b) for a, b in zip(first, [it["image"] for it in batches]))  # same epoch, same draw


def test_fit_with_batch_augment(tmp_path):
    root = make_synthetic_covidqu(tmp_path / "data", {"Train": 2, "Val": 1}, size=64, seed=5)
    model = ModelConfig(channels=(4, 8, 16), num_res_units=1, classifier=True, input_norm="equalize",
                        roi_input="image_and_mask", roi_margin=0.08)
    cfg = TrainConfig(stage="infection", data=root, out=tmp_path / "run", epochs=2, batch_size=3, size=48,
                      model=model, roi="ground_truth", shift_augment=True, batch_augment=True, framing_zoom=1.3,
                      progress=False)
    result = fit(cfg)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert all(np.isfinite(row["loss"]) for row in result.history)
    assert result.best_weights.is_file()


def test_framing_zoom_is_checked_and_needs_the_batch_augmentation(tmp_path):
    with pytest.raises(CxrsegError, match="--batch-augment"):
        TrainConfig(stage="lung", data=tmp_path, out=tmp_path / "run", framing_zoom=1.3)
    with pytest.raises(CxrsegError, match="at least 1"):
        TrainConfig(stage="lung", data=tmp_path, out=tmp_path / "run", batch_augment=True, framing_zoom=0.5)


def test_quality_losses_go_to_the_films_without_covid_only():
    images, lesions, lungs = _films(6)
    augment = BatchAugment(InputSpec(size=64), seed=2)
    augment.reseed(2, torch.device("cpu"))
    x = images[:, None].float() / 255.0
    out = augment.degrade(x, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]))
    assert torch.equal(out[3:], x[3:]) and not any(torch.equal(out[i], x[i]) for i in range(3))
    assert out.min() >= 0 and out.max() <= 1

    lesions[3:] = False  # three films without infection
    labels = ["COVID-19"] * 3 + ["Normal"] * 3
    bundle = ArrayBundle(images.numpy(), lungs.numpy(), lesions.numpy(), labels, [str(i) for i in range(6)])
    batches = DeviceBatches(bundle, "lung", None, InputSpec(size=32), 6, torch.device("cpu"), seed=1,
                            degrade_negatives=0.5)
    chances: list[torch.Tensor] = []
    batches.augment.degrade = lambda x, chance: (chances.append(chance), x)[1]
    item = next(iter(batches))
    assert torch.equal(chances[0], 0.5 * (1 - item["has_infection"]))  # 0.5 for the negatives, 0 for COVID-19
    plain = DeviceBatches(bundle, "lung", None, InputSpec(size=32), 6, torch.device("cpu"), seed=1)
    plain.augment.degrade = lambda x, chance: pytest.fail("no quality loss by default")
    next(iter(plain))


def test_framing_zoom_widens_the_lungs_size_spread():
    """framing_zoom draws an isotropic zoom in or out on top of the small affine: lungs' area varies far more."""
    images, lesions, lungs = _films(1, size=64)
    images, lesions, lungs = (t.repeat(64, 1, 1) for t in (images, lesions, lungs))

    def areas(framing_zoom: float) -> torch.Tensor:
        aug = BatchAugment(InputSpec(size=64), "lung", seed=5, flip_prob=0, affine_prob=1, jitter_prob=0,
                           framing_zoom=framing_zoom)
        aug.reseed(5, torch.device("cpu"))
        return aug(images, lungs, lungs)["mask"].sum((1, 2, 3)) / lungs[0].sum()

    plain, zoomed = areas(1.0), areas(1.5)
    assert 0.7 < plain.min() and plain.max() < 1.35  # scale 0.9-1.1 per axis
    assert zoomed.min() < 0.6 and zoomed.max() > 1.6  # up to 1.5x in or out on each axis
    with pytest.raises(ValueError, match="framing_zoom"):
        BatchAugment(InputSpec(), framing_zoom=0.8)


def test_tighter_framing_goes_to_the_films_without_covid_only():
    """tighten_negatives zooms in on half the negatives (before shifts and normalisation); COVID-19 films keep
    their framing, and the masks follow the film."""
    images, lesions, lungs = _films(8, size=64)
    lesions[4:] = False
    labels = ["COVID-19"] * 4 + ["Normal"] * 4
    bundle = ArrayBundle(images.numpy(), lungs.numpy(), lesions.numpy(), labels, [str(i) for i in range(8)])
    seen: list[torch.Tensor] = []
    batches = DeviceBatches(bundle, "lung", None, InputSpec(size=64), 8, torch.device("cpu"), seed=1,
                            tighten_negatives=1.5)
    real = batches.augment.frame_tighter
    batches.augment.frame_tighter = lambda x, m, r, most: (seen.append(most), real(x, m, r, most))[1]
    item = next(iter(batches))
    most = seen[0]
    assert torch.all(most[item["has_infection"] > 0] == 1) and set(most.tolist()) <= {1.0, 1.5}

    augment = BatchAugment(InputSpec(size=64), seed=2)
    augment.reseed(2, torch.device("cpu"))
    x = images[:, None].float() / 255.0
    zx, zm, zr = augment.frame_tighter(x, lungs, lungs, torch.tensor([1.0] * 4 + [1.5] * 4))
    assert torch.allclose(zx[:4], x[:4], atol=1e-5) and torch.equal(zm[:4], lungs[:4])  # zoom 1: unchanged
    assert (zm[4:].sum((1, 2)) > lungs[4:].sum((1, 2))).all()  # zoomed in: the lungs fill more of the frame
    assert zm.dtype == lungs.dtype and torch.equal(zm, zr)
    plain = DeviceBatches(bundle, "lung", None, InputSpec(size=64), 8, torch.device("cpu"), seed=1)
    plain.augment.frame_tighter = lambda *a: pytest.fail("no framing change by default")
    next(iter(plain))
