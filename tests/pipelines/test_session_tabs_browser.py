"""Every kind of page as a tab of the browser session, and what a person set on each page, in a
real headless Chromium with a real pipeline and its pull request (tests/pipelines/world.py).

One device opens the dashboard, a ticket, its pipeline, the pipeline's pull request, the
worktrees and the costs: each is a tab across the top of every page, the current one marked. It
sets something on each page that has something to set (the dashboard's feed filter, the
ticket's description closed, a step selected and a step's output opened on the pipeline page)
and closes a tab by keyboard alone. Another device logs in to the same session
(`/login?token=...&session=ID`) and gets the same tabs and, page by page, the same UI state. A
screenshot of each is kept. Every wait is for the page or the API to reach a state; none is a
fixed sleep. And while a page stays connected, an event on another of its session's tabs shows
as a notification at once, its own stream's live. Skipped without chromium, a failure under
CI=true.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page

from bot.pipelines.events import PipelineFailed
from tests.browser import chromium, screenshot, skip_without_chromium
from tests.helpers import API_TOKEN
from tests.pipelines.world import PipelineWorld, step_of
from web.keys import SERVICES

pytestmark = skip_without_chromium

WAIT_MS = 15_000
TABS_JS = "(tabs) => tabs.map((t) => [t.dataset.kind, t.dataset.ref, t.matches('.current')])"


async def shown_tabs(page: Page) -> list[list[Any]]:
    return list(await page.locator("#tabs li.tab").evaluate_all(TABS_JS))


def failure(pipeline_id: int, ticket: str, message: str) -> PipelineFailed:
    return PipelineFailed(
        pipeline_id=pipeline_id, ticket=ticket, kind="agent", message=message, error=message
    )


async def visit(page: Page, url: str, kind: str) -> None:
    """Open `url`; once its own tab is drawn, current, and its socket (if any) is live."""
    await page.goto(url)
    await page.wait_for_selector(f"#tabs li.tab.current[data-kind='{kind}']", timeout=WAIT_MS)


async def saved(page: Page, action: Any) -> None:
    """Do `action`; wait for the page's UI state to reach the server."""
    async with page.expect_response(
        lambda answer: answer.url.endswith("/ui-state") and answer.request.method == "PATCH"
    ) as answer:
        await action
    assert (await answer.value).ok


async def pipeline_and_its_pull_request(
    world: PipelineWorld,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A pipeline that opened its pull request (GitHub told so), and that pull request as the
    API lists it."""
    opened = await world.open_pull_request(description="Greet people warmly.")
    [pull] = opened["pull_requests"]
    await world.webhooks.send("pull_request", world.webhooks.opened(pull["number"]))
    [pr] = (await world.api("GET", "/api/pull-requests"))["pull_requests"]
    return opened, pr


async def set_ticket_and_pipeline_state(
    page: Page, base: str, key: str, pipeline_id: int, *, plan: int, risk: int
) -> None:
    """The ticket's description closed; on the pipeline, the risk step selected and the plan
    step's output opened."""
    await visit(page, f"{base}/tickets/{key}", "ticket")
    await saved(page, page.click("details#description-panel > summary"))
    await visit(page, f"{base}/pipelines/{pipeline_id}", "pipeline")
    await saved(page, page.click(f"button.select[data-select='step-{risk}']"))
    await saved(page, page.click(f"details#output-{plan} > summary"))


async def close_worktrees_tab_by_keyboard(page: Page) -> str:
    """From the worktrees tab's link, Tab reaches its close button; Enter closes it (the tabs
    saved) and the focus moves on to the next tab's close button: that button's label."""
    await page.focus("#tabs li.tab[data-kind='worktrees'] a.label")
    await page.keyboard.press("Tab")
    async with page.expect_response(lambda r: r.request.method == "PUT") as put:
        await page.keyboard.press("Enter")
    assert (await put.value).ok
    await page.wait_for_selector("#tabs li.tab[data-kind='worktrees']", state="detached")
    return str(await page.evaluate("document.activeElement.getAttribute('aria-label')"))


async def session_cookie(page: Page) -> str:
    """The browser session's id, from its cookie."""
    cookies = await page.context.cookies()
    return next(c["value"] for c in cookies if c["name"] == "biagent_session")


async def test_every_page_kind_is_a_tab_and_another_device_gets_tabs_and_page_state(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    opened, pr = await pipeline_and_its_pull_request(world)
    pipeline_id, key = opened["id"], opened["ticket"]
    plan, risk = step_of(opened, "plan")["id"], step_of(opened, "risk")["id"]
    base = str(client.make_url("")).rstrip("/")
    pr_ref = f"{pr['repository']}#{pr['number']}"

    async with chromium() as browser:
        laptop = await browser.new_page()
        await laptop.goto(f"{base}/login?token={API_TOKEN}")
        await laptop.wait_for_selector("#tabs li.tab.current[data-kind='dashboard']")
        await saved(laptop, laptop.fill("#feed-filter", "pipeline"))
        await set_ticket_and_pipeline_state(laptop, base, key, pipeline_id, plan=plan, risk=risk)
        await visit(laptop, f"{base}/pull-requests/{pr['id']}", "pr")
        await visit(laptop, f"{base}/worktrees", "worktrees")
        await visit(laptop, f"{base}/costs", "costs")
        all_tabs = await shown_tabs(laptop)
        await screenshot(laptop, "tabs-1-every-kind")
        focused = await close_worktrees_tab_by_keyboard(laptop)
        session_id = await session_cookie(laptop)

        phone = await browser.new_page(viewport={"width": 375, "height": 812})
        await phone.goto(f"{base}/login?token={API_TOKEN}&session={session_id}")
        await phone.wait_for_selector("#tabs li.tab.current[data-kind='dashboard']")
        filter_kept = await phone.input_value("#feed-filter")
        await visit(phone, f"{base}/pipelines/{pipeline_id}", "pipeline")
        await phone.wait_for_selector(f"#step-{risk}.selected", timeout=WAIT_MS)
        phone_tabs = await shown_tabs(phone)
        output_open = await phone.evaluate(f"document.getElementById('output-{plan}').open")
        await screenshot(phone, "tabs-2-another-device")
        await visit(phone, f"{base}/tickets/{key}", "ticket")
        await phone.wait_for_function(
            "() => !document.getElementById('description-panel').open", timeout=WAIT_MS
        )

    assert all_tabs == [
        ["dashboard", "", False],
        ["ticket", key, False],
        ["pipeline", str(pipeline_id), False],
        ["pr", pr_ref, False],
        ["worktrees", "", False],
        ["costs", "", True],
    ]
    assert focused == "Close tab costs"
    assert filter_kept == "pipeline"
    assert output_open is True
    assert phone_tabs == [
        ["dashboard", "", False],
        ["ticket", key, False],
        ["pipeline", str(pipeline_id), True],
        ["pr", pr_ref, False],
        ["costs", "", False],
    ]
    pages = (await world.api("GET", f"/api/sessions/{session_id}/ui-state"))["ui_state"]["pages"]
    assert pages[f"/pipelines/{pipeline_id}"]["selected"] == f"step-{risk}"
    assert pages[f"/tickets/{key}"]["closed"] == ["description-panel"]


async def test_a_connected_page_shows_another_tabs_event_at_once_and_its_own_live(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    key = await world.ticket(labels=("backend",))
    shown, other = [(await world.create(key, start=False))["id"] for _ in range(2)]
    bus = client.app[SERVICES].bus
    base = str(client.make_url("")).rstrip("/")
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{base}/login?token={API_TOKEN}")
        await visit(page, f"{base}/pipelines/{other}", "pipeline")
        await visit(page, f"{base}/pipelines/{shown}", "pipeline")
        await page.wait_for_selector("#connection.on", timeout=WAIT_MS)

        # The page's own stream is live, so not recorded; the recorder goes in id order, so
        # by the time the other tab's event is told, this one was passed over.
        await bus.publish(f"pipeline:{shown}", failure(shown, key, "this one broke"))
        await bus.publish(f"pipeline:{other}", failure(other, key, "the other one broke"))
        await page.wait_for_selector("#notices-count.count", timeout=WAIT_MS)
        await page.click("#notices-toggle")
        listed = await page.locator("#notices-list li").all_inner_texts()
        await screenshot(page, "tabs-3-told-while-connected")
        session_id = next(
            c["value"] for c in await page.context.cookies() if c["name"] == "biagent_session"
        )

    assert len(listed) == 1 and "the other one broke" in listed[0]
    kept = await world.api("GET", f"/api/sessions/{session_id}/offline-events")
    assert [e["event"]["data"]["pipeline_id"] for e in kept["offline_events"]] == [other]
