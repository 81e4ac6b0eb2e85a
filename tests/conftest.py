"""Shared fixtures: a tiny synthetic COVID-QU-Ex dataset and tiny two-stage models trained on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from cxrseg.data.synthetic import make_synthetic_covidqu
from cxrseg.models.factory import ModelConfig
from cxrseg.training import TrainConfig, fit

torch.set_num_threads(2)

TINY = (8, 16, 32, 64)
SIZE = 128


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A COVID-QU-Ex-shaped folder: 8 Train and 3 Val images per class, 128x128 phantoms."""
    return make_synthetic_covidqu(tmp_path_factory.mktemp("covidqu"), {"Train": 8, "Val": 3}, size=SIZE, seed=1)


@pytest.fixture(scope="session")
def tiny_models(synthetic_root, tmp_path_factory) -> tuple[Path, Path]:
    """(lung, infection) weights of tiny U-Nets trained for a few epochs on the synthetic data."""
    runs = tmp_path_factory.mktemp("runs")
    lung = fit(
        TrainConfig(stage="lung", data=synthetic_root, out=runs / "lung", epochs=6, batch_size=4, lr=5e-3,
                    size=SIZE, model=ModelConfig(channels=TINY), progress=False)
    )
    infection = fit(
        TrainConfig(stage="infection", data=synthetic_root, out=runs / "infection", epochs=6, batch_size=4, lr=5e-3,
                    size=SIZE, model=ModelConfig(channels=TINY, classifier=True), lung_model=lung.best_weights,
                    progress=False)
    )
    return lung.best_weights, infection.best_weights


@pytest.fixture(scope="session")
def pipeline(tiny_models):
    from cxrseg.inference.pipeline import TwoStagePipeline

    return TwoStagePipeline.from_pretrained(*tiny_models, backend="torch")


@pytest.fixture()
def own_models(tiny_models, tmp_path):
    """Copies of the tiny models, so writing thresholds into a card leaves the session's models alone."""
    copies = []
    for weights in tiny_models:
        for suffix in (".safetensors", ".json"):
            shutil.copy(weights.with_suffix(suffix), tmp_path / (weights.parent.name + suffix))
        copies.append(tmp_path / (weights.parent.name + ".safetensors"))
    return copies


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: needs headless Chromium; skipped without it, failed under CXRSEG_REQUIRE_BROWSER=1")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Browser tests without a browser: skipped, or failed where CI requires one (tests/_browser.py)."""
    if item.get_closest_marker("browser") is not None:
        import _browser

        _browser.check_browser(_browser.browser_missing())
