"""The page in a real browser: the real server on a loopback port, driven by headless Chromium.

Skipped, with the reason, where Chromium, chromedriver or selenium is missing
(apt-get install -y chromium chromium-driver; pip install selenium).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from cxrseg.data.synthetic import phantom
from cxrseg.server import ServerSettings, create_app

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_serve.py"


def load_script():
    """The screenshot script as a module: the test drives the browser with the same helpers."""
    spec = importlib.util.spec_from_file_location("screenshot_serve", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shot = load_script()
pytestmark = pytest.mark.skipif(shot.chromium_missing() is not None, reason=f"no browser: {shot.chromium_missing()}")


def shown_matches(text: str, fmt: str, value) -> bool:
    """Does the page's text for one figure show the JSON value (to the precision the page rounds to)?"""
    if value is None:
        return text == "—"
    if fmt in ("pct", "probability"):
        number = float(text.removesuffix("%").strip())
        expected = 100 * value if fmt == "probability" else value
        return math.isclose(number, expected, abs_tol=0.05 + 1e-9)
    return text == str(value)


@pytest.fixture(scope="module")
def server(pipeline):
    with shot.serve(create_app(ServerSettings(), pipeline=pipeline)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with shot.chromium(width=1200, height=900) as driver:
        yield driver


def test_upload_shows_overlay_and_the_apis_figures(server, browser, tmp_path):
    image = tmp_path / "chest.png"
    Image.fromarray(phantom("COVID-19", 256, np.random.default_rng(3))[0]).save(image)

    assert shot.upload(browser, server, image) == "done", shot.status_text(browser)
    api = httpx.post(server + "/api/v1/segment", files={"file": ("chest.png", image.read_bytes(), "image/png")})
    figures = api.json()["figures"]

    shown = shot.shown_figures(browser)
    assert {"right_infected_pct", "left_infected_pct", "right_grade", "left_grade", "total_grade"} <= set(shown)
    for field, (text, fmt) in shown.items():
        assert shown_matches(text, fmt, figures[field]), f"{field}: page shows {text!r}, API says {figures[field]!r}"

    overlay_width = browser.execute_script("return document.getElementById('overlay').naturalWidth")
    assert overlay_width == 256
    for link, name in [("download-lung", "chest_lung.png"), ("download-infection", "chest_infection.png"),
                       ("download-overlay", "chest_overlay.png")]:
        element = browser.find_element("id", link)
        assert element.get_attribute("href").startswith("blob:")
        assert element.get_attribute("download") == name

    out = shot.save_screenshot(browser, tmp_path / "serve.png")
    with Image.open(out) as png:
        assert png.width >= 1000 and png.height >= 600
    print(f"screenshot: {out}")


def test_bad_file_shows_the_servers_message(server, browser, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an X-ray at all\n")
    assert shot.upload(browser, server, bad) == "error"
    assert "not an image" in shot.status_text(browser)
