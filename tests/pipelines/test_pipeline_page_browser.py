"""A person drives a backend pipeline from the pipeline page in a real headless Chromium.

The real app with the scripted model, the JIRA and GitHub fakes and a bare remote
(tests/pipelines/world.py). Every wait is on a selector the page reaches from the server's
events; none is a fixed sleep. Skipped without chromium, a failure under CI=true.
"""

from __future__ import annotations

from playwright.async_api import Locator, Page

from bot.agents.events import SnapshotText, TailText, Token, TokenBlockCatchup
from bot.agents.tokens import TokenCoalescer, TokenSequence
from bot.pipelines.events import stream_of
from storage.token_blocks import BlockState
from tests.browser import browser_page, screenshot, skip_without_chromium
from tests.fakes import anthropic as scripted
from tests.helpers import API_TOKEN
from tests.pipelines.world import PipelineWorld, done, report, step_of
from web.keys import PIPELINES, SERVICES

pytestmark = skip_without_chromium

WAIT_MS = 15_000
PLAN = {"plan": "1. Change greet() to say Hello.\n2. Keep the test.", "files": ["greet.py"]}
HOSTILE_SAY = 'Reading greet.py <img id="injected" src=x onerror="document.title=1">'
RISK = {"title": "Greeting <b>change</b>", "severity": "high", "detail": "UX"}


def script_agents(world: PipelineWorld) -> None:
    world.model.script("planner", scripted.tool_use("report_output", PLAN, say=HOSTILE_SAY), done())
    world.model.script("risk", report({"risks": [RISK]}), done())
    edit = {"path": "greet.py", "old_text": '"Hi "', "new_text": '"Hello " + "<b>" + '}
    world.model.script(
        "implementer",
        scripted.tool_use("edit_file", edit),
        report({"summary": "greet() says Hello."}),
        done(),
    )


async def open_pipeline(page: Page, base: str, pipeline_id: int) -> None:
    await page.goto(f"{base}/login?token={API_TOKEN}")
    await page.goto(f"{base}/pipelines")
    await page.click(f"#pipelines a[href='/pipelines/{pipeline_id}']")
    await page.wait_for_selector("#connection.on", timeout=WAIT_MS)


async def start_and_see_the_plan_wait(page: Page) -> Locator:
    """Start from the page; the plan step comes to wait for approval, its text and tool call
    streamed live as text (the hostile tag in the model's words stays text)."""
    await page.click("form.start button")
    plan = page.locator("article[data-phase='plan'][data-status='waiting_for_approval']")
    await plan.locator("form.approve").wait_for(timeout=WAIT_MS)
    await page.wait_for_selector("#tool-calls li:has-text('report_output')", timeout=WAIT_MS)
    await page.locator("#tokens", has_text="Reading greet.py").wait_for(timeout=WAIT_MS)
    assert "Change greet() to say Hello." in await plan.locator("details").first.inner_text()
    assert HOSTILE_SAY in await page.locator("#tokens").inner_text()
    assert await page.locator("#injected").count() == 0
    return plan


async def approve_and_see_the_risk(page: Page, plan: Locator) -> Locator:
    await plan.locator("input[name='note']").fill("fine")
    await plan.locator("form.approve button").click()
    risk = page.locator(".risk[data-severity='high']")
    await risk.locator("form.acknowledge").wait_for(timeout=WAIT_MS)
    assert RISK["title"] in await risk.inner_text()
    shown_plan = page.locator("article[data-phase='plan']")
    assert "approved by mia: fine" in await shown_plan.inner_text()
    return risk


async def acknowledge_and_see_the_pull_request(page: Page, risk: Locator) -> str | None:
    await risk.locator("form.acknowledge button").click()
    await page.wait_for_selector(
        "#pipeline-status[data-status='waiting_for_review']", timeout=WAIT_MS
    )
    link = page.locator("#pull-requests a")
    await link.wait_for(timeout=WAIT_MS)
    assert await page.locator(".risk.acknowledged").count() == 1
    return await link.get_attribute("href")


async def test_a_person_drives_a_backend_pipeline_to_its_pull_request_from_the_page(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    script_agents(world)
    key = await world.ticket(labels=("backend",))
    pipeline_id = (await world.create(key, start=False))["id"]
    base = str(client.make_url("")).rstrip("/")
    async with browser_page() as page:
        await open_pipeline(page, base, pipeline_id)
        await page.fill("#who", "mia")
        await page.dispatch_event("#who", "change")
        assert "No step has made a worktree yet." in await page.locator("#diff").inner_text()
        plan = await start_and_see_the_plan_wait(page)
        risk = await approve_and_see_the_risk(page, plan)
        shown_url = await acknowledge_and_see_the_pull_request(page, risk)
        # The implement step's edit, shown when the step completed, the page never reloaded.
        changed = page.locator("#diff details[data-path='greet.py'] pre.diff")
        await changed.locator("span.add", has_text='"Hello " + "<b>"').wait_for(timeout=WAIT_MS)
        assert '-    return "Hi " + name' in await changed.inner_text()
        await screenshot(page, "pipeline-diff")

    await client.app[PIPELINES].engine.tasks.wait(pipeline_id)
    finished = await world.pipeline(pipeline_id)
    [pull] = finished["pull_requests"]
    assert shown_url == pull["url"]
    assert step_of(finished, "plan")["approved_by"] == "mia"
    assert finished["risks"][0]["acknowledged_by"] == "mia"


async def a_streaming_pipeline(world: PipelineWorld) -> tuple[str, int, TokenCoalescer]:
    """The app's base URL, a pipeline not started, and a coalescer on its stream."""
    client = await world.start()
    pipeline_id = (await world.create(await world.ticket(labels=("backend",)), start=False))["id"]
    services = client.app[SERVICES]
    stream = stream_of(pipeline_id)
    tokens = TokenCoalescer(TokenSequence(services.db), services.bus, services.clock, stream)
    return str(client.make_url("")).rstrip("/"), pipeline_id, tokens


async def test_the_page_catches_up_the_tokens_it_missed_while_reconnecting(
    world: PipelineWorld,
) -> None:
    base, pipeline_id, tokens = await a_streaming_pipeline(world)
    bus, stream = tokens.bus, tokens.stream
    async with browser_page() as page:
        await open_pipeline(page, base, pipeline_id)
        await tokens.add("one ")
        await tokens.flush()
        await page.locator("#tokens", has_text="one").wait_for(timeout=WAIT_MS)

        # Overflow the page's subscription (the server closes it, 4008) with a frame it has
        # already seen, more times than its queue holds, without yielding; the frames flushed
        # after that reach the page only through the catch-up when it reconnects.
        for _ in range(bus.queue_size + 1):
            bus.publish_transient(stream, Token(seq=1, text="again "))
        for word in ("two ", "three"):
            await tokens.add(word)
            await tokens.flush()
        await page.locator("#tokens", has_text="three").wait_for(timeout=WAIT_MS)
        assert await page.locator("#tokens").inner_text() == "one two three"


async def test_a_token_catchup_frame_takes_the_place_of_the_block_it_names(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    pipeline_id = (await world.create(await world.ticket(labels=("backend",)), start=False))["id"]
    bus, stream = client.app[SERVICES].bus, stream_of(pipeline_id)

    def catchup(snapshot: tuple[int, str], tail: list[tuple[int, str]], state: BlockState) -> None:
        frames = [TailText(seq=seq, text=text) for seq, text in tail]
        last = frames[-1].seq if frames else snapshot[0]
        shown = SnapshotText(through_seq=snapshot[0], text=snapshot[1])
        block = TokenBlockCatchup(
            stream=stream, block=1, state=state, snapshot=shown, tail=frames, last_seq=last
        )
        bus.publish_transient(stream, block)

    base = str(client.make_url("")).rstrip("/")
    async with browser_page() as page:
        await open_pipeline(page, base, pipeline_id)
        bus.publish_transient(stream, Token(seq=1, text="Hel", block=1))
        await page.locator("#tokens", has_text="Hel").wait_for(timeout=WAIT_MS)
        catchup((2, "Hello, "), [(3, "world")], BlockState.RUNNING)
        bus.publish_transient(stream, Token(seq=3, text="world", block=1))
        bus.publish_transient(stream, Token(seq=4, text="!", block=1))
        await page.locator("#tokens", has_text="!").wait_for(timeout=WAIT_MS)
        catchup((4, "Hello, world!"), [], BlockState.INTERRUPTED)
        await page.locator("#tokens-state", has_text="broke").wait_for(timeout=WAIT_MS)
        assert await page.locator("#tokens").inner_text() == "Hello, world!"


async def test_a_page_opened_mid_stream_shows_the_block_so_far_and_an_interrupted_one_says_so(
    world: PipelineWorld,
) -> None:
    base, pipeline_id, tokens = await a_streaming_pipeline(world)
    await tokens.add("written before the page opened; ")
    await tokens.flush()
    async with browser_page() as page:
        await open_pipeline(page, base, pipeline_id)
        await page.locator("#tokens", has_text="before the page").wait_for(timeout=WAIT_MS)
        await tokens.add("then cut")
        await tokens.end_block(BlockState.INTERRUPTED)
        await page.locator("#tokens", has_text="then cut").wait_for(timeout=WAIT_MS)
        await page.reload()  # the first subscribe of the page gets the block with its state
        await page.locator("#tokens-state", has_text="broke").wait_for(timeout=WAIT_MS)
        text = await page.locator("#tokens").inner_text()
        assert text == "written before the page opened; then cut"


async def test_a_pipeline_made_from_the_list_opens_its_page_and_a_refusal_is_shown(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    key = await world.ticket(labels=("backend",))
    base = str(client.make_url("")).rstrip("/")
    async with browser_page() as page:
        await page.goto(f"{base}/login?token={API_TOKEN}")
        await page.goto(f"{base}/pipelines")
        await page.fill("input[name='ticket']", "ACME-999")
        await page.click("form[data-api='/api/pipelines'] button")
        refusal = page.locator("form[data-api='/api/pipelines'] .error", has_text="ACME-999")
        await refusal.wait_for(timeout=WAIT_MS)

        await page.fill("input[name='ticket']", key)
        await page.click("form[data-api='/api/pipelines'] button")
        await page.wait_for_url(f"{base}/pipelines/*", timeout=WAIT_MS)
        await page.wait_for_selector("#pipeline-status", timeout=WAIT_MS)
        pipeline_id = int(page.url.rsplit("/", 1)[1])
    held = await world.settle(pipeline_id)
    assert held["ticket"] == key and held["status"] == "waiting_for_approval"


async def test_a_stream_that_breaks_upstream_is_shown_as_interrupted_while_the_page_watches(
    world: PipelineWorld,
) -> None:
    client = await world.start()
    said = "Reading greet.py to see how it says hi, then the tests. "
    world.model.script("triage", *[scripted.text(said * 4, break_after_events=20)] * 3)
    pipeline_id = (await world.create(await world.ticket(labels=("backend",)), start=False))["id"]
    base = str(client.make_url("")).rstrip("/")
    async with browser_page() as page:
        await open_pipeline(page, base, pipeline_id)
        await page.click("form.start button")
        await page.locator("#tokens-state", has_text="broke").wait_for(timeout=WAIT_MS)
        await page.locator("#tokens", has_text="Reading greet.py").wait_for(timeout=WAIT_MS)
        await client.app[PIPELINES].engine.tasks.wait(pipeline_id)
        triage = page.locator("article[data-phase='triage']")
        await triage.locator(".badge.interrupted, .badge.failed").first.wait_for(timeout=WAIT_MS)
        note_after = await page.locator("#tokens-state").inner_text()
        step_status = await triage.get_attribute("data-status")
    assert "broke" in note_after
    assert step_status != "completed"
