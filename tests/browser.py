"""Headless Chromium for the page tests: Debian's chromium through Playwright.

`.ci/run` installs it; a test module marks itself `skip_without_chromium`, which fails under
CI=true (tests/ci_rules.py) instead of hiding the test.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, async_playwright

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
skip_without_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    """A page in a fresh headless Chromium, closed with its browser on the way out."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page()
        finally:
            await browser.close()
