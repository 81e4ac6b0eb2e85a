"""Retake the README's two screenshots with headless Chromium: the folder report and the page of ``cxrseg serve``.

    python scripts/screenshots.py                                  # the two shipped example films only
    python scripts/screenshots.py --data ../shared/data/COVID-QU-Ex   # + 16 Val images (fixed, class-stratified)

The report: ``cxrseg predict --report`` on the example films (and the Val images) in a temporary folder, opened
over file:// and shot at a fixed viewport size, sorted by infected %. The page: the app on a free loopback port,
the COVID-19 example film uploaded through its file input, shot once the result has rendered. Both use the
shipped models and Chromium with its network pointed nowhere; the browser helpers are scripts/screenshot_serve.py's.
PNGs over ``--max-kb`` are re-encoded as 256-colour PNGs (Pillow) to keep the repository small.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
REPORT_PNG, SERVE_PNG = ROOT / "docs" / "report-screenshot.png", ROOT / "docs" / "screenshot-serve.png"
REPORT_VIEWPORT = (1280, 2200)  # the report is shot at this size: summary, models, plots and the table's first rows
SERVE_WIDTH = 1200  # the page is shot whole at this width
MAX_KB = 300  # a larger PNG is written as 256 colours
VAL_IMAGES, VAL_SEED = 16, 0  # the Val subset: cxrseg.data.covidqu.stratified_subset(Val, 16, seed 0)
# Nothing leaves the machine: other host names do not resolve and every non-loopback request goes to a proxy on a
# closed loopback port (Chromium reaches loopback itself, so the server on 127.0.0.1 still answers).
OFFLINE_FLAGS = ("--proxy-server=http://127.0.0.1:9",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1")


def browser_helpers() -> ModuleType:
    """scripts/screenshot_serve.py as a module (its serve, chromium, upload and save_screenshot)."""
    path = Path(__file__).with_name("screenshot_serve.py")
    spec = importlib.util.spec_from_file_location("screenshot_serve", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def val_images(data: Path, k: int = VAL_IMAGES, seed: int = VAL_SEED) -> list[Path]:
    """A fixed, class-stratified handful of COVID-QU-Ex Val images (the infection part), by class then name."""
    from cxrseg.data.covidqu import find_dataset, require_samples, stratified_subset

    samples = require_samples(find_dataset(data, part="infection", splits=("Val",)), ("Val",), "Val")
    return [s.image for s in stratified_subset(samples, k, seed)]


def gather_inputs(folder: Path, data: Path | None) -> list[Path]:
    """Copy the example films (and, given ``data``, the Val subset) into ``folder``; returns the copies."""
    from cxrseg.examples import films

    folder.mkdir(parents=True, exist_ok=True)
    sources = [f.path for f in films()] + (val_images(data) if data else [])
    return [Path(shutil.copy2(src, folder / src.name)) for src in sources]


def cxrseg_command() -> list[str]:
    """The ``cxrseg`` entry point beside this Python (the venv's), else ``python -m cxrseg.cli``'s equivalent."""
    beside = Path(sys.executable).with_name("cxrseg")
    return [str(beside)] if beside.is_file() else [sys.executable, "-c", "from cxrseg.cli import app; app()"]


def predict_report(work: Path, data: Path | None, backend: str) -> Path:
    """``cxrseg predict xrays --out cxrseg-out --report`` inside ``work`` (relative paths, so the page shows
    short ones); returns the report's path."""
    images = gather_inputs(work / "xrays", data)
    print(f"predict: {len(images)} images ({'examples + Val' if data else 'examples only'}) in {work}")
    cmd = [*cxrseg_command(), "predict", "xrays", "--out", "cxrseg-out", "--report", "-q"]
    if backend != "auto":
        cmd += ["--backend", backend]
    subprocess.run(cmd, cwd=work, check=True)
    return work / "cxrseg-out" / "report.html"


def shoot_report(shot: ModuleType, report: Path, out: Path, max_kb: int = MAX_KB, timeout: float = 60) -> Path:
    """Open ``report`` over file://, sort by infected % (largest first), wait for the visible thumbnails and
    save the viewport (:data:`REPORT_VIEWPORT`) from the top of the page as PNG."""
    from selenium.webdriver.support.ui import WebDriverWait

    visible_loaded = """return [...document.querySelectorAll('#rows img')].filter(img => {
        const r = img.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight;
      }).every(img => img.complete && img.naturalWidth > 0);"""
    with shot.chromium(*REPORT_VIEWPORT, extra_flags=(*OFFLINE_FLAGS, "--allow-file-access-from-files")) as driver:
        set_viewport(driver, *REPORT_VIEWPORT)
        driver.get(report.resolve().as_uri())
        ready = "return document.body.dataset.state === 'ready'"
        WebDriverWait(driver, timeout).until(lambda d: d.execute_script(ready))
        driver.find_element("css selector", '#head th[data-key="infected_pct"]').click()  # first click: largest first
        driver.execute_script("window.scrollTo(0, 0)")  # the click scrolled the heading into view
        WebDriverWait(driver, timeout).until(lambda d: d.execute_script(visible_loaded))
        return write_png(driver.get_screenshot_as_png(), out, max_kb)


def set_viewport(driver, width: int, height: int) -> None:
    """Size the window so that the page's viewport is ``width`` x ``height`` CSS pixels (the window's outer size
    includes a little more)."""
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    outer = driver.get_window_size()
    driver.set_window_size(outer["width"] + width - inner[0], outer["height"] + height - inner[1])


def shoot_serve(shot: ModuleType, image: Path, out: Path, backend: str, max_kb: int = MAX_KB) -> Path:
    """Serve the app (shipped models) on a loopback port, upload ``image`` through the page and save it whole.
    ``image`` goes up twice: the first upload warms the models, so the time shown is a steady one."""
    from cxrseg.server import ServerSettings, create_app

    app = create_app(ServerSettings(backend=backend))
    with shot.serve(app) as url, shot.chromium(width=SERVE_WIDTH, extra_flags=OFFLINE_FLAGS) as driver:
        if shot.upload(driver, url, image) != "done" or shot.upload(driver, url, image) != "done":
            raise RuntimeError(f"the page said: {shot.status_text(driver)}")
        with tempfile.TemporaryDirectory() as tmp:
            raw = shot.save_screenshot(driver, Path(tmp) / "page.png")  # the window grown to the page's height
            return write_png(raw.read_bytes(), out, max_kb)


def write_png(png: bytes, out: Path, max_kb: int = MAX_KB) -> Path:
    """Write ``png`` to ``out`` atomically: re-encoded with Pillow's optimiser, and as 256 colours when still
    over ``max_kb`` (screenshots live in the repository)."""
    from PIL import Image

    from cxrseg._atomic import atomic_path

    limit = 1024 * max_kb
    image = Image.open(io.BytesIO(png)).convert("RGB")
    data = encode(image)
    if len(data) > limit:
        data = encode(image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return out


def encode(image) -> bytes:
    """``image`` as PNG bytes, with Pillow's extra compression pass."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="COVID-QU-Ex folder: add a fixed, class-stratified Val subset")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    p.add_argument("--report-out", type=Path, default=REPORT_PNG)
    p.add_argument("--serve-out", type=Path, default=SERVE_PNG)
    p.add_argument("--only", choices=("report", "serve"), help="retake one of the two")
    p.add_argument("--max-kb", type=int, default=MAX_KB, help="PNGs larger than this are written as 256 colours")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shot = browser_helpers()
    missing = shot.chromium_missing()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    from cxrseg.examples import films

    if args.only != "serve":
        with tempfile.TemporaryDirectory(prefix="cxrseg-screenshots-") as work:
            report = predict_report(Path(work), args.data, args.backend)
            written = shoot_report(shot, report, args.report_out, args.max_kb)
        print(f"wrote {written} ({written.stat().st_size // 1024} KB): the report")
    if args.only != "report":
        written = shoot_serve(shot, films()[0].path, args.serve_out, args.backend, args.max_kb)
        print(f"wrote {written} ({written.stat().st_size // 1024} KB): the page after uploading {films()[0].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
