"""Headless Chromium for the page tests: Debian's chromium through Playwright.

`.ci/run` installs it; a test module marks itself `skip_without_chromium`, which fails under
CI=true (tests/ci_rules.py) instead of hiding the test. `look_at` opens a page at a phone's and a
laptop's width, checks what every page must hold to, and keeps a screenshot of each in
test-artifacts/screenshots/ (ignored by git).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.helpers import API_TOKEN

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
async def chromium() -> AsyncIterator[Browser]:
    """A fresh headless Chromium, closed on the way out; each `new_page()` of it is a device of
    its own (its own cookies)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    """A page in a fresh headless Chromium, closed with its browser on the way out."""
    async with chromium() as browser:
        yield await browser.new_page()


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
# A small phone (the 375 px) and a laptop.
WIDTHS = {"375px": (375, 812), "desktop": (1280, 900)}
TIMES_SHOWN = "Array.from(document.querySelectorAll('time[datetime]')).every((t) => t.dataset.at)"


@dataclass
class Watched:
    """What a page said on its console and the script errors it raised."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Watched:
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return self

    def refusals(self) -> list[str]:
        """Console errors (a CSP refusal, a failed load) and uncaught script errors."""
        return [text for text in self.console if text.startswith("error:")] + self.errors


async def look_at(page: Page, url: str, name: str) -> list[Path]:
    """Open `url` at each width: the page loads with no console error (so no CSP refusal) and
    no script error, its times formatted by its script, nothing wider than the window (tables
    scroll in their own box); a full-page screenshot of each is kept in test-artifacts/."""
    watched = Watched().attach(page)
    shots = []
    for label, (width, height) in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": height})
        await page.goto(url)
        await page.wait_for_function(TIMES_SHOWN, timeout=10_000)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} at {label} is {overflow}px wider than the window"
        shots.append(await screenshot(page, f"{name}-{label}"))
    assert watched.refusals() == [], f"{name}: {watched.refusals()}"
    return shots


async def screenshot(page: Page, name: str) -> Path:
    """Keep a full-page screenshot of the page as it is now, test-artifacts/screenshots/NAME.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    return shot


async def log_in(page: Page, base: str) -> None:
    """Log in as a person does, by the URL token (it sets the cookie)."""
    await page.goto(f"{base}/login?token={API_TOKEN}")


async def act_as(page: Page, name: str) -> None:
    """Type the name the page's actions are taken under (kept by the browser)."""
    await page.fill("#who", name)
    await page.dispatch_event("#who", "change")
