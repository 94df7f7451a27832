"""The browser fixtures: a real headless chromium (harness/browser.py), one per test module
(`chromium`); each test gets it with no cookies (`browser`). Without chromium the tests fail and
say what to install; they are never skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from harness.browser import Browser, start_chromium


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    try:
        driver = start_chromium()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: WebDriver) -> Browser:
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every host's, not the page's
    return Browser(chromium)
