"""The browser-test gate (tests/_browser.py): a missing Chromium is a skip, or a failure under
CXRSEG_REQUIRE_BROWSER=1 as in CI. Absence is simulated, so this runs with or without a browser."""

from __future__ import annotations

import pytest
from _browser import REQUIRE_BROWSER, check_browser
from _scripts import load_script


@pytest.fixture()
def absent_chromium(tmp_path) -> str:
    """The reason scripts/screenshot_serve.py gives when its Chromium binary is not where it looks."""
    shot = load_script("scripts/screenshot_serve.py")
    shot.CHROMIUM = tmp_path / "no-chromium"
    missing = shot.chromium_missing()
    assert missing is not None and "no-chromium" in missing
    return missing


def test_a_missing_browser_is_a_skip_by_default(absent_chromium):
    for env in ({}, {REQUIRE_BROWSER: ""}, {REQUIRE_BROWSER: "0"}):
        with pytest.raises(pytest.skip.Exception, match="no browser: .*no-chromium"):
            check_browser(absent_chromium, env)


def test_a_missing_browser_is_a_failure_where_required(absent_chromium):
    with pytest.raises(pytest.fail.Exception, match=f"no browser: .*no-chromium.*{REQUIRE_BROWSER}=1 requires one"):
        check_browser(absent_chromium, {REQUIRE_BROWSER: "1"})


def test_a_present_browser_passes_either_way():
    check_browser(None, {REQUIRE_BROWSER: "1"})
    check_browser(None, {})
