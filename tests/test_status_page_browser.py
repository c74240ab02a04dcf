"""The status page in a real headless Chromium: it goes live, shows events, and resumes.

Needs Debian's chromium (`.ci/run` installs it); skipped with a reason where it is missing,
except under CI=true, where that skip fails (tests/ci_rules.py).
"""

from __future__ import annotations

from bot.agents.events import Token
from bot.github.events import InstallationUpdated
from tests.browser import browser_page, skip_without_chromium
from tests.conftest import AppClient
from tests.helpers import API_TOKEN
from web.keys import SERVICES

pytestmark = skip_without_chromium


async def test_page_goes_live_and_catches_up_after_a_forced_reconnect(
    client: AppClient,
) -> None:
    bus = client.app[SERVICES].bus

    def shown(account: str) -> InstallationUpdated:
        return InstallationUpdated(installation_id=1, account=account, action="created")

    await bus.publish("deliveries", shown("before-load"))
    base = str(client.make_url("")).rstrip("/")
    async with browser_page() as page:
        await page.goto(f"{base}/login?token={API_TOKEN}")
        assert "biagent" in await page.title()
        await page.wait_for_selector("#connection.on", timeout=10_000)
        assert await page.locator("#feed li").count() == 0

        await bus.publish("s", shown("live-1"))
        await page.wait_for_selector("#feed li:has-text('live-1')", timeout=10_000)
        # The feed shows events: the one from before the page was rendered is not repeated.
        assert await page.locator("#feed li").count() == 1
        assert await page.locator("#feed li:has-text('before-load')").count() == 0

        # Overflow the page's subscription (more frames than its queue holds, without
        # yielding; a subscription keeps the queue size it was made with): the server closes it
        # (4008), the page reconnects and resumes from the last id it saw, so the events in
        # between still arrive.
        for n in range(bus.queue_size + 1):
            bus.publish_transient("s", Token(seq=n, text="x"))
        missed = [await bus.publish("s", shown(f"m{n}")) for n in range(3)]
        after = await bus.publish("s", shown("after"))
        await page.wait_for_selector("#feed li:has-text('after')", timeout=15_000)
        texts = await page.locator("#feed li .id").all_inner_texts()
        for event_id in [*missed, after]:
            assert texts.count(f"#{event_id}") == 1


async def test_the_status_page_runs_under_its_content_security_policy(client: AppClient) -> None:
    """Chromium enforces the page's CSP: its script and style load, nothing is refused."""
    base = str(client.make_url("")).rstrip("/")
    async with browser_page() as page:
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        await page.goto(f"{base}/login?token={API_TOKEN}")
        await page.wait_for_selector("#connection.on", timeout=10_000)
        header = await page.evaluate("getComputedStyle(document.querySelector('header')).display")
    assert header == "flex"  # status.css applied
    assert [text for text in console if "Content Security Policy" in text] == []
