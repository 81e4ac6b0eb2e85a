"""The page and /docs in a real browser: the real server on a loopback port, driven by headless Chromium.

Skipped, with the reason, where Chromium, chromedriver or selenium is missing
(apt-get install -y chromium chromium-driver; pip install selenium); failed instead under CXRSEG_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import json
import math
from urllib.parse import urlsplit

import httpx2 as httpx
import numpy as np
import pytest
from _scripts import load_script
from PIL import Image

from cxrseg.data.synthetic import phantom
from cxrseg.server import ServerSettings, create_app

KEY = "s3cret-key-for-the-browser-test"


shot = load_script("scripts/screenshot_serve.py")  # the test drives the browser with its helpers
pytestmark = pytest.mark.browser  # skipped without Chromium, or failed where required (tests/_browser.py)


def shown_matches(text: str, fmt: str, value) -> bool:
    """Does the page's text for one figure show the JSON value (to the precision the page rounds to)?"""
    if value is None:
        return text == "—"
    if fmt in ("pct", "probability"):
        number = float(text.removesuffix("%").strip())
        expected = 100 * value if fmt == "probability" else value
        return math.isclose(number, expected, abs_tol=0.05 + 1e-9)
    if fmt in ("decimal1", "decimal3"):
        return text == f"{value:.{fmt[-1]}f}"
    return text == str(value)


@pytest.fixture(scope="module")
def server(pipeline):
    with shot.serve(create_app(ServerSettings(), pipeline=pipeline)) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_server(pipeline):
    with shot.serve(create_app(ServerSettings(api_key=KEY), pipeline=pipeline)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with shot.chromium(width=1200, height=900) as driver:
        yield driver


# Every non-loopback request goes to a proxy on a closed loopback port (so fails) and host names other than localhost
# do not resolve; Chromium reaches loopback itself without the proxy.
OFFLINE_FLAGS = ("--proxy-server=http://127.0.0.1:9",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1")


def requested_urls(driver) -> list[str]:
    """Every URL the browser requested since the last call (from Chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


BROWSER_INTERNAL = ("data", "blob", "about", "chrome", "chrome-untrusted", "chrome-extension", "devtools")


def is_local(url: str, base: str) -> bool:
    """Is ``url`` served by the server under test, or by the browser itself (its own pages, data/blob URLs)?"""
    parts = urlsplit(url)
    return parts.scheme in BROWSER_INTERNAL or f"{parts.scheme}://{parts.netloc}" == base


def test_upload_shows_overlay_and_the_apis_figures(server, browser, tmp_path):
    image = tmp_path / "chest.png"
    Image.fromarray(phantom("COVID-19", 256, np.random.default_rng(3))[0]).save(image)

    assert shot.upload(browser, server, image) == "done", shot.status_text(browser)
    api = httpx.post(server + "/api/v1/segment", files={"file": ("chest.png", image.read_bytes(), "image/png")})
    figures = api.json()["figures"]

    shown = shot.shown_figures(browser)
    assert {"right_infected_pct", "left_infected_pct", "right_grade", "left_grade", "total_grade",
            "right_lung_density", "left_lung_density", "severity_score"} <= set(shown)
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


# -- /docs with the network blocked ---------------------------------------------------------------------------
def test_docs_render_with_no_network_and_nothing_leaves_the_machine(keyed_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with shot.chromium(extra_flags=OFFLINE_FLAGS, log_requests=True) as driver:
        driver.get(keyed_server + "/docs")
        operations = lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock")  # noqa: E731
        WebDriverWait(driver, 60).until(lambda d: len(operations(d)) >= 3)
        paths = {el.get_attribute("data-path") or el.text
                 for el in driver.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock-summary-path")}
        assert {"/api/v1/segment", "/api/v1/health", "/api/v1/models"} <= paths
        assert "cxrseg" in driver.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
        assert driver.find_elements(By.CSS_SELECTOR, ".swagger-ui .btn.authorize")  # the bearer key can be entered
        urls = requested_urls(driver)
        assert keyed_server + "/docs-assets/swagger-ui-bundle.js" in urls
        assert keyed_server + "/openapi.json" in urls
        assert [u for u in urls if not is_local(u, keyed_server)] == []

        # The blocking is real: the same browser cannot fetch from outside.
        outcome = driver.execute_async_script(
            "const done = arguments[0];"
            "fetch('http://example.com/', {mode: 'no-cors'}).then(() => done('reached'), () => done('blocked'));")
        assert outcome == "blocked"


# -- the API key on the page --------------------------------------------------------------------------------
def enter_key(driver, key: str) -> None:
    field = driver.find_element("id", "key-input")
    field.clear()
    field.send_keys(key)
    driver.find_element("id", "key-submit").click()


def test_page_asks_for_the_key_once_and_keeps_it_for_the_tab(keyed_server, browser, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    dialog_open = lambda d: d.execute_script("return document.getElementById('key-dialog').open")  # noqa: E731
    message = lambda d: d.find_element("id", "key-message").text  # noqa: E731
    browser.get(keyed_server + "/")
    WebDriverWait(browser, 30).until(dialog_open)  # asked at once: the model list needs the key
    assert "needs an API key" in message(browser)
    enter_key(browser, "wrong")
    WebDriverWait(browser, 30).until(lambda d: dialog_open(d) and "not accepted" in message(d))
    enter_key(browser, KEY)
    WebDriverWait(browser, 30).until(lambda d: "Models:" in d.find_element("id", "models").text)
    assert not dialog_open(browser)
    assert browser.execute_script("return sessionStorage.getItem('cxrseg-api-key')") == KEY

    # Reloaded in the same tab, the page uploads with the kept key and does not ask again.
    image = tmp_path / "chest.png"
    Image.fromarray(phantom("COVID-19", 256, np.random.default_rng(3))[0]).save(image)
    assert shot.upload(browser, keyed_server, image) == "done", shot.status_text(browser)
    assert not dialog_open(browser)
    assert browser.find_element("id", "download-lung").get_attribute("download") == "chest_lung.png"
