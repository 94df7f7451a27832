"""A real headless chromium, for the browser tests (tests/support/browser.py) and the console
screenshots: Debian's `chromium` and `chromium-driver` (debian-packages.txt), driven by Selenium.

Selenium's calls block until the browser answers, and the backend under test runs on the
test's event loop: `Browser` runs each call in a thread, so the loop serves the pages
meanwhile.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

T = TypeVar("T")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in CI: chromium's sandbox refuses to run as root
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",  # play() from a test, no click needed
    "--mute-audio",
    "--window-size=1280,900",
)
NOT_INSTALLED = (
    "chromium and chromedriver are needed for the browser tests: install the Debian packages "
    "`chromium` and `chromium-driver` (debian-packages.txt; `make install` adds them)."
)


def start_chromium(window: tuple[int, int] = (1280, 900)) -> WebDriver:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        raise RuntimeError(NOT_INSTALLED)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    return webdriver.Chrome(options=options, service=Service(driver))


class Browser:
    """The driver, awaitable: every Selenium call runs in a thread."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(function, *args)

    async def open(self, url: str) -> None:
        await self.call(self.driver.get, url)

    @property
    def url(self) -> str:
        return self.driver.current_url

    async def find(self, css: str) -> WebElement:
        return await self.call(self.driver.find_element, By.CSS_SELECTOR, css)

    async def find_all(self, css: str) -> list[WebElement]:
        return await self.call(self.driver.find_elements, By.CSS_SELECTOR, css)

    async def text(self, css: str) -> str:
        element = await self.find(css)
        return await self.call(lambda: element.text)

    async def type(self, css: str, text: str) -> None:
        element = await self.find(css)
        await self.call(element.clear)
        await self.call(element.send_keys, text)

    async def click(self, css: str) -> None:
        element = await self.find(css)
        await self.call(element.click)

    async def script(self, source: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, source, *args)

    async def wait_until(self, script: str, timeout: float = 10.0) -> Any:
        """Until the JavaScript expression `script` is truthy (its value)."""
        wait = WebDriverWait(self.driver, timeout, poll_frequency=0.05)
        return await self.call(wait.until, lambda d: d.execute_script(f"return ({script});"))

    async def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.call(self.driver.save_screenshot, str(path))
        return path
