"""What every status page does on its own, in a real headless Chromium: it shows times in the
browser's zone, and when the server says its history no longer reaches back to the page's last
event it reloads itself and carries on from the id it was rendered at. Every wait is for the
page to reach a state; none is a fixed sleep. Skipped without chromium, a failure under CI=true.
"""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.clock import ManualClock
from bot.config import Settings
from bot.github.events import InstallationUpdated
from tests.browser import chromium, screenshot, skip_without_chromium
from tests.conftest import AppClient, StartApp
from tests.helpers import API_TOKEN, github_headers, load_json
from tests.network_gate import NetworkGate
from web.keys import DISPATCHER, SERVICES

pytestmark = skip_without_chromium

WAIT_MS = 15_000
ZONE = "Asia/Tokyo"


def installed(account: str) -> InstallationUpdated:
    return InstallationUpdated(installation_id=1, account=account, action="created")


async def test_times_are_shown_in_the_browsers_zone(
    start_app: StartApp, settings: Settings, manual_clock: ManualClock
) -> None:
    client = await start_app(settings, clock=manual_clock)
    body = json.dumps(load_json("github/ping/payload.json")).encode()
    sent = await client.post("/webhooks/github", data=body, headers=github_headers("ping", body))
    assert sent.status == 202
    await client.app[DISPATCHER].drain()
    base = str(client.make_url("")).rstrip("/")
    async with chromium() as browser:
        page = await browser.new_page(timezone_id=ZONE, locale="en-US")
        await page.goto(f"{base}/login?token={API_TOKEN}")
        received = page.locator("#deliveries time[datetime]").first
        await page.wait_for_selector("#deliveries time[data-at]", timeout=WAIT_MS)
        stamp = await received.get_attribute("datetime")
        shown = (await received.inner_text()).replace("\u202f", " ")
        await screenshot(page, "times-in-tokyo")

    assert stamp is not None and stamp.endswith("Z")
    there = datetime.fromisoformat(stamp).astimezone(ZoneInfo(ZONE))
    utc = manual_clock.now()
    assert there.hour != utc.hour  # nine hours apart: the text says which zone it is in
    hour = there.hour % 12 or 12
    expected = f"{there:%b} {there.day}, {there.year}, {hour}:{there:%M} {there:%p}"
    assert shown == expected


async def test_a_page_whose_history_is_gone_reloads_itself_and_carries_on(
    client: AppClient,
) -> None:
    bus = client.app[SERVICES].bus
    gate = NetworkGate(client.port)  # the page's network, which the test cuts
    await gate.start()
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{gate.port}/login?token={API_TOKEN}")
            await page.wait_for_selector("#connection.on", timeout=WAIT_MS)
            rendered_at = int(await page.get_attribute("body", "data-last-id") or -1)
            await page.evaluate("() => { window.beforeTheGap = true; }")

            # Away: events come, and the history before them is pruned.
            gate.shut()
            await page.wait_for_selector("#connection.off", timeout=WAIT_MS)
            gone = [await bus.publish("s", installed(f"gone-{n}")) for n in range(3)]
            await bus.prune(keep=1)
            gate.open()
            await page.wait_for_function("() => window.beforeTheGap === undefined", timeout=WAIT_MS)
            await page.wait_for_selector("#connection.on", timeout=WAIT_MS)
            reloaded_at = int(await page.get_attribute("body", "data-last-id") or -1)
            after = await bus.publish("s", installed("after-the-reload"))
            await page.wait_for_selector("#feed li:has-text('after-the-reload')", timeout=WAIT_MS)
            await screenshot(page, "reloaded-after-history-gone")
    finally:
        await gate.close()

    assert rendered_at < gone[0]
    assert reloaded_at == gone[-1]  # rendered afresh, at the newest id then
    assert after > reloaded_at
