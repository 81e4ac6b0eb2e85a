"""Screenshot the cxrseg page after an upload: start the server, drive headless Chromium, save a PNG.

    python scripts/screenshot_serve.py                      # shipped models, a synthetic phantom X-ray
    python scripts/screenshot_serve.py --image chest.dcm --lung L.safetensors --infection I.safetensors

Needs Debian's ``chromium`` and ``chromium-driver`` (apt-get install -y chromium chromium-driver) and the
``selenium`` package. Nothing leaves the machine: Chromium runs with networking extras off and a fresh
profile, against the server on a loopback port. The browser test (tests/server/test_browser.py) uses the
helpers here, so they stay working.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None when Chromium, its driver and selenium are all present."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            return f"{path} not found: apt-get install -y chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install selenium"
    return None


@contextlib.contextmanager
def serve(app) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the port is ours from here on: no race with another process
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.contextmanager
def chromium(width: int = 1200, height: int = 900, extra_flags: tuple[str, ...] = (),
             log_requests: bool = False) -> Iterator:
    """Headless Chromium under chromedriver, with a fresh profile that is deleted afterwards. ``extra_flags``: more
    command-line switches (the tests' offline network rules); ``log_requests``: keep the performance log, so a
    test can list every request the page made."""
    from selenium import webdriver

    with tempfile.TemporaryDirectory(prefix="cxrseg-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        if log_requests:
            options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


def upload(driver, base_url: str, image: Path, timeout: float = 120) -> str:
    """Open the page, choose ``image`` in its file input, and wait until it shows a result or an error.

    Returns the page's final state, 'done' or 'error'.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base_url + "/")
    driver.find_element(By.ID, "file").send_keys(str(Path(image).resolve()))
    state = lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")  # noqa: E731
    WebDriverWait(driver, timeout).until(lambda d: state(d) in ("done", "error"))
    return state(driver)


def shown_figures(driver) -> dict[str, tuple[str, str]]:
    """Every figure on the page: data-field name -> (text shown, data-format or '')."""
    from selenium.webdriver.common.by import By

    return {
        el.get_attribute("data-field"): (el.text, el.get_attribute("data-format") or "")
        for el in driver.find_elements(By.CSS_SELECTOR, "[data-field]")
    }


def status_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "status").text


def save_screenshot(driver, out: Path) -> Path:
    """Save the whole page (window grown to the page's height) as PNG, written atomically."""
    for _ in range(3):  # the window's outer size includes a little more than the page's viewport
        needed = driver.execute_script("return document.documentElement.scrollHeight")
        viewport = driver.execute_script("return window.innerHeight")
        if viewport >= needed:
            break
        size = driver.get_window_size()
        driver.set_window_size(size["width"], size["height"] + needed - viewport)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(driver.get_screenshot_as_png())
    os.replace(tmp, out)
    return out


def phantom_png(path: Path, size: int = 512, seed: int = 3) -> Path:
    """Write a synthetic chest X-ray phantom with infection (for when no real image is given)."""
    import numpy as np
    from PIL import Image

    from cxrseg.data.synthetic import phantom

    Image.fromarray(phantom("COVID-19", size, np.random.default_rng(seed))[0]).save(path)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lung", type=Path, help="stage-1 weights (default: the shipped lung model)")
    p.add_argument("--infection", type=Path, help="stage-2 weights (default: the shipped infection model)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    p.add_argument("--image", type=Path, help="X-ray to upload (default: a synthetic phantom)")
    p.add_argument("--out", type=Path, default=Path("docs/screenshot-serve.png"))
    p.add_argument("--width", type=int, default=1200)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = chromium_missing()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    from cxrseg.errors import CxrsegError
    from cxrseg.server import ServerSettings, create_app

    try:
        app = create_app(ServerSettings(lung=args.lung, infection=args.infection, backend=args.backend))
    except CxrsegError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, serve(app) as url, chromium(width=args.width) as driver:
        image = args.image or phantom_png(Path(tmp) / "phantom.png")
        if upload(driver, url, image) != "done":
            print(f"error: the page said: {status_text(driver)}", file=sys.stderr)
            return 1
        print(save_screenshot(driver, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
