"""The status pages with real pipelines in a real headless Chromium, at a phone's width and a
laptop's: the dashboard (a plan to approve, a failed pipeline), the ticket page (where a
pipeline is started), the pipeline, worktrees and costs pages. Each is checked and kept as a
screenshot by tests/browser.py's `look_at`. Skipped without chromium, a failure under CI=true.
"""

from __future__ import annotations

from tests.browser import act_as, browser_page, log_in, look_at, skip_without_chromium
from tests.fakes import anthropic as scripted
from tests.pipelines.world import PipelineWorld

pytestmark = skip_without_chromium

WAIT_MS = 15_000
HOSTILE = '<img id="injected" src=x onerror="document.title=1">'


async def test_each_page_reads_at_a_phone_and_a_laptop_width(world: PipelineWorld) -> None:
    client = await world.start()
    world.model.script("triage", *([scripted.tool_use("glob", {"pattern": "*.py"})] * 6))
    failed = await world.settle(
        (await world.create(await world.ticket(), cycle_type="oncall_bug"))["id"]
    )
    key = await world.ticket(f"Greet people {HOSTILE}", description=HOSTILE, labels=("backend",))
    held = await world.settle((await world.create(key))["id"])
    assert (failed["status"], held["status"]) == ("failed", "waiting_for_approval")
    base = str(client.make_url("")).rstrip("/")
    async with browser_page() as page:
        await log_in(page, base)
        await look_at(page, f"{base}/", "dashboard")
        assert await page.locator("#plans li").count() == 1
        assert await page.locator("#failed li").count() == 1
        await look_at(page, f"{base}/tickets/{key}", "ticket")
        await look_at(page, f"{base}/pipelines/{held['id']}", "pipeline")
        await look_at(page, f"{base}/worktrees", "worktrees")
        await look_at(page, f"{base}/costs", "costs")
        assert await page.locator("#injected").count() == 0


async def test_a_pipeline_started_from_the_ticket_page_opens_its_page(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    key = await world.ticket(labels=("backend",))
    base = str(client.make_url("")).rstrip("/")
    async with browser_page() as page:
        await log_in(page, base)
        await page.goto(f"{base}/tickets/{key}")
        await act_as(page, "mia")
        await page.select_option("#start-cycle-type", "backend")
        await page.click("form.start-pipeline button")
        await page.wait_for_url(f"{base}/pipelines/*", timeout=WAIT_MS)
        pipeline_id = int(page.url.rsplit("/", 1)[1])
    started = await world.settle(pipeline_id)
    assert started["ticket"] == key and started["cycle_type"] == "backend"
    assert started["created_by"] == "mia"
