"""Pauses, budgets, costs, prompt caching and the pipeline's context across steps."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bot.agents.clarifications import ClarificationError
from bot.agents.loop import AgentContext
from bot.agents.runner import AgentRunner
from storage import agent_runs, clarifications, claude_sessions
from storage.database import Database
from tests.agents.conftest import Recorder
from tests.fakes import anthropic as scripted
from tests.fakes.anthropic import FakeAnthropic


async def test_a_clarification_pauses_the_step_and_the_answer_resumes_the_conversation(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, db: Database, events: Recorder
) -> None:
    fake.add(
        scripted.tool_use(
            "request_clarification",
            {"question": "Keep the old greeting as an alias?", "choices": ["yes", "no"]},
            say="One question first.",
        )
    )
    paused = await runner.run_step("implementer", context)
    assert paused.status == "paused_for_clarification"
    assert paused.clarification_id is not None
    requested = [e for e in events.take() if e["type"] == "clarification_requested"]
    assert requested[0]["data"]["question"] == "Keep the old greeting as an alias?"
    assert requested[0]["data"]["choices"] == ["yes", "no"]
    assert requested[0]["data"]["clarification_id"] == paused.clarification_id

    answered = await runner.answer_clarification(paused.clarification_id, "no", answered_by="ana")
    assert answered.status == "answered" and answered.answered_by == "ana"
    assert [e["type"] for e in events.take()] == ["clarification_answered"]

    fake.add(scripted.text("Understood: no alias."))
    resumed = await runner.run_step("implementer", context)
    assert resumed.status == "completed"
    assert resumed.session_id == paused.session_id
    last = fake.requests[-1]
    stripped = scripted._strip_cache_control
    assert stripped(last.messages[:1]) == stripped(fake.requests[0].messages)
    assert [m["role"] for m in last.messages] == ["user", "assistant", "user"]
    assert last.tool_results()[0]["content"] == "A person answered: no"
    assert len(fake.requests) == 2


async def test_a_clarification_is_answered_once(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, db: Database
) -> None:
    fake.add(scripted.tool_use("request_clarification", {"question": "Which one?"}))
    paused = await runner.run_step("planner", context)
    assert paused.clarification_id is not None
    await runner.answer_clarification(paused.clarification_id, "the first")
    with pytest.raises(ClarificationError) as raised:
        await runner.answer_clarification(paused.clarification_id, "the second")
    assert raised.value.code == "already_answered"
    stored = await clarifications.get(db, paused.clarification_id)
    assert stored is not None and stored.answer == "the first"


async def test_running_a_paused_step_before_the_answer_stays_paused_without_a_call(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, events: Recorder
) -> None:
    fake.add(scripted.tool_use("request_clarification", {"question": "Which one?"}))
    await runner.run_step("planner", context)
    again = await runner.run_step("planner", context)
    assert again.status == "paused_for_clarification"
    assert len(fake.requests) == 1
    kinds = [e["type"] for e in events.take()]
    assert kinds.count("clarification_requested") == 1


async def test_a_step_budget_stops_the_step_cleanly_with_the_reason(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, db: Database
) -> None:
    fake.add(
        scripted.tool_use("file_read", {"path": "README.md"}, output_tokens=2000),
        scripted.text("never asked"),
    )
    tight = dataclasses.replace(context, budget_usd=0.01)
    result = await runner.run_step("implementer", tight)
    assert result.status == "budget_stopped"
    assert result.reason is not None and result.reason.startswith("step budget reached")
    assert len(fake.requests) == 1
    assert result.cost_usd >= 0.03  # 2000 output tokens at $15/MTok
    run = await agent_runs.get(db, result.run_id)
    assert run is not None and run.status == "budget_stopped" and run.reason == result.reason
    # The tool the model asked for still ran: the history ends with its result, ready to go on.
    fake.add(scripted.text("Finished with more budget."))
    more = await runner.run_step("implementer", dataclasses.replace(context, budget_usd=1.0))
    assert more.status == "completed"
    assert fake.requests[-1].tool_results()[0]["content"].startswith("# Demo")


async def test_the_turn_limit_stops_the_step(
    make_runner, fake: FakeAnthropic, context: AgentContext, agents_config
) -> None:
    triage = dataclasses.replace(agents_config.agents["triage"], max_turns=2)
    config = dataclasses.replace(agents_config, agents={**agents_config.agents, "triage": triage})
    runner = make_runner(config=config)
    fake.add(*(scripted.tool_use("glob", {"pattern": "*.md"}) for _ in range(3)))
    result = await runner.run_step("triage", context)
    assert result.status == "budget_stopped"
    assert result.reason == "turn limit reached (2 turns)"
    assert len(fake.requests) == 2


async def test_costs_are_recorded_per_call_and_summed_per_step_pipeline_and_pr(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, db: Database
) -> None:
    in_pipeline = dataclasses.replace(context, pipeline_id=7, step_id=1)
    fake.add(scripted.tool_use("glob", {"pattern": "*.md"}), scripted.text("first"))
    first = await runner.run_step("planner", in_pipeline)
    second_context = dataclasses.replace(in_pipeline, session_key="pipeline:7/step:2", step_id=2)
    fake.add(scripted.text("second"))
    second = await runner.run_step("risk", second_context)
    step_one = await runner.costs.step_total(first.session_id)
    assert step_one.calls == 2
    pipeline = await runner.costs.pipeline_total(7)
    assert pipeline.calls == 3
    assert pipeline.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)
    pr = await runner.costs.pr_total("octo/demo#7")
    assert pr.cost_usd == pytest.approx(pipeline.cost_usd)
    usage = fake.requests[1]
    price = runner.config.prices.price_for(runner.config.agents["planner"].model)
    rows = await db.fetchall(
        "SELECT input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, cost_usd"
        " FROM agent_costs WHERE run_id = ? ORDER BY id",
        (first.run_id,),
    )
    tokens_in, tokens_out, written, read, cost = rows[1]
    assert read > 0 and usage.cache_read_bytes > 0  # the second turn read the cached prefix
    expected = (
        tokens_in * price.input
        + tokens_out * price.output
        + written * price.cache_write
        + read * price.cache_read
    ) / 1_000_000
    assert cost == pytest.approx(expected)


async def test_prompt_caching_uses_at_most_four_breakpoints_and_an_append_only_history(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    fake.add(
        scripted.tool_use("file_read", {"path": "README.md"}),
        scripted.tool_use("glob", {"pattern": "src/*"}),
        scripted.text("done"),
    )
    with_context = dataclasses.replace(context, repository_context="Python 3.11, pytest.")
    await runner.run_step("planner", with_context)
    for recorded in fake.requests:
        assert recorded.breakpoints == 3
        assert recorded.body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
        assert recorded.body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert "Repository context:\nPython 3.11, pytest." in recorded.body["system"][-1]["text"]
    for earlier, later in zip(fake.requests, fake.requests[1:], strict=False):
        stripped = scripted._strip_cache_control
        assert stripped(later.messages[: len(earlier.messages)]) == stripped(earlier.messages)
        assert later.cache_read_bytes >= earlier.total_bytes - 400  # all but the newest tail


async def test_a_later_pipeline_step_gets_the_earlier_steps_in_its_prompt(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    planning = dataclasses.replace(context, session_key="pipeline:3/plan", pipeline_id=3)
    fake.add(scripted.text("Plan: rename GREETING's value."))
    await runner.run_step("planner", planning)
    implementing = dataclasses.replace(planning, session_key="pipeline:3/implement")
    fake.add(scripted.text("Done."))
    await runner.run_step("implementer", implementing)
    system_text = fake.requests[-1].body["system"][-1]["text"]
    assert "## planner\nPlan: rename GREETING's value." in system_text


async def test_a_cancelled_step_is_recorded_interrupted_and_continues_its_conversation(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext, db: Database
) -> None:
    fake.add(scripted.tool_use("file_read", {"path": "README.md"}, say="Reading first."))
    fake.add(dataclasses.replace(scripted.text("never sent"), delay_s=30.0))
    running = asyncio.create_task(runner.run_step("implementer", context))
    await fake.wait_for_requests(2)  # the second turn is under way when the pause comes
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    session = await claude_sessions.find(db, context.session_key)
    assert session is not None
    (run,) = await agent_runs.for_session(db, session.id)
    assert run.status == "interrupted"

    fake.add(scripted.text("Done after the pause."))
    resumed = await runner.run_step("implementer", context)
    assert resumed.status == "completed" and resumed.final_text == "Done after the pause."
    roles = [m["role"] for m in fake.requests[-1].messages]
    assert roles == ["user", "assistant", "user"]  # the completed first turn was kept


async def test_the_same_tool_call_five_times_stops_the_step_as_a_loop(
    runner: AgentRunner, fake: FakeAnthropic, context: AgentContext
) -> None:
    for _ in range(6):
        fake.add(scripted.tool_use("file_read", {"path": "README.md"}, say="Again."))
    looped = await runner.run_step("implementer", dataclasses.replace(context, repeat_limit=5))
    assert looped.status == "loop_stopped"
    assert looped.reason == "the same file_read call with the same arguments came 5 times"
    assert len(fake.requests) == 5  # the fifth call was not run, nor the model asked again
