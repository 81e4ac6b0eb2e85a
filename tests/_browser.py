"""The one place that decides what a browser test does where headless Chromium is missing: skip it, with the
reason, or fail it when ``CXRSEG_REQUIRE_BROWSER=1`` (set by .ci/run, so CI cannot pass with the browser tests
silently skipped). Tests opt in with ``pytestmark = pytest.mark.browser``; tests/conftest.py applies the check.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import pytest
from _scripts import load_script

REQUIRE_BROWSER = "CXRSEG_REQUIRE_BROWSER"


@functools.cache
def browser_missing() -> str | None:
    """Why Chromium cannot run here (scripts/screenshot_serve.py's check), or None when it can."""
    return load_script("scripts/screenshot_serve.py").chromium_missing()


def browser_required(env: Mapping[str, str] = os.environ) -> bool:
    """Whether a missing browser is a failure rather than a skip (``CXRSEG_REQUIRE_BROWSER`` set, and not '0')."""
    return env.get(REQUIRE_BROWSER, "") not in ("", "0")


def check_browser(missing: str | None, env: Mapping[str, str] = os.environ) -> None:
    """Nothing when the browser is there (``missing`` is None); else skip the test, or fail it if required."""
    if missing is None:
        return
    if browser_required(env):
        pytest.fail(f"no browser: {missing}. {REQUIRE_BROWSER}={env[REQUIRE_BROWSER]} requires one "
                    "(bash scripts/setup.sh --browser installs it as root)", pytrace=False)
    pytest.skip(f"no browser: {missing}")
