"""TwoStagePipeline: masks at the input's own size, infection inside the lung, backends agree, TTA, veto."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxrseg.data.covidqu import find_dataset
from cxrseg.data.io import XRay, read_xray
from cxrseg.errors import CxrsegError
from cxrseg.inference.pipeline import TwoStagePipeline


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


@pytest.fixture(scope="module")
def val_samples(synthetic_root):
    return find_dataset(synthetic_root).select(("Val",))


@pytest.fixture(scope="module")
def val_xrays(val_samples):
    return [read_xray(s.image) for s in val_samples]


@pytest.fixture(scope="module")
def few_xrays(val_xrays):
    """One image per class (COVID-19, Non-COVID, Normal): enough where all nine add only time."""
    return val_xrays[::3]


def _resized(x: XRay, height: int, width: int) -> XRay:
    img = Image.fromarray(np.round(x.pixels * 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)
    return XRay(np.asarray(img, np.float32) / 255.0, f"{x.source}@{width}x{height}")


def test_lungs_are_found_on_validation_images(pipeline, val_samples, val_xrays):
    for s, seg in zip(val_samples, pipeline.predict(val_xrays)):
        truth = np.asarray(Image.open(s.lung)) > 0
        assert seg.lung.shape == truth.shape
        assert dice(seg.lung, truth) > 0.8, s.image.name


@pytest.mark.parametrize("height, width", [(96, 160), (200, 128), (1000, 1200)])
def test_masks_come_back_at_the_input_size(pipeline, val_xrays, height, width):
    x = _resized(val_xrays[0], height, width)
    seg = pipeline.predict([x])[0]
    assert seg.lung.shape == seg.infection.shape == (height, width)
    assert seg.lung.dtype == bool and seg.infection.dtype == bool
    assert seg.size == (height, width)
    assert seg.figures.lung_area_px == int(seg.lung.sum())
    # the same anatomy, whatever the resolution: compare with the 128x128 result scaled up
    small = pipeline.predict([val_xrays[0]])[0].lung
    scaled = np.asarray(Image.fromarray(small.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)) > 127
    assert dice(seg.lung, scaled) > 0.9


def test_large_mask_is_smooth_not_blocky(pipeline, val_xrays):
    """Probabilities are upsampled before thresholding: the boundary does not follow 128-pixel-grid steps."""
    x = _resized(val_xrays[0], 1024, 1024)
    lung = pipeline.predict([x])[0].lung
    block = 1024 // 128
    # a blocky mask is constant on every 8x8 cell; a smooth one cuts through many cells
    cells = lung.reshape(128, block, 128, block).transpose(0, 2, 1, 3).reshape(128, 128, -1)
    mixed = (cells.any(-1) & ~cells.all(-1)).sum()
    assert mixed > 50


def test_mixed_sizes_in_one_batch(pipeline, val_xrays):
    xs = [_resized(val_xrays[0], 150, 100), val_xrays[1], _resized(val_xrays[2], 64, 300)]
    segs = pipeline.predict(xs)
    assert [s.size for s in segs] == [(150, 100), (128, 128), (64, 300)]
    assert [s.source for s in segs] == [x.source for x in xs]
    assert pipeline.predict([]) == []


def test_infection_is_inside_the_lung(pipeline, few_xrays, monkeypatch):
    monkeypatch.setattr(pipeline, "image_threshold", None)  # no veto: let every image show infection
    xs = few_xrays + [_resized(few_xrays[0], 300, 420)]
    segs = pipeline.predict(xs)
    assert sum(int(s.infection.sum()) for s in segs) > 0  # else this test proves nothing
    for seg in segs:
        assert not (seg.infection & ~seg.lung).any()
        assert seg.figures.infection_area_px == int(seg.infection.sum())


def test_predict_one_accepts_path_array_and_xray(pipeline, val_samples, val_xrays):
    from_path = pipeline.predict_one(val_samples[0].image)
    from_array = pipeline.predict_one(val_xrays[0].pixels)
    from_xray = pipeline.predict_one(val_xrays[0])
    assert from_path.source == str(val_samples[0].image)
    np.testing.assert_array_equal(from_path.lung, from_array.lung)
    np.testing.assert_array_equal(from_path.lung, from_xray.lung)
    np.testing.assert_array_equal(from_path.infection, from_xray.infection)


def test_image_level_veto_empties_infection(pipeline, few_xrays, monkeypatch):
    monkeypatch.setattr(pipeline, "image_threshold", None)
    unvetoed = pipeline.predict(few_xrays)
    assert any(s.infection.any() for s in unvetoed)
    monkeypatch.setattr(pipeline, "image_threshold", 1.01)
    vetoed = pipeline.predict(few_xrays)
    for before, after in zip(unvetoed, vetoed):
        assert not after.infection.any()
        assert after.figures.infection_area_px == 0 and after.figures.total_grade == 0
        assert after.infection_probability == pytest.approx(before.infection_probability)  # still reported
        np.testing.assert_array_equal(after.lung, before.lung)  # stage 1 is untouched


def test_classifier_probability_is_reported(pipeline, few_xrays):
    segs = pipeline.predict(few_xrays)
    probs = [s.infection_probability for s in segs]
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probs)
    assert all(s.uncertainty is None and s.uncertainty_score is None for s in segs)  # only with TTA


def test_tta_gives_uncertainty_map_and_score(pipeline, val_xrays, monkeypatch):
    monkeypatch.setattr(pipeline, "tta", True)
    xs = [val_xrays[0], _resized(val_xrays[3], 100, 180)]
    segs = pipeline.predict(xs)
    for x, seg in zip(xs, segs):
        assert seg.uncertainty is not None
        assert seg.uncertainty.shape == x.size
        assert seg.uncertainty.min() >= 0.0 and seg.uncertainty.max() <= 0.5 + 1e-6
        assert isinstance(seg.uncertainty_score, float) and seg.uncertainty_score >= 0.0
        assert seg.uncertainty_score == pytest.approx(float(seg.uncertainty[seg.lung].mean()), rel=1e-5)
        assert seg.row()["uncertainty"] is not None
    assert max(float(s.uncertainty.max()) for s in segs) > 0  # the model is not exactly flip-symmetric
    # TTA averages the flipped pass in: the lungs barely move
    plain = pipeline.predict([val_xrays[0]])[0]
    assert dice(plain.lung, segs[0].lung) > 0.95


def test_tta_on_a_symmetric_model_input_is_consistent(pipeline, monkeypatch):
    """An image and its mirror give mirrored masks under TTA (flip averaging makes the model symmetric)."""
    monkeypatch.setattr(pipeline, "tta", True)
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(0.5, 0.2, (128, 128)), 0, 1).astype(np.float32)
    a, b = pipeline.predict([XRay(img, "a"), XRay(np.ascontiguousarray(img[:, ::-1]), "b")])
    np.testing.assert_allclose(a.uncertainty, b.uncertainty[:, ::-1], atol=1e-5)
    assert dice(a.lung, b.lung[:, ::-1]) > 0.99


@pytest.fixture(scope="module")
def onnx_pipeline(tiny_models):
    return TwoStagePipeline.from_pretrained(*tiny_models, backend="onnx")


def test_torch_and_onnx_backends_agree(pipeline, onnx_pipeline, val_xrays):
    assert (pipeline.backend_name, onnx_pipeline.backend_name) == ("torch", "onnx")
    xs = val_xrays[::2] + [_resized(val_xrays[0], 240, 300)]
    for t, o in zip(pipeline.predict(xs), onnx_pipeline.predict(xs)):
        assert dice(t.lung, o.lung) >= 0.999
        assert dice(t.infection, o.infection) >= 0.999
        assert t.infection_probability == pytest.approx(o.infection_probability, abs=1e-4)


def test_unknown_backend_and_missing_models(tiny_models, tmp_path):
    with pytest.raises(CxrsegError, match="backend"):
        TwoStagePipeline.from_pretrained(*tiny_models, backend="tensorflow")
    with pytest.raises(CxrsegError, match="nope.safetensors"):
        TwoStagePipeline.from_pretrained(tmp_path / "nope.safetensors", tiny_models[1], backend="torch")


def test_veto_keeps_the_opacity_and_says_so(pipeline, few_xrays, monkeypatch):
    """The two claims stay apart: a vetoed film keeps its opacity mask and figures, with a note naming the
    judgement and its probability, and its COVID-19 infection and grades are empty."""
    monkeypatch.setattr(pipeline, "image_threshold", None)
    plain = pipeline.predict(few_xrays)
    monkeypatch.setattr(pipeline, "image_threshold", 1.01)
    vetoed = pipeline.predict(few_xrays)
    assert any(s.opacity.any() for s in vetoed)
    for before, after in zip(plain, vetoed):
        np.testing.assert_array_equal(after.opacity, before.infection)
        assert after.opacity_figures == before.figures
        row = after.row()
        assert row["covid_like"] == "no" and row["covid_status"] == "unknown"
        assert row["opacity_pct"] == before.figures.infected_pct and row["infected_pct"] == 0
        if after.opacity.any():
            assert after.vetoed and "not COVID-19-like" in after.note and "not validated outside" in after.note
            assert f"{after.infection_probability:.2f}" in after.note
        else:
            assert after.note == ""


def test_confirmed_positive_skips_the_veto(pipeline, few_xrays, monkeypatch):
    monkeypatch.setattr(pipeline, "image_threshold", None)
    plain = pipeline.predict(few_xrays)
    monkeypatch.setattr(pipeline, "image_threshold", 1.01)
    positive = pipeline.predict(few_xrays, covid_status="positive")
    for before, after in zip(plain, positive):
        np.testing.assert_array_equal(after.infection, before.infection)
        np.testing.assert_array_equal(after.infection, after.opacity)
        assert after.figures == before.figures and "not COVID-19-like" not in after.note
        assert after.row()["covid_like"] == "confirmed" and after.row()["covid_status"] == "positive"
    assert pipeline.covid_status == "unknown"  # a per-call choice does not stick
    with pytest.raises(CxrsegError, match="COVID-19 status"):
        pipeline.predict(few_xrays, covid_status="maybe")


def test_flat_borders_are_cut_before_the_models_when_asked(pipeline, val_xrays):
    """A film padded with black bands: with ``crop_borders`` the unpadded film's masks and lung density, in place,
    nothing in the bands; without it (the default) the models see the bands and the masks still come back whole."""
    x = val_xrays[0]
    h, w = x.size
    padded = np.zeros((h + 60, w + 30), np.float32)
    padded[40 : 40 + h, 10 : 10 + w] = x.pixels
    plain = pipeline.predict([x])[0]
    uncut = pipeline.predict([XRay(padded, "padded")])[0]
    assert pipeline.crop_borders is False  # the default
    assert uncut.lung.shape == padded.shape
    pipeline.crop_borders = True
    try:
        seg = pipeline.predict([XRay(padded, "padded")])[0]
    finally:
        pipeline.crop_borders = False
    assert seg.lung.shape == padded.shape
    assert not seg.lung[:40].any() and not seg.lung[:, :10].any() and not seg.lung[40 + h :].any()
    assert dice(seg.lung[40 : 40 + h, 10 : 10 + w], plain.lung) > 0.98
    assert seg.figures.right_lung_density == pytest.approx(plain.figures.right_lung_density, abs=0.01)
    assert seg.figures.left_lung_density == pytest.approx(plain.figures.left_lung_density, abs=0.01)


def test_a_smaller_stage_1_runs_at_its_own_size_on_the_256_grid(pipeline, val_xrays):
    """A stage 2 that crops the lungs' box crops it from the films' own 256 grid (as in training); a stage 1
    trained smaller (here 128) runs at its own size and its probabilities are resized to that grid."""
    seen: list[tuple[int, ...]] = []

    class Spy:
        name = pipeline.lung_backend.name

        def __call__(self, x):
            seen.append(x.shape)
            return pipeline.lung_backend(x)

    card = {**pipeline.infection_card, "architecture": {**pipeline.infection_card["architecture"], "roi_margin": 0.08}}
    cropping = TwoStagePipeline(Spy(), pipeline.infection_backend, pipeline.lung_card, card)
    assert (cropping.size, cropping.lung_size, pipeline.size) == (256, 128, 128)
    images = np.stack([_resized(x, 256, 256).pixels for x in val_xrays[:3]])
    out = cropping.run_model_size(images)
    assert all(shape[-2:] == (128, 128) for shape in seen) and out.lung.shape == (3, 256, 256)
    native = pipeline.predict(val_xrays[:3])
    for lung, seg in zip(out.lung, native):
        small = np.asarray(Image.fromarray(lung.astype(np.uint8) * 255).resize(seg.lung.shape[::-1])) > 127
        assert dice(small, seg.lung) > 0.95
