"""The status pages in a real headless Chromium, beside the pipeline ones
(tests/pipelines/test_pages_browser.py): a pull request's page with its countdown and its
pause and resume buttons, worked by keyboard alone; the dashboard's redeliver button; a
worktree deleted from its page. Every page is opened at a phone's and a laptop's width and
kept as a screenshot (tests/browser.py `look_at`). Skipped without chromium, a failure under
CI=true.
"""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Dialog, Page

from bot.clock import ManualClock
from bot.config import Settings
from tests.browser import browser_page, log_in, look_at, skip_without_chromium
from tests.conftest import AppClient, StartApp
from tests.helpers import auth_headers, github_headers, load_json
from tests.reviews_scenario import Scenario
from tests.worktree_helpers import live_session
from web.keys import DISPATCHER, SERVICES

pytestmark = skip_without_chromium

WAIT_MS = 15_000
HOSTILE = '<img id="injected" src=x onerror="document.title=1">'


def base_of(client: AppClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def press_tab_until(page: Page, text: str) -> None:
    """Move the focus with Tab alone until it reaches the button or link saying `text`."""
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.textContent.trim()") == text:
            return
    raise AssertionError(f"Tab never reached {text!r}")


async def test_a_pull_request_page_counts_down_and_is_paused_and_resumed_by_keyboard(
    scenario: Scenario,
) -> None:
    await scenario.send("pull_request_review_comment", scenario.review_comment(HOSTILE))
    await scenario.advance(31)
    await scenario.send("pull_request_review_comment", scenario.review_comment("rename x"))
    client = scenario.client
    assert client is not None
    base = base_of(client)
    async with browser_page() as page:
        await log_in(page, base)
        await look_at(page, f"{base}/pull-requests/1", "pull-request")
        await page.wait_for_selector("#connection.on", timeout=WAIT_MS)
        countdown = page.locator("#pending time.countdown")
        assert (await countdown.inner_text()).startswith("in ")  # 30 s on the server's clock
        assert await page.locator("#injected").count() == 0
        assert HOSTILE in await page.locator("#batch-1 pre.comment").inner_text()

        await press_tab_until(page, "Pause")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#paused", timeout=WAIT_MS)
        assert "paused." in await page.locator("#controls .message").inner_text()
        await press_tab_until(page, "Resume")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("form.pause", timeout=WAIT_MS)
    assert (await scenario.api("/api/pull-requests/1"))["pull_request"]["paused"] is False


async def test_a_click_on_redeliver_works_the_delivery_again(client: AppClient) -> None:
    body = json.dumps(load_json("github/ping/payload.json")).encode()
    sent = await client.post("/webhooks/github", data=body, headers=github_headers("ping", body))
    assert sent.status == 202
    await client.app[DISPATCHER].drain()
    base = base_of(client)
    async with browser_page() as page:
        await log_in(page, base)
        await look_at(page, f"{base}/", "dashboard-deliveries")
        await page.wait_for_selector("#connection.on", timeout=WAIT_MS)
        assert await page.locator("#feed li").count() == 0
        await page.click("tr[data-delivery='1'] form.redeliver button")
        # Worked again: its delivery_processed event reaches the feed and the row.
        await page.wait_for_selector("#feed li:has-text('delivery_processed')", timeout=WAIT_MS)
        await page.wait_for_selector("tr[data-delivery='1'] .status .badge.done", timeout=WAIT_MS)
    answer = await client.get("/api/deliveries", headers=auth_headers())
    [delivery] = (await answer.json())["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("done", 1)


async def test_a_worktree_is_deleted_from_its_page(
    start_app: StartApp, settings: Settings, tmp_path: Path
) -> None:
    client = await start_app(settings, clock=ManualClock())
    view = await live_session(client, tmp_path)
    manager = client.app[SERVICES].worktrees
    assert manager is not None
    base = base_of(client)
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    async with browser_page() as page:
        await log_in(page, base)
        await look_at(page, f"{base}/worktrees", "worktrees-one")
        page.on("dialog", accept)
        await page.click(f"li[data-session='{view.id}'] form.delete button")
        await page.wait_for_selector("#sessions", state="detached", timeout=WAIT_MS)
        assert "No worktree session is live." in await page.locator("#worktrees").inner_text()
    assert asked and "Uncommitted work in them is lost" in asked[0]
    assert not Path(view.repos[0].path).exists()
    gone = await manager.get(view.id)
    assert gone is not None and gone.status == "cleaned"


async def test_the_skip_link_is_the_first_stop_and_focus_is_visible(client: AppClient) -> None:
    base = base_of(client)
    async with browser_page() as page:
        await log_in(page, base)
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.className") == "skip"
        outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid"
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "main"
