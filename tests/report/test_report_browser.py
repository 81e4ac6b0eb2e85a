"""The folder report in headless Chromium, opened from disk (file://) as a user would open it.

Sorting, paging, lazily loaded thumbnails, a 10,000-image report that opens quickly, and no request that
leaves the machine: every request the browser made (from its DevTools network log) is a local file, the
browser runs with its proxy and DNS pointed nowhere, and the page's own CSP refuses remote addresses.
Skipped, with the reason, where Chromium, chromedriver or selenium is missing (scripts/setup.sh --browser);
failed instead under CXRSEG_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _scripts import load_script

from cxrseg.report import build_report



shot = load_script("scripts/screenshot_serve.py")
pytestmark = pytest.mark.browser  # skipped without Chromium, or failed where required (tests/_browser.py)

# No route out even if the page tried: every host name fails to resolve and every proxied request goes to a
# closed local port.
OFFLINE_FLAGS = ("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>")


def chromium(width: int = 1300, height: int = 900):
    """Headless Chromium (fresh profile, network pointed nowhere) that logs every request it makes."""
    return shot.chromium(width, height, extra_flags=(*OFFLINE_FLAGS, "--allow-file-access-from-files"),
                         log_requests=True)


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def requested_urls(driver) -> list[str]:
    """URLs of every request since the last call (DevTools Network.requestWillBeSent events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def open_report(driver, path: Path, timeout: float = 60) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("performance")  # drop what earlier tests left
    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.body.dataset.state") == "ready")


def column(driver, key: str) -> list[str]:
    """The texts of one column on the current page."""
    return driver.execute_script(
        """const i = [...document.querySelectorAll('#head th')].findIndex(th => th.dataset.key === arguments[0]);
           return [...document.querySelectorAll('#rows tr')].map(tr => tr.cells[i].textContent);""", key)


def numbers(texts: list[str]) -> list[float]:
    return [float(t.replace(",", "")) for t in texts]


def click_header(driver, key: str) -> None:
    driver.find_element("css selector", f'#head th[data-key="{key}"]').click()


def page_info(driver) -> tuple[int, int]:
    el = driver.find_element("id", "page-info")
    return int(el.get_attribute("data-page")), int(el.get_attribute("data-pages"))


def visible_thumbnails(driver, timeout: float = 30) -> list[dict]:
    """Wait until the thumbnails in the viewport have loaded; returns their src and natural size."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = """return [...document.querySelectorAll('#rows img')].filter(img => {
                  const r = img.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight;
                }).map(img => ({src: img.getAttribute('src'), complete: img.complete, w: img.naturalWidth}));"""
    WebDriverWait(driver, timeout).until(lambda d: all(i["complete"] for i in d.execute_script(script)))
    return driver.execute_script(script)


def assert_only_local_requests(urls: list[str]) -> None:
    assert urls, "the browser logged no request at all"
    remote = [u for u in urls if not u.startswith(("file://", "data:"))]
    assert not remote, f"requests that would leave the machine: {remote}"


def test_sorting_paging_and_thumbnails(fake_folder, browser):
    folder = fake_folder(250, overlays=250)
    build_report(folder)
    open_report(browser, folder / "report.html")
    assert page_info(browser) == (1, 3)
    files = column(browser, "file")
    assert len(files) == 100 and files[0].startswith("/scans/site0/img00000.png")

    # thumbnails: the ones on screen have loaded, from report_thumbs/, each linking to its full-size overlay
    browser.execute_script("document.getElementById('results').scrollIntoView()")
    shown = visible_thumbnails(browser)
    assert shown and all(i["w"] > 0 for i in shown), shown
    assert all(i["src"].startswith("report_thumbs/") for i in shown)
    href = browser.execute_script("return document.querySelector('#rows td.thumb a').getAttribute('href')")
    assert href == "img00000_overlay.png" and (folder / href).is_file()

    for key in ("infected_pct", "total_grade", "infection_probability"):
        click_header(browser, key)  # figures: largest first
        values = numbers(column(browser, key))
        assert values == sorted(values, reverse=True) and values[0] > values[-1], key
        assert browser.find_element("css selector", f'#head th[data-key="{key}"]').get_attribute("aria-sort") == "descending"
        click_header(browser, key)  # again: smallest first
        values = numbers(column(browser, key))
        assert values == sorted(values), key
    click_header(browser, "infected_pct")
    top = numbers(column(browser, "infected_pct"))
    assert column(browser, "file") != files  # the order changed

    # paging keeps the sort: page 2 continues where page 1 stopped
    browser.find_element("id", "next").click()
    assert page_info(browser) == (2, 3)
    second = numbers(column(browser, "infected_pct"))
    assert len(second) == 100 and second[0] <= top[-1] and second == sorted(second, reverse=True)
    browser.find_element("id", "last").click()
    assert page_info(browser) == (3, 3) and len(column(browser, "file")) == 50

    # filter and "only with infection"
    browser.find_element("id", "only-infected").click()
    assert page_info(browser) == (1, 1) and all(v > 0 for v in numbers(column(browser, "infected_pct")))
    assert len(column(browser, "file")) == 84  # every third row has infection
    browser.find_element("id", "only-infected").click()
    browser.find_element("id", "filter").send_keys("site1/")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda d: page_info(d) == (1, 1))
    assert all("/site1/" in f for f in column(browser, "file")) and len(column(browser, "file")) == 63

    assert_only_local_requests(requested_urls(browser))


def test_a_real_predict_folder_and_no_request_leaves_the_machine(predicted, browser, tmp_path):
    build_report(predicted)
    open_report(browser, predicted / "report.html")
    assert len(column(browser, "file")) == 9
    browser.execute_script("document.getElementById('results').scrollIntoView()")
    shown = visible_thumbnails(browser)
    assert len(shown) >= 3 and all(i["w"] > 0 for i in shown), shown
    assert "broken.png" in browser.find_element("id", "failed").text
    urls = requested_urls(browser)
    assert_only_local_requests(urls)
    assert any(u.endswith(".jpg") for u in urls)  # the thumbnails were among them

    # the page's CSP refuses a remote address even if something on the page asked for one
    blocked = browser.execute_async_script(
        """const done = arguments[0];
           document.addEventListener('securitypolicyviolation', e => done(e.blockedURI), {once: true});
           const img = new Image(); img.src = 'http://example.invalid/x.png'; document.body.appendChild(img);
           setTimeout(() => done(null), 3000);""")
    assert blocked and blocked.startswith("http://example.invalid")

    out = shot.save_screenshot(browser, tmp_path / "report.png")
    print(f"screenshot: {out}")


def test_ten_thousand_images_open_quickly(fake_folder, browser):
    folder = fake_folder(10_000, overlays=120)
    build_report(folder)
    open_report(browser, folder / "report.html")
    assert page_info(browser) == (1, 100)
    assert len(column(browser, "file")) == 100
    render_ms = int(browser.execute_script("return document.body.dataset.renderMs"))
    assert render_ms < 3000, render_ms  # parse 10,000 rows and draw one page; about 100 ms here
    in_dom = browser.execute_script("return document.querySelectorAll('#rows img').length")
    assert in_dom == 100  # one page of images in the document; the lazy ones below the fold wait
    ms = browser.execute_script(
        """const t = performance.now();
           document.querySelector('#head th[data-key="infection_probability"]').click();
           return performance.now() - t;""")
    assert ms < 2000, ms
    values = numbers(column(browser, "infection_probability"))
    assert values == sorted(values, reverse=True)
    browser.find_element("id", "last").click()
    assert page_info(browser) == (100, 100) and len(column(browser, "file")) == 100
    assert_only_local_requests(requested_urls(browser))
