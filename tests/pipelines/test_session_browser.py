"""A person's browser session across a SIGKILL of the server, in a real headless Chromium.

`python -m bot` runs as a subprocess (tests/pipelines/bot_process.py) with the scripted model,
JIRA and GitHub of this process. The browser reaches it through a gate (tests/network_gate.py)
the test can shut, as a laptop loses its network; the test calls the API directly.

The person logs in by the URL token (the dashboard), opens the ticket and then its pipeline
(three tabs), starts it and watches the planner's text arrive. The server is killed mid-turn
and started again on the same database and port while the page's network is still down, so what
follows happens while the page is away, in an order nothing can race: the plan step resumes and
waits for approval, another device approves it, the risk agent reports a medium risk and the
implementer starts streaming, held by the model mid-turn. Then the network comes back: the page
reconnects by itself, shows both events as notifications and the implementer's text caught up
exactly as the server holds it (nothing of the killed turn, nothing twice), then the rest of it
live. Marked read, a step selected and a section opened, the page is reloaded and shows the
same tabs, UI state and text. A screenshot of each state is kept in
test-artifacts/screenshots/. Every wait is for the page or the API to reach a state; none is a
fixed sleep.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from tests.bot_process import BotProcess
from tests.browser import Watched, browser_page, screenshot, skip_without_chromium
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import Block, FakeAnthropic, Hold, Reply
from tests.fakes.jira import FakeJira
from tests.helpers import API_TOKEN
from tests.network_gate import NetworkGate
from tests.pipelines.bot_process import DEADLINE_S, Api, make_pipeline, until
from tests.pipelines.world import FILES, PROJECT, PipelineModel, done, report
from tests.worktree_helpers import make_remote

pytestmark = skip_without_chromium

WAIT_MS = 30_000  # a bound for a loaded machine: each wait ends when the page gets there
CHUNK = 8  # characters of text per streamed piece
# Each turn's text is two blocks: the first ends before the hold, so its frames are sent
# whatever the timing (a block's end flushes its text), and the hold falls in the second.
PLANNER_SAYS = ("Reading greet.py and test_greet.py. ", "Next, how the greeting is built today.")
IMPLEMENTER_SAYS = (
    "Changing greet() so that it says Hello instead of Hi. ",
    "The test checks the name only, so it keeps passing; then I run it to be sure.",
)
RISK = {"title": "Greeting copy changes", "severity": "medium", "detail": "Users see new words."}
EDIT = {"path": "greet.py", "old_text": '"Hi "', "new_text": '"Hello "'}
# What Chromium logs while the network is down: the page's reconnects and requests failing.
OFFLINE_ERRORS = ("error: WebSocket connection to", "error: Failed to load resource")


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    """The model streams its text in small pieces with a pause between them, as a real one
    does, so the page gets several token frames of one turn."""
    fake = FakeAnthropic(chunk_size=CHUNK, pause_between_events_s=0.03)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def gate(bot_server: BotProcess) -> AsyncIterator[NetworkGate]:
    opened = NetworkGate(bot_server.port)
    await opened.start()
    yield opened
    await opened.close()


def held_turn(says: tuple[str, str], tool: Block) -> Reply:
    """Two text blocks and a tool call, held after the second block's third piece (the fake's
    events: message_start, content_block_start, ping, the first block's pieces, its stop, the
    second's start, then its pieces)."""
    first, second = says
    held_after = 3 + math.ceil(len(first) / CHUNK) + 2 + 3
    blocks = (Block("text", text=first), Block("text", text=second), tool)
    return Reply(blocks=blocks, hold=Hold(after_events=held_after))


class Turns:
    """The model's scripted turns whose streams the test holds."""

    def __init__(self, model: PipelineModel) -> None:
        plan = Block("tool_use", name="report_output", input={"plan": "never reported"})
        killed = held_turn(PLANNER_SAYS, plan)  # the server dies there: never released
        streaming = held_turn(IMPLEMENTER_SAYS, Block("tool_use", name="edit_file", input=EDIT))
        assert killed.hold is not None and streaming.hold is not None
        self.planner, self.implementer = killed.hold, streaming.hold
        self.implementer_next = Hold()  # the step keeps running to the end of the test
        model.script("planner", killed)
        model.script("risk", report({"risks": [RISK]}), done())
        model.script("implementer", streaming, scripted.text("Edited.", hold=self.implementer_next))

    def release(self) -> None:
        for hold in (self.planner, self.implementer, self.implementer_next):
            hold.released.set()


async def reached(hold: Hold, server: BotProcess) -> None:
    try:
        await asyncio.wait_for(hold.reached.wait(), DEADLINE_S)
    except TimeoutError:
        raise AssertionError(f"the model's turn did not get to its hold\n{server.log()}") from None


async def tokens_text(page: Page) -> str:
    return str(await page.evaluate("document.getElementById('tokens').textContent"))


async def until_text(page: Page, element_id: str, text: str) -> None:
    """Until the element's text is exactly `text` (a function, not an expression: the page's
    CSP forbids the eval Playwright would poll an expression with)."""
    await page.wait_for_function(
        "([id, text]) => document.getElementById(id).textContent === text",
        arg=[element_id, text],
        timeout=WAIT_MS,
    )


async def until_text_starts(page: Page, element_id: str, text: str) -> None:
    await page.wait_for_function(
        "([id, text]) => document.getElementById(id).textContent.startsWith(text)",
        arg=[element_id, text],
        timeout=WAIT_MS,
    )


async def session_of(page: Page) -> str:
    cookies = await page.context.cookies()
    return next(cookie["value"] for cookie in cookies if cookie["name"] == "biagent_session")


def step_id(pipeline: dict[str, Any], phase: str) -> int:
    return int(next(step["id"] for step in pipeline["steps"] if step["phase"] == phase))


async def open_the_ticket_then_its_pipeline(
    page: Page, base: str, key: str, pipeline_id: int
) -> None:
    await page.goto(f"{base}/login?token={API_TOKEN}")
    await page.wait_for_selector("#connection.on", timeout=WAIT_MS)
    await screenshot(page, "session-1-dashboard")
    await page.goto(f"{base}/tickets/{key}")
    await page.wait_for_selector("#tabs li.tab.current[data-kind='ticket']", timeout=WAIT_MS)
    await screenshot(page, "session-2-ticket")
    await page.click(f"#pipelines a[href='/pipelines/{pipeline_id}']")
    await page.wait_for_selector("#tabs li.tab.current[data-kind='pipeline']", timeout=WAIT_MS)
    await page.wait_for_selector("#connection.on", timeout=WAIT_MS)


def running_text(restored: dict[str, Any], pipeline_id: int) -> str:
    """The text the session's restore gives for the step running on the pipeline ("" if none)."""
    stream = f"pipeline:{pipeline_id}"
    return next((c["text"] for c in restored["token_catchup"] if c["stream"] == stream), "")


async def start_and_watch_the_planner(page: Page, server: BotProcess, turns: Turns) -> str:
    """Start the pipeline from the page; once the planner's turn is held, the text shown."""
    await page.click("form.start button")
    await reached(turns.planner, server)
    await until_text_starts(page, "tokens", PLANNER_SAYS[0])
    streamed = await tokens_text(page)
    await screenshot(page, "session-3-streaming")
    return streamed


async def kill_and_restart_while_the_page_is_offline(
    page: Page, gate: NetworkGate, server: BotProcess
) -> None:
    """The page loses its network, the server is killed mid-turn and started again."""
    gate.shut()
    server.kill()
    await page.wait_for_selector("#connection.off", timeout=WAIT_MS)
    await screenshot(page, "session-4-server-killed")
    server.start()


async def away_while_the_pipeline_goes_on(
    api: Api, server: BotProcess, turns: Turns, session_id: str, pipeline_id: int
) -> None:
    """The server back, the page's network still down: the plan waits and is approved from
    another device, a risk is reported, the implementer streams until its hold; the session
    has both events unread."""
    await api.healthy()

    async def plan_waits() -> bool:
        return bool((await api.pipeline(pipeline_id))["status"] == "waiting_for_approval")

    await until(server, plan_waits, "the resumed plan step waits for approval")
    plan = step_id(await api.pipeline(pipeline_id), "plan")
    approval = {"approved_by": "lee", "note": "from my phone"}
    await api.call("POST", f"/api/pipelines/{pipeline_id}/steps/{plan}/approve", approval)
    await reached(turns.implementer, server)

    async def recorded_and_streaming() -> bool:
        restored = await api.call("POST", f"/api/sessions/{session_id}/restore", {})
        streamed = running_text(restored, pipeline_id)
        return bool(restored["unread"] == 2 and streamed.startswith(IMPLEMENTER_SAYS[0]))

    await until(server, recorded_and_streaming, "two offline events and the implementer's text")


async def caught_up_with_the_server(
    page: Page, api: Api, server: BotProcess, session_id: str, pipeline_id: int
) -> str:
    """Until the page shows the running step's text exactly as the server holds it (read
    afresh each time: frames sent just before the hold may still be landing); returns it."""
    shown = ""

    async def same_text() -> bool:
        nonlocal shown
        shown = await tokens_text(page)
        restored = await api.call("POST", f"/api/sessions/{session_id}/restore", {})
        return bool(shown and shown == running_text(restored, pipeline_id))

    await until(server, same_text, "the page's text caught up with the server's")
    return shown


async def back_online(
    page: Page, gate: NetworkGate, api: Api, server: BotProcess, session_id: str, pipeline_id: int
) -> str:
    """The network back: the page reconnects by itself, counts two unread events and catches
    up the running step's text; returns that text."""
    gate.open()
    await page.wait_for_selector("#connection.on", timeout=WAIT_MS)
    await until_text(page, "notices-count", "2")
    caught_up = await caught_up_with_the_server(page, api, server, session_id, pipeline_id)
    await screenshot(page, "session-5-reconnected")
    return caught_up


async def finish_the_turn_and_mark_all_read(
    page: Page, api: Api, turns: Turns, session_id: str
) -> int:
    """The implementer's turn goes on live to its end; marked read on the page, what the
    server counts unread."""
    turns.implementer.released.set()
    await until_text(page, "tokens", "".join(IMPLEMENTER_SAYS))
    await page.click("#notices-read")
    await until_text(page, "notices-count", "0")
    return int((await api.call("GET", f"/api/sessions/{session_id}/offline-events"))["unread"])


async def read_the_notifications(page: Page, count: int) -> tuple[list[str | None], list[str]]:
    """Open the panel by keyboard; once it lists `count` notifications (each is a frame of its
    own), their kinds and links."""
    await page.focus("#notices-toggle")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#notices:not([hidden])", timeout=WAIT_MS)
    await page.wait_for_function(
        "(count) => document.querySelectorAll('#notices-list li').length === count",
        arg=count,
        timeout=WAIT_MS,
    )
    items = await page.locator("#notices-list li").all()
    kinds = [await item.get_attribute("data-type") for item in items]
    links = await page.locator("#notices-list li a").evaluate_all(
        "(links) => links.map((a) => a.getAttribute('href'))"
    )
    await screenshot(page, "session-6-notifications")
    return kinds, links


async def select_and_open_then_reload(
    page: Page, api: Api, server: BotProcess, session_id: str, pipeline: dict[str, Any]
) -> dict[str, Any]:
    """Select the risk step and open the plan's output, wait for the UI state to be kept,
    reload; what the page shows then."""
    risk, plan = step_id(pipeline, "risk"), step_id(pipeline, "plan")
    await page.click(f"button.select[data-select='step-{risk}']")
    await page.click(f"details#output-{plan} > summary")

    async def kept() -> bool:
        state = (await api.call("GET", f"/api/sessions/{session_id}/ui-state"))["ui_state"]
        shown = state.get("pages", {}).get(f"/pipelines/{pipeline['id']}", {})
        return bool(shown.get("selected") == f"step-{risk}" and f"output-{plan}" in shown["open"])

    await until(server, kept, "the page's UI state kept")
    await page.reload()
    await page.wait_for_selector("#connection.on", timeout=WAIT_MS)
    await page.wait_for_selector(f"#step-{risk}.selected", timeout=WAIT_MS)
    await screenshot(page, "session-7-reloaded")
    return {
        "tabs": await page.locator("#tabs li.tab").evaluate_all(
            "(tabs) => tabs.map((t) => [t.dataset.kind, t.dataset.ref, t.matches('.current')])"
        ),
        "plan_output_open": await page.evaluate(f"document.getElementById('output-{plan}').open"),
        "text": await tokens_text(page),
        "unread": await page.locator("#notices-count").inner_text(),
    }


async def close_the_ticket_tab(page: Page, api: Api, session_id: str) -> list[dict[str, str]]:
    """Close the ticket's tab by keyboard; the tabs the server keeps for the session then."""
    await page.focus("#tabs li.tab[data-kind='ticket'] button.close")
    async with page.expect_response(lambda r: r.request.method == "PUT") as put:
        await page.keyboard.press("Enter")  # the tab goes at once; the server's list after
    assert (await put.value).ok
    await page.wait_for_selector("#tabs li.tab[data-kind='ticket']", state="detached")
    return list((await api.call("GET", f"/api/sessions/{session_id}/tabs"))["tabs"])


async def test_a_page_comes_back_after_a_server_kill_with_what_happened_meanwhile_and_its_state(
    tmp_path: Path,
    bot_server: BotProcess,
    gate: NetworkGate,
    fake_jira: FakeJira,
    anthropic: FakeAnthropic,
) -> None:
    server, turns = bot_server, Turns(PipelineModel(anthropic))
    remote = make_remote(tmp_path, "hello-world", FILES)
    key = fake_jira.add_issue(PROJECT, "Greet people by saying Hello", labels=("backend",))
    server.start()
    async with aiohttp.ClientSession() as http, browser_page() as page:
        api = Api(http, server)
        await api.healthy()
        pipeline_id = await make_pipeline(api, key, remote.url, cycle_type="backend", start=False)
        watched = Watched().attach(page)
        await open_the_ticket_then_its_pipeline(
            page, f"http://127.0.0.1:{gate.port}", key, pipeline_id
        )
        session_id = await session_of(page)
        streamed_before_kill = await start_and_watch_the_planner(page, server, turns)

        await kill_and_restart_while_the_page_is_offline(page, gate, server)
        await away_while_the_pipeline_goes_on(api, server, turns, session_id, pipeline_id)

        caught_up = await back_online(page, gate, api, server, session_id, pipeline_id)
        kinds, links = await read_the_notifications(page, 2)
        unread = await finish_the_turn_and_mark_all_read(page, api, turns, session_id)

        pipeline = await api.pipeline(pipeline_id)
        reloaded = await select_and_open_then_reload(page, api, server, session_id, pipeline)
        kept_tabs = await close_the_ticket_tab(page, api, session_id)
        turns.release()

    assert "".join(PLANNER_SAYS).startswith(streamed_before_kill)
    assert "".join(IMPLEMENTER_SAYS).startswith(caught_up)  # no word of the killed turn
    assert kinds == ["waiting_for_approval", "risk_identified"]
    assert links == [f"/pipelines/{pipeline_id}"] * 2
    assert unread == 0
    assert reloaded == {
        "tabs": [
            ["dashboard", "", False],
            ["ticket", key, False],
            ["pipeline", str(pipeline_id), True],
        ],
        "plan_output_open": True,
        "text": "".join(IMPLEMENTER_SAYS),
        "unread": "0",
    }
    assert kept_tabs == [
        {"kind": "dashboard", "ref": None},
        {"kind": "pipeline", "ref": str(pipeline_id)},
    ]
    refused = [line for line in watched.refusals() if not line.startswith(OFFLINE_ERRORS)]
    assert refused == []
