"""What the status pages keep in the browser session, in a real headless Chromium: the dashboard's
feed filter survives a reload (the session's UI state, web/static/remember.js), and a page that
shows no notification still offers the button, at zero.

The server killed and restarted under a page, its tabs and notifications:
tests/pipelines/test_session_browser.py.
"""

from __future__ import annotations

from playwright.async_api import Page

from bot.events.bus import EventBus
from bot.github.events import InstallationUpdated
from bot.jira.events import SyncComplete
from tests.browser import browser_page, log_in, skip_without_chromium
from tests.conftest import AppClient
from web.keys import SERVICES

pytestmark = skip_without_chromium

WAIT_MS = 15_000


async def feed_after_two_events(page: Page, bus: EventBus, account: str) -> list[str]:
    """A sync and an installation published: the types the feed shows (not hidden by the
    filter), newest first, once the installation's has arrived."""
    sync = SyncComplete(project="ACME", created=1, updated=0, deleted=0, duration_s=0.1)
    await bus.publish("jira:ACME", sync)
    installed = InstallationUpdated(installation_id=1, account=account, action="created")
    await bus.publish("github", installed)
    await page.wait_for_selector(f"#feed li:has-text('{account}')", timeout=WAIT_MS)
    return list(
        await page.locator("#feed li:not([hidden]) .type").evaluate_all(
            "(types) => types.map((t) => t.textContent)"
        )
    )


async def test_the_dashboard_keeps_its_feed_filter_through_a_reload(client: AppClient) -> None:
    bus = client.app[SERVICES].bus
    base = str(client.make_url("")).rstrip("/")
    async with browser_page() as page:
        await log_in(page, base)
        await page.wait_for_selector("#connection.on", timeout=WAIT_MS)
        async with page.expect_response(lambda answer: answer.url.endswith("/ui-state")) as saved:
            await page.fill("#feed-filter", "install")
        assert (await saved.value).ok
        shown_before = await feed_after_two_events(page, bus, "octo")

        await page.reload()
        await page.wait_for_selector("#connection.on", timeout=WAIT_MS)
        kept = await page.input_value("#feed-filter")
        shown_after = await feed_after_two_events(page, bus, "hub")
        badge = await page.locator("#notices-toggle").inner_text()

    assert shown_before == ["installation_updated"]
    assert kept == "install"
    assert shown_after == ["installation_updated"]
    assert badge == "notifications 0"
